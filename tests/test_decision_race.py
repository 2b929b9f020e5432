"""A decision that arrives with the events that open its request is taken, never refused.

The race seen in CI and in `make chaos`: a worker that does not hold the run in
its cache gets one workflow task holding both the step's completion (which
leads the run to open an approval request) and the `decide` update (or an
`approve` signal). Temporal's Python SDK runs update validators and signal
handlers before the workflow code sees the other events of that task, so the
request was not open yet and a valid decision was refused (a signal's was
silently ignored, leaving the run parked for good).

Made deterministic here, on the real dev server, with workers that cache no
runs: the step before the approval completes asynchronously while no worker
polls, the decision is admitted by the server, and only then does a worker
come up, so both reach it in one task.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import pytest
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import UpdateWorkflowExecutionLifecycleStage
from temporalio.api.update.v1 import UpdateRef, WaitPolicy
from temporalio.api.workflowservice.v1 import PollWorkflowExecutionUpdateRequest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.tools.activity import ToolActivities
from activities.tools.contracts import ToolCall, ToolResult
from client.sdk import Baton, verdict
from tests.conftest import REVIEWERS, running_worker
from tests.test_onboarding_routes import PEP
from tests.test_replay import replayer
from worker.config import BatonConfig, WorkerSettings
from worker.registration import baton_worker
from workflows.approvals import Verdict
from workflows.decisions import SETTLE_SUMMARY
from workflows.outcome import RunState

pytestmark = pytest.mark.integration


@dataclass
class Parked:
    """A step's result, held back: the activity returned `complete async` with this token."""

    token: bytes
    result: ToolResult


WAIT_S = 60
HELD: dict[str, Parked] = {}  # workflow id -> the held step (the activity runs in a worker thread)


class HoldingTools(ToolActivities):
    """pull_credit does its real work, then leaves its completion to the test."""

    @activity.defn(name="run_tool")
    def run_tool(self, call: ToolCall) -> ToolResult:
        result = super().run_tool(call)
        if call.tool == "pull_credit":
            HELD[activity.info().workflow_id] = Parked(activity.info().task_token, result)
            activity.raise_complete_async()
        return result


def uncached(config: BatonConfig) -> BatonConfig:
    return config.model_copy(update={"worker": WorkerSettings(max_cached_runs=0)})


async def held_before_review(client: Client, config: BatonConfig) -> tuple[str, str, Parked]:
    """A PEP onboarding whose pull_credit has run and not yet been reported; no worker is left polling."""
    async with running_worker(client, uncached(config), tools_class=HoldingTools) as w:
        queue = w.task_queue
        run_id = await Baton(client, queue).start("onboarding", PEP)
        for _ in range(400):
            if run_id in HELD:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("pull_credit never ran")
    return run_id, queue, HELD.pop(run_id)


async def admitted_update(client: Client, run_id: str, decision: Verdict) -> asyncio.Task[Verdict]:
    """Send `decide` and return once the server has admitted it, before any worker has seen it.

    The server does not let a caller wait for the admitted stage itself, so the
    update is sent in the background and its stage polled until it is known.
    """
    update_id = uuid.uuid4().hex
    handle = client.get_workflow_handle(run_id)
    sent = asyncio.create_task(handle.execute_update("decide", decision, id=update_id, result_type=Verdict))
    ref = UpdateRef(workflow_execution=WorkflowExecution(workflow_id=run_id), update_id=update_id)
    stage = UpdateWorkflowExecutionLifecycleStage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ADMITTED
    for _ in range(400):
        try:
            await client.workflow_service.poll_workflow_execution_update(PollWorkflowExecutionUpdateRequest(
                namespace=client.namespace, update_ref=ref, identity="test", wait_policy=WaitPolicy(lifecycle_stage=stage),
            ))
            return sent
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        await asyncio.sleep(0.05)
    sent.cancel()
    raise AssertionError("the server never admitted the update")


async def settle_timers(client: Client, run_id: str) -> int:
    """How many timers the run started to wait for a request it had not reached."""
    history = await client.get_workflow_handle(run_id).fetch_history()
    summaries = [
        (await client.data_converter.decode([e.user_metadata.summary], [str]))[0]  # sealed like any payload
        for e in history.events if e.HasField("timer_started_event_attributes") and e.user_metadata.HasField("summary")
    ]
    return summaries.count(SETTLE_SUMMARY)


async def replays(client: Client, run_id: str) -> None:
    """The history the race left replays: the wait for the request is deterministic."""
    history = await client.get_workflow_handle(run_id).fetch_history()
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def release(client: Client, parked: Parked) -> None:
    await client.get_async_activity_handle(task_token=parked.token).complete(parked.result)


async def test_an_update_arriving_with_the_step_that_opens_its_request_is_taken(dev_env, config, issuer):
    client = dev_env.client
    run_id, queue, parked = await held_before_review(client, config)
    await release(client, parked)  # the run now has a task to do, and no worker to do it
    sent = await admitted_update(client, run_id, verdict(token=issuer.mint(REVIEWERS[0]), request_id="compliance_review",
                                                         approved=True, comment="PEP checked"))
    async with baton_worker(client, uncached(config), queue=queue):
        taken = await asyncio.wait_for(sent, WAIT_S)
        outcome = await asyncio.wait_for(Baton(client, queue).result(run_id), WAIT_S)
    assert (taken.request_id, taken.by, taken.approved) == ("compliance_review", REVIEWERS[0], True)
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert await settle_timers(client, run_id) == 0  # reached in the same task: the wait left no trace
    await replays(client, run_id)


async def test_a_signal_arriving_with_the_step_that_opens_its_request_is_taken(dev_env, config, issuer):
    client = dev_env.client
    run_id, queue, parked = await held_before_review(client, config)
    await release(client, parked)
    handle = client.get_workflow_handle(run_id)
    await handle.signal("approve", {"request_id": "compliance_review", "token": issuer.mint(REVIEWERS[0])})
    async with baton_worker(client, uncached(config), queue=queue):
        outcome = await asyncio.wait_for(Baton(client, queue).result(run_id), WAIT_S)  # a dropped signal parks it for good
    assert outcome.state is RunState.COMPLETED, outcome.reason
    await replays(client, run_id)


async def test_a_decision_for_a_request_the_run_never_opens_is_still_refused(dev_env, config, issuer):
    client = dev_env.client
    run_id, queue, parked = await held_before_review(client, config)
    await release(client, parked)
    sent = await admitted_update(client, run_id, verdict(token=issuer.mint(REVIEWERS[0]), request_id="compliance_reveiw",
                                                         approved=True))
    async with baton_worker(client, uncached(config), queue=queue):
        handle = client.get_workflow_handle(run_id)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await asyncio.wait_for(sent, WAIT_S)
        status = await Baton(client, queue).status(run_id)
        await handle.terminate("test over")
    assert "no open approval request 'compliance_reveiw'" in str(refused.value.cause)
    assert await settle_timers(client, run_id) == 1
    await replays(client, run_id)
    assert [r.id for r in status.open_requests] == ["compliance_review"]
