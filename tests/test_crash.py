"""kill -9 the worker, start another: every run ends as designed, every effect exists exactly once.

The real dev server on a SQLite file, the real worker as a subprocess
(`tests/crash_worker.py`, which pauses inside a chosen step and says so with a
marker file), and SIGKILL to its process group: no graceful shutdown, no
chance to report. A write step is killed after its write committed and before
Temporal heard of it (the retry must find the first write, not make a second);
a model call is killed mid-call; parked runs lose the worker they parked on.
Effects are counted by business content (tests/stack_process.py), so a second
CRM record, e-mail or refund under any key would be seen. A run that lost its
call replays, also as a first execution can have seen it (tests/test_replay.py `with_stale_clock`).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowHistory

from activities.payloads import PayloadSettings
from client.sdk import Baton
from tests.stack_process import Case, ServerOnFile, WorkerProcess, World, decide, open_request, outcome_of
from tests.test_replay import replayer, with_stale_clock
from workflows.ledger import LedgerEntry

pytestmark = pytest.mark.integration

RECOVERY_S = 120  # a killed tool call is retried when its 30 s start-to-close expires


@pytest.fixture(scope="module")
async def server(tmp_path_factory):
    s = ServerOnFile(tmp_path_factory.mktemp("crash-server") / "temporal.db")
    await s.start()
    try:
        yield s
    finally:
        await asyncio.to_thread(s.stop)


@pytest.fixture
def workers():
    """Every worker a test starts is killed at the end, whatever happened."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.kill()


async def start_worker(server, world, queue, workers, **pause) -> WorkerProcess:
    w = WorkerProcess(server, world, queue, **pause).start()
    workers.append(w)
    await w.ready()
    return w


async def entry(baton: Baton, run_id: str, step: str) -> LedgerEntry:
    (found,) = [e for e in await baton.ledger(run_id) if e.step == step]
    return found


async def finish(client, world: World, cases: list[Case]) -> None:
    """Every run ends as expected and left exactly the effects its end calls for."""
    for c in cases:
        c.outcome = await outcome_of(client, c.run_id, RECOVERY_S)
    for c in cases:
        assert c.outcome.state is c.expected_state(), f"{c.kind} {c.run_id}: {c.outcome.reason}"
        assert c.effects_found(world.systems) == c.effects_expected(), f"{c.kind} {c.run_id}"


async def test_kill_after_a_write_committed_retries_it_into_the_same_record(server, tmp_path, workers):
    """(a) CRM record, refund (inside the agent's child) and follow-up e-mail: each written, then the worker dies."""
    cases = [Case(1, "onboarding-clear"), Case(2, "refund-small"), Case(3, "sales")]
    world = World.create(tmp_path, cases)
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    client = await server.client()
    baton = Baton(client, queue, tokens=world.tokens)
    first = await start_worker(server, world, queue, workers, tools=["create_crm_record", "issue_refund", "send_email"])
    for c in cases:
        await c.start(baton)
    await decide(baton, cases[2])  # the manager approves the draft; the send then pauses
    marks = [await world.marker(f"tool-{t}", worker=first) for t in ("create_crm_record", "issue_refund", "send_email")]
    assert all(m["pid"] == first.proc.pid and m["attempt"] == 1 for m in marks)
    # The writes have committed; Temporal has not heard of them.
    assert [c.effects_found(world.systems) for c in cases] == [
        {"crm_record": 1, "email": 0}, {"refund": 1}, {"email": 1, "crm_update": 0},
    ]

    first.kill()
    await start_worker(server, world, queue, workers)
    await finish(client, world, cases)

    crm = await entry(baton, cases[0].run_id, "create_crm_record")
    refund = await entry(baton, f"{cases[1].run_id}/returns_agent", "turn-2.issue_refund")
    sent = await entry(baton, cases[2].run_id, "send_followup")
    assert (crm.attempts, crm.decision["created"]) == (2, False)  # the retry found the first write
    assert refund.attempts == 2 and refund.outcome == "ok"
    assert (sent.attempts, sent.decision["queued"]) == (2, False)
    assert cases[0].outcome.result["customer_id"] == crm.decision["customer_id"]


