"""The sales follow-up proposes a meeting in the run's future, whenever the demo was (time-skipping server).

The slot is computed in code (`suggest_slot`), from the deal's demo date and the run's own
clock (`workflow.now()`): the test server's clock is wherever earlier tests skipped it to, so
every expectation here is derived from the time the run itself recorded, never from the wall
clock or a date written into the test.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, time, timedelta, timezone

import pytest

from client.sdk import Baton
from tests.conftest import SALES_MANAGERS, SEED, running_worker
from tests.test_agents import open_request
from tests.test_replay import replayer
from workflows.ledger import StepKind
from workflows.outcome import RunState


def two_business_days_after(day: date) -> date:
    return [d for d in (day + timedelta(days=n) for n in range(1, 8)) if d.weekday() < 5][1]


def add_deal(db, deal_id: str, demo_on: date) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO deals VALUES (?,?,?,?,?,?,?,?)",
            (deal_id, "Northwind Traders", "Maria Anders", "maria.anders@northwind.example", "sam",
             demo_on.isoformat(), "demo done", '["Asked about SSO"]'),
        )


@pytest.mark.parametrize("demo_days_from_now", [-2000, -9, 0, 12], ids=["years-ago", "weeks-ago", "today", "ahead"])
async def test_the_meeting_proposed_is_after_the_run_and_after_the_demo(time_env, config, systems, demo_days_from_now):
    systems.create(SEED)
    now = await time_env.get_current_time()
    demo_on = (now + timedelta(days=demo_days_from_now)).date()
    add_deal(config.systems.db, "D-801", demo_on)
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("sales-followup", {"deal_id": "D-801"})
        request = await open_request(baton, run_id)
        await baton.reject(run_id, by=SALES_MANAGERS[0], request_id=request.id, comment="timing check only")
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)
        history = await time_env.client.get_workflow_handle(run_id).fetch_history()

    assert outcome.state is RunState.REJECTED, outcome.reason
    (slot,) = [e for e in ledger if e.step == "suggest_slot"]
    assert slot.kind is StepKind.RULE
    starts_at = datetime.fromisoformat(slot.decision["starts_at"])
    run_day = slot.started_at.astimezone(timezone.utc).date()  # the run's clock at the step
    assert starts_at > slot.started_at, (starts_at, slot.started_at)
    assert starts_at == datetime.combine(two_business_days_after(max(demo_on, run_day)), time(15, tzinfo=timezone.utc))
    assert datetime.fromisoformat(request.context["meeting"]) == starts_at  # what the manager reads
    assert datetime.fromisoformat(outcome.result["meeting"]["starts_at"]) == starts_at  # what the run returns
    replayed = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
