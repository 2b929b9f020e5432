"""Stop the Temporal server (SIGTERM, or kill -9) and start it again on the same file, mid-flight.

The dev server keeps its state in SQLite (`--db-filename`); the worker is a
subprocess that is never restarted here: Temporal's Python worker (its Rust
core) retries polls and completions that fail with `Unavailable`, with backoff,
for as long as the server is away, and picks up again on its own when it is
back (tried with a 75 s outage). So a user restarts the server and nothing
else. Each test has runs parked (one approved before the restart with
`baton approve`, one with the SDK, one after), and two runs inside a write
(paused 3 s after the write committed, so the completion meets a server that is
down): every run ends as designed, every effect exists exactly once, the
approvals are not lost.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from client.sdk import Baton
from tests.stack_process import (
    ROOT,
    Case,
    ServerOnFile,
    WorkerProcess,
    World,
    decide,
    open_request,
    outcome_of,
)
from workflows.outcome import RunState

pytestmark = pytest.mark.integration

BATON = Path(sys.executable).parent / "baton"  # the CLI a user types
PAUSE_S = 3  # the paused write returns while the server is down (it stays down for DOWN_S)
DOWN_S = 4


@pytest.fixture
async def server(tmp_path):
    s = ServerOnFile(tmp_path / "temporal.db")
    await s.start()
    try:
        yield s
    finally:
        await asyncio.to_thread(s.stop, True)


def baton_cli(server: ServerOnFile, queue: str, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TEMPORAL_ADDRESS": server.target, "BATON_TASK_QUEUE": queue, "BATON_TOKEN": token}
    env.pop("TEMPORAL_PROFILE", None)
    return subprocess.run(
        [str(BATON), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "kill-9"])
async def test_server_restart_resumes_runs_in_flight_and_parked(server, tmp_path, hard):
    cases = [
        Case(1, "onboarding-review"),   # parked across the restart, approved after it
        Case(2, "refund-large"),        # approved (SDK) before the restart, its refund then runs
        Case(3, "sales"),               # approved (`baton approve`) before; its send is in flight
        Case(4, "onboarding-clear"),    # in flight: inside its CRM write
        Case(5, "onboarding-reject"),   # nothing to write, ever
    ]
    world = World.create(tmp_path / "world", cases)
    queue = f"restart-{uuid.uuid4().hex[:8]}"
    client = await server.client()
    baton = Baton(client, queue, tokens=world.tokens)
    worker = WorkerProcess(server, world, queue, tools=["create_crm_record", "send_email"], pause_s=PAUSE_S).start()
    try:
        await worker.ready()
        for c in cases[:3]:
            await c.start(baton)
        asked = await open_request(baton, cases[2].run_id)
        await decide(baton, cases[1])
        cli = baton_cli(server, queue, world.issuer.mint(cases[2].approver()), "approve", cases[2].run_id, "--request", asked.id, "--by", cases[2].approver(),
                        "--comment", "send it")
        assert cli.returncode == 0, cli.stdout + cli.stderr
        for c in cases[3:]:
            await c.start(baton)
        sales_send = await world.marker("tool-send_email", worker=worker)
        crm_write = await world.marker("tool-create_crm_record", worker=worker)
        assert (sales_send["workflow_id"], crm_write["workflow_id"]) == (cases[2].run_id, cases[3].run_id)
        parked = await open_request(baton, cases[0].run_id)

        await server.restart(hard=hard, down_s=DOWN_S)

        assert worker.alive, worker.output()[-2000:]
        await decide(baton, cases[0])
        for c in cases:
            c.outcome = await outcome_of(client, c.run_id, 120)
        for c in cases:
            assert c.outcome.state is c.expected_state(), f"{c.kind}: {c.outcome.reason}"
            assert c.effects_found(world.systems) == c.effects_expected(), c.kind
        assert [c.outcome.state for c in cases] == [RunState.COMPLETED] * 4 + [RunState.REJECTED]
        ledger = await baton.ledger(cases[2].run_id)
        (approval,) = [e for e in ledger if e.step == "send_followup.approval"]
        assert approval.by == cases[2].approver()  # the decision sent before the restart
        review = next(e for e in await baton.ledger(cases[0].run_id) if e.step == parked.step)
        assert review.by == cases[0].approver()
        assert worker.alive and worker.output().count("crash-worker polling") == 1  # the same worker, reconnected
    finally:
        worker.kill()