async def test_kill_during_a_model_call_asks_again_and_writes_once(server, tmp_path, workers):
    """(b) the welcome e-mail, the ticket's classification and the follow-up draft die mid-call."""
    cases = [Case(1, "onboarding-clear"), Case(2, "refund-small"), Case(3, "sales")]
    world = World.create(tmp_path, cases)
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    client = await server.client()
    baton = Baton(client, queue, tokens=world.tokens)
    first = await start_worker(server, world, queue, workers, models=["WelcomeEmail", "TriageDecision", "FollowUpDraft"])
    for c in cases:
        await c.start(baton)
    for output in ("WelcomeEmail", "TriageDecision", "FollowUpDraft"):
        await world.marker(f"model-{output}", worker=first)
    assert all(v == 0 for c in cases for v in c.effects_found(world.systems).values())

    first.kill()
    await start_worker(server, world, queue, workers)
    await decide(baton, cases[2])
    await finish(client, world, cases)

    for c, step in zip(cases, ("welcome_email", "classify", "draft_email"), strict=True):
        e = await entry(baton, c.run_id, step)
        assert (e.outcome, e.attempts) == ("ok", 2), f"{step}: {e}"


async def test_kill_while_runs_are_parked_loses_no_request(server, tmp_path, workers):
    """(c) parked on a compliance review, a support lead's refund approval, two managers' drafts."""
    cases = [
        Case(1, "onboarding-review"), Case(2, "refund-large"), Case(3, "sales"),
        Case(4, "sales", approve=False), Case(5, "onboarding-reject"),
    ]
    world = World.create(tmp_path, cases)
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    client = await server.client()
    baton = Baton(client, queue, tokens=world.tokens)
    first = await start_worker(server, world, queue, workers)
    for c in cases:
        await c.start(baton)
    asked = {c.n: await open_request(baton, c.approval_target()) for c in cases if c.parks}
    for c in cases:  # the reject has ended; the others are parked
        if not c.parks:
            await outcome_of(client, c.run_id, 30)
    assert all(v == 0 for c in cases for v in c.effects_found(world.systems).values())

    first.kill()
    await start_worker(server, world, queue, workers)
    parked = [c for c in cases if c.parks]
    again = await asyncio.gather(*(open_request(baton, c.approval_target()) for c in parked))
    for c, request in zip(parked, again, strict=True):  # the same requests, asked at the same time
        assert (request.id, request.requested_at) == (asked[c.n].id, asked[c.n].requested_at)
    await asyncio.gather(*(decide(baton, c) for c in cases if c.parks))
    await finish(client, world, cases)
    assert cases[1].effects_found(world.systems) == {"refund": 1}
    assert cases[3].effects_found(world.systems) == {"email": 0, "crm_update": 0}


def retried_call(history: WorkflowHistory) -> int:
    """The event that started the first retried activity attempt: its result came in a task of its own."""
    retried = [e.event_id for e in history.events if e.activity_task_started_event_attributes.attempt > 1]
    assert retried, "no activity in this history was retried"
    return retried[0]


async def test_a_run_killed_mid_call_replays_whatever_clock_its_tasks_saw(server, tmp_path, workers):
    """(d) the welcome e-mail's call dies; the run finishes on another worker, then replays as recorded, and as a
    first execution on a stale clock recorded it: nothing the run decides may depend on which clock a task read."""
    case = Case(1, "onboarding-clear")
    world = World.create(tmp_path, [case])
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    client = await server.client()
    baton = Baton(client, queue, tokens=world.tokens)
    first = await start_worker(server, world, queue, workers, models=["WelcomeEmail"])
    await case.start(baton)
    await world.marker("model-WelcomeEmail", worker=first)
    first.kill()
    await start_worker(server, world, queue, workers)
    await finish(client, world, [case])

    history = await client.get_workflow_handle(case.run_id).fetch_history()
    stale, moved = with_stale_clock(history, retried_call(history))
    assert moved > timedelta(seconds=5), moved  # the retry waited out the killed attempt's start-to-close
    replay = replayer(PayloadSettings(directory=tmp_path / "payloads", db=tmp_path / "payloads.db"))
    for clock, seen in (("as recorded", history), ("on a stale clock", stale)):
        result = await replay.replay_workflow(seen, raise_on_replay_failure=False)
        assert result.replay_failure is None, (clock, result.replay_failure)
