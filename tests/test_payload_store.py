"""Large payloads in a store every worker shares (worker/payload_store.py): across processes, a kill, and S3.

The acceptance test of issue 20, item 1: two worker PROCESSES that share
nothing but Temporal (the real dev server) and the payload store (each its
own working directory, baton.toml, systems and SQLite files) run a support
agent whose knowledge-base answers (KB-3, 17 KB) are stored outside history.
The first worker is killed (-9) inside the agent's model call between two
turns, a call whose input (the conversation holding KB-3) it stored itself;
the second finishes the run. Then `baton audit` reconstructs the agent's run
from its history, reading the stored payloads. Once on a shared directory,
once on an S3-compatible server (moto) the test starts.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from activities.payloads import PayloadSettings, S3Settings
from client.audit import audit
from client.run_record import run_record
from client.sdk import Baton
from tests.history_payloads import payloads
from tests.stack_process import SUPPORT_LEAD, ServerOnFile, World, WorkerProcess, free_port, outcome_of
from worker.codec import ENCODING
from worker.connection import storing_payloads
from worker.payload_store import DirectoryDriver, StoredPayloadMissing
from workflows.outcome import RunState

ROOT = Path(__file__).resolve().parent.parent
LOOPING = json.loads((ROOT / "examples" / "support-triage" / "looping-agent.json").read_text())
PASSAGE = b"Mesh nodes update together"  # in KB-3 only
BUCKET = "baton-payloads"
THRESHOLD = 8192  # KB-3 (17 KB) and every conversation carrying it go to the store


# ----- the directory driver on its own: claims come from history, which anyone can write -------


async def test_a_claim_names_a_digest_never_a_path_and_altered_bytes_are_refused(tmp_path):
    driver = DirectoryDriver(tmp_path / "store")
    (tmp_path / "secret").write_bytes(b"not a payload")
    read = lambda claim: driver.retrieve(StorageDriverRetrieveContext(), [StorageDriverClaim(claim)])  # noqa: E731

    for forged in ({"sha256": "../../secret"}, {"sha256": str(tmp_path / "secret")}, {"path": "secret"}):
        with pytest.raises(ValueError, match="no valid sha256 digest"):
            await read(forged)
    (claim,) = await driver.store(None, [Payload(metadata={"encoding": b"binary/plain"}, data=b"x" * 100)])
    digest = claim.claim_data["sha256"]
    assert [p.data for p in await read(claim.claim_data)] == [b"x" * 100]
    driver.path(digest).write_bytes(driver.path(digest).read_bytes().replace(b"xx", b"yx", 1))
    with pytest.raises(ValueError, match="was altered"):
        await read(claim.claim_data)
    with pytest.raises(StoredPayloadMissing, match="every worker and client shares"):
        await read({"sha256": "0" * 64})


# ----- two worker processes, one kill ---------------------------------------------------------


@pytest.fixture
def s3() -> Iterator[S3Settings]:
    """An S3-compatible server (moto) on a free port, with the bucket, and AWS credentials the workers inherit."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    try:
        settings = S3Settings(bucket=BUCKET, endpoint_url=f"http://127.0.0.1:{server._port}", region="us-east-1")
        boto3.client("s3", endpoint_url=settings.endpoint_url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield settings
    finally:
        server.stop()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def stored_objects(settings: PayloadSettings) -> list[bytes]:
    """Every payload in the store, as the store holds it (files, or S3 objects read with boto3)."""
    if settings.store == "directory":
        return [p.read_bytes() for p in settings.directory.rglob("*") if p.is_file()]
    s3 = boto3.client("s3", endpoint_url=settings.s3.endpoint_url, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    return [s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys]


def toml(settings: PayloadSettings) -> str:
    lines = [f"store = {json.dumps(settings.store)}", f"inline_max_bytes = {settings.inline_max_bytes}",
             f"directory = {json.dumps(str(settings.directory))}"]
    if settings.s3 is not None:
        lines += ["", "[payloads.s3]", *(f"{k} = {json.dumps(v)}" for k, v in settings.s3.model_dump().items() if v)]
    return "\n".join(lines)


async def references(client: Client, workflow_id: str) -> list[Payload]:
    """The payloads of a run's history that are External Storage references."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [p for e in history.events for p in payloads(e) if p.external_payloads]


async def model_attempts(client: Client, workflow_id: str) -> list[int]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [e.activity_task_started_event_attributes.attempt for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]


@pytest.mark.integration
@pytest.mark.parametrize("store", ["directory", "s3"])
async def test_an_agent_whose_outputs_were_stored_finishes_on_another_worker_after_a_kill(tmp_path, store, request):
    s3 = request.getfixturevalue("s3") if store == "s3" else None
    settings = PayloadSettings(store=store, directory=tmp_path / "shared-payloads", s3=s3, inline_max_bytes=THRESHOLD)
    server = ServerOnFile(tmp_path / "temporal.db")
    await server.start()
    first = second = None
    try:
        one = World.create(tmp_path / "first", [], payloads=toml(settings))
        worlds = [one, World.create(tmp_path / "second", [], payloads=toml(settings), issuer=one.issuer)]
        queue = f"payloads-{uuid.uuid4().hex[:8]}"
        homes = [tmp_path / f"{name}-cwd" for name in ("first", "second")]
        for home in homes:
            home.mkdir()
        first = WorkerProcess(server, worlds[0], queue, cwd=homes[0], models=["Resolution"], models_after_tools=1)
        second = WorkerProcess(server, worlds[1], queue, cwd=homes[1])
        first.start()
        await first.ready()
        client = storing_payloads(await server.client(), settings)  # a client reading the shared store
        baton = Baton(client, queue, tokens=one.tokens)
        run_id = await baton.start("support-triage", LOOPING, run_id=f"looping-{uuid.uuid4().hex[:6]}")
        child = f"{run_id}/technical_agent"

        paused = await worlds[0].marker("model-Resolution", timeout=90, worker=first)
        assert paused["workflow_id"] == child and paused["attempt"] == 1
        stored_by_first = await references(client, child)
        assert stored_by_first, "the first worker stored nothing of the agent's outside history"
        first.kill()
        second.start()
        await second.ready()

        request_ = await _takeover(baton, run_id)
        await baton.approve(run_id, by=SUPPORT_LEAD, request_id=request_.id, comment="walked the customer through KB-1")
        outcome = await outcome_of(client, run_id, timeout=120)

        assert outcome.state is RunState.COMPLETED, outcome.reason
        assert 2 in await model_attempts(client, child)  # the killed call, retried by the second worker
        assert not second.output().count("Traceback"), second.output()[-2000:]
        # What the store holds is ciphertext: KB-3's text in none of it, each a sealed payload.
        objects = stored_objects(settings)
        assert len(objects) >= len(stored_by_first)
        assert all(PASSAGE not in raw for raw in objects)
        for raw in objects:
            sealed = Payload()
            sealed.ParseFromString(raw)
            assert sealed.metadata["encoding"] == ENCODING
        # `baton audit` replays the agent's history, reading its stored payloads.
        record = await run_record(client, child)
        searches = [e for e in record.ledger if e.name == "search_kb"]
        assert len(searches) == 6 and all(e.decision["bytes"] > THRESHOLD for e in searches)
        assert audit(record)["run"]["run_id"] == child
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.kill()
        server.stop()


async def _takeover(baton: Baton, run_id: str):
    from tests.stack_process import open_request

    return await open_request(baton, run_id, timeout=150)
