"""No flood of signals can kill a parked run: the attack of issue 16, on the local stack's own server.

Anyone who can reach the namespace can signal any run, and a workflow cannot refuse a
signal before Temporal writes it into the run's history. 35 refused `approve` signals
of 1.5 MB used to reach the 50 MB history limit in about a second, and Temporal
terminated the run. So the bound is the server's: `baton dev` starts Temporal's dev
server with limits on one payload and on signals per run (worker/devserver.py
SERVER_LIMITS), which keep what any caller can push into one run's history far under
the history limits. These tests start that server exactly as `baton dev` does, flood
a run parked for a compliance review, and check it is still parked, and that the
`decide` update (whose validator refuses before history) still approves it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import pytest
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.converter import JSONProtoPayloadConverter
from temporalio.service import RPCError, RPCStatusCode

from client.credentials import with_credentials
from client.run_record import run_record
from client.sdk import Baton
from tests.conftest import REQUESTER, REVIEWERS, ROOT, running_worker
from tests.test_integration import free_port
from worker.config import BatonConfig
from worker.connection import connect
from worker.devserver import SERVER_LIMITS, DevServer
from worker.issuer import NAME, LocalIssuer
from workflows.outcome import RunState

pytestmark = pytest.mark.integration

REVIEW = json.loads((ROOT / "examples" / "onboarding" / "review.json").read_text())  # a PEP: parks for compliance
HISTORY_SIZE_LIMIT = SERVER_LIMITS["limit.historySize.error"]
HISTORY_COUNT_LIMIT = SERVER_LIMITS["limit.historyCount.error"]
PAYLOAD_LIMIT = SERVER_LIMITS["limit.blobSize.error"]
SIGNALS_PER_RUN = SERVER_LIMITS["history.maximumSignalsPerExecution"]
WAIT_S = 30


def test_what_callers_can_write_into_one_run_stays_under_half_its_history_limit() -> None:
    """Every signal and every accepted update at the payload limit: the worst any caller can do."""
    most = (SIGNALS_PER_RUN + SERVER_LIMITS["history.maxTotalUpdates"]) * PAYLOAD_LIMIT
    assert most <= HISTORY_SIZE_LIMIT / 2, f"{most:,} bytes of {HISTORY_SIZE_LIMIT:,}"


@pytest.fixture(scope="module")
async def local_server(tmp_path_factory: pytest.TempPathFactory, issuer: LocalIssuer) -> AsyncIterator[Client]:
    """Temporal's dev server started as `baton dev` starts it, on ports of its own; its client proves who acts."""

    async def tokens(by: str | None) -> str:
        return issuer.mint(by if by and NAME.match(by) else REQUESTER)

    db = tmp_path_factory.mktemp("flood") / "temporal.db"
    async with DevServer(db, port=free_port(), ui_port=free_port()) as server:
        yield with_credentials(await connect(server.target), tokens)


async def parked_review(baton: Baton) -> str:
    """An onboarding run waiting for its compliance review."""
    run_id = await baton.start("onboarding", REVIEW)
    for _ in range(WAIT_S * 10):
        status = await baton.status(run_id)
        if status.open_requests:
            return run_id
        assert not status.state.is_final, status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run_id} never parked")


def without_store(client: Client) -> Client:
    """A caller without the worker's payload store: every payload inline, as the server's limits see it."""
    config = client.config()
    config["data_converter"] = dataclasses.replace(client.data_converter, external_storage=None)
    return Client(**config)


async def flood(client: Client, run_id: str, size: int, count: int) -> int:
    """`count` refused `approve` signals of about `size` bytes each, sent inline; how many the server took."""
    handle = without_store(client).get_workflow_handle(run_id)
    taken = 0
    for _ in range(count):
        try:
            await handle.signal("approve", {"request_id": "compliance_review", "by": "mallory", "comment": "x" * size})
            taken += 1
        except RPCError as err:  # refused by the server, before history: what the limits are for
            assert err.status is RPCStatusCode.INVALID_ARGUMENT, err  # too big, or one signal too many

    return taken


FLOODS = {  # case: (bytes per signal, signals sent)
    "the issue's 35 of 1.5 MB": (1_500_000, 35),
    "60 just under 2 MB": (2 * 1024 * 1024 - 4096, 60),
    "60 just under the payload limit": (PAYLOAD_LIMIT - 4096, 60),
    "500 small ones": (100, 500),
}


@pytest.mark.parametrize("case", list(FLOODS))
async def test_a_flood_of_signals_leaves_a_parked_run_parked_and_approvable(
    local_server: Client, config: BatonConfig, case: str
) -> None:
    size, count = FLOODS[case]
    async with running_worker(local_server, config) as worker:
        baton = Baton(local_server, worker.task_queue)
        run_id = await parked_review(baton)
        taken = await flood(local_server, run_id, size, count)
        assert taken <= SIGNALS_PER_RUN and (size < PAYLOAD_LIMIT or taken == 0), taken

        described = await local_server.get_workflow_handle(run_id).describe()
        assert described.status is WorkflowExecutionStatus.RUNNING, f"{case}: the flood ended the run"
        info = described.raw_description.workflow_execution_info
        assert info.history_size_bytes < HISTORY_SIZE_LIMIT / 2, info.history_size_bytes
        assert info.history_length < HISTORY_COUNT_LIMIT / 10, info.history_length
        status = await baton.status(run_id)
        assert (status.state, [r.id for r in status.open_requests]) == (RunState.AWAITING_APPROVAL, ["compliance_review"])

        verdict = await baton.approve(run_id, by=REVIEWERS[0], comment="checked after the flood")
        assert (verdict.request_id, verdict.by, verdict.approved) == ("compliance_review", REVIEWERS[0], True)
        outcome = await baton.result(run_id)
    assert outcome.state is RunState.COMPLETED, outcome.reason


async def test_a_run_temporal_terminated_is_never_said_to_await_approval(local_server: Client, config: BatonConfig) -> None:
    """A run Temporal ends (past a limit, or `temporal workflow terminate`) answers its last state to a query."""
    why = "Workflow history size exceeds limit."  # what Temporal says when it terminates a run for its history
    async with running_worker(local_server, config) as worker:
        baton = Baton(local_server, worker.task_queue)
        run_id = await parked_review(baton)
        await local_server.get_workflow_handle(run_id).terminate(reason=why)
        status = await baton.status(run_id)
        for _ in range(WAIT_S * 10):  # visibility catches up with the close
            (listed,) = [r for r in await baton.runs() if r.run_id == run_id]
            if listed.temporal_status != "RUNNING":
                break
            await asyncio.sleep(0.1)
    assert status.state.is_final and status.open_requests == [], status
    assert status.reason == f"terminated by Temporal, not by Baton: {why}", status.reason
    assert (listed.status, listed.temporal_status) == ("terminated", "TERMINATED")


@pytest.mark.parametrize("forged", ["ciphertext", "a stored payload's reference"])
async def test_a_signal_no_worker_can_decode_leaves_a_parked_run_approvable(
    local_server: Client, config: BatonConfig, forged: str
) -> None:
    """Anyone can signal a run with a payload that claims Baton's encryption, or points into the payload store,
    and opens to nothing. The worker must drop it, not fail every workflow task of the run from then on."""
    if forged == "ciphertext":
        payload = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": b"k1"}, data=b"\0" * 64)
    else:
        reference = ExternalStorageReference(driver_name="baton.directory", claim_data={"sha256": "0" * 64})
        payload = JSONProtoPayloadConverter().to_payload(reference)
        payload.external_payloads.add().size_bytes = 10
    async with running_worker(local_server, config) as worker:
        baton = Baton(local_server, worker.task_queue)
        run_id = await parked_review(baton)
        await local_server.workflow_service.signal_workflow_execution(SignalWorkflowExecutionRequest(
            namespace=local_server.namespace, workflow_execution=WorkflowExecution(workflow_id=run_id),
            signal_name="approve", input=Payloads(payloads=[payload]), identity="mallory",
        ))
        verdict = await baton.approve(run_id, by=REVIEWERS[0], comment="approved after a forged signal")
        outcome = await baton.result(run_id)
    assert verdict.approved and outcome.state is RunState.COMPLETED, outcome.reason
    audited = await run_record(local_server, run_id)  # `baton audit` replays it as the worker ran it
    assert audited.status.state is RunState.COMPLETED
