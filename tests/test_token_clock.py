"""A decision's token is judged on a clock replay agrees with: the same commands whichever clock a task read.

A task's code may run on the clock of the task before it (a query racing the
event that wakes it, tests/test_replay.py `with_stale_clock`); replay gives it
its own. A token checked against `workflow.now()` there (its iat, nbf, exp) can
be refused on the stale clock and taken on replay, or the other way round: the
run is stuck. These tests record a decision and replay it as recorded and on
such a stale clock.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from client.sdk import Baton, verdict
from tests.conftest import REVIEWERS, running_worker
from tests.test_identity import forged
from tests.test_decision_race import WAIT_S, admitted_update, held_before_review, release, uncached
from tests.test_onboarding_routes import PEP, wait_for_state
from tests.test_replay import replayer, with_stale_clock
from worker.config import BatonConfig
from worker.registration import baton_worker
from workflows.decisions import MAX_UNTIMELY
from workflows.outcome import RunState

PARKED = timedelta(hours=2)  # how long the run waits for its reviewer: the stale clock is that far behind


def event_id(history: WorkflowHistory, kind: EventType.ValueType, before: int | None = None) -> int:
    """The id of the last event of `kind` (before event `before`, if given)."""
    return next(e.event_id for e in reversed(history.events) if e.event_type == kind and e.event_id < (before or 1 << 62))


async def replays_on_any_clock(history: WorkflowHistory, after: int, config: BatonConfig) -> timedelta:
    """Replay `history` as recorded and with the task after event `after` reading the task before's clock;
    returns how far back that moved the clock."""
    stale, moved = with_stale_clock(history, after)
    replay = replayer(config.payloads)
    for clock, seen in (("as recorded", history), ("on a stale clock", stale)):
        result = await replay.replay_workflow(seen, raise_on_replay_failure=False)
        assert result.replay_failure is None, (clock, result.replay_failure)
    return moved


async def test_a_signal_with_a_fresh_token_decides_the_same_on_any_clock_a_task_read(time_env, config, issuer):
    """A PEP onboarding waits two hours for compliance; a reviewer approves by signal with a token issued then.
    On the clock of the task that asked, that token is two hours from being issued (refused); on the signal's
    task's own clock it is fresh (taken). The run must give the same commands either way."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        await time_env.sleep(PARKED)
        token = issuer.mint(REVIEWERS[0], now=await time_env.get_current_time())
        handle = time_env.client.get_workflow_handle(run_id)
        await handle.signal("approve", {"request_id": "compliance_review", "token": token, "comment": "PEP checked"})
        outcome = await baton.result(run_id)
        history = await handle.fetch_history()

    assert outcome.state is RunState.COMPLETED, outcome.reason
    moved = await replays_on_any_clock(history, event_id(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED), config)
    assert moved >= PARKED, moved  # the premise: the stale task read a clock from before the token was issued


@pytest.mark.integration
async def test_an_update_settled_until_its_request_opens_decides_the_same_on_any_clock_a_task_read(dev_env, config, issuer):
    """The `decide` update reaches the run with the completion of the step before the review (one task, as in
    tests/test_decision_race.py): its handler waits for the request, then judges. The token is issued after the
    task that ran that step; with no leeway, the stale clock finds it not yet valid, the task's own does not."""
    client = dev_env.client
    strict = config.model_copy(update={"identity": config.identity.model_copy(update={"leeway_s": 0})})
    run_id, queue, parked = await held_before_review(client, strict)
    await release(client, parked)
    await asyncio.sleep(2.5)  # real seconds, on the dev server's clock: the token is issued after that task started
    sent = await admitted_update(client, run_id, verdict(token=issuer.mint(REVIEWERS[0]), request_id="compliance_review",
                                                         approved=True, comment="PEP checked"))
    async with baton_worker(client, uncached(strict), queue=queue):
        taken = await asyncio.wait_for(sent, WAIT_S)
        outcome = await asyncio.wait_for(Baton(client, queue).result(run_id), WAIT_S)
    history = await client.get_workflow_handle(run_id).fetch_history()

    assert (taken.by, taken.approved, outcome.state) == (REVIEWERS[0], True, RunState.COMPLETED), outcome.reason
    accepted = event_id(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    completed = event_id(history, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, before=accepted)  # pull_credit's
    moved = await replays_on_any_clock(history, completed, strict)
    assert moved >= timedelta(seconds=2), moved


async def test_a_flood_of_signals_with_an_expired_signed_token_is_judged_a_bounded_number_of_times(time_env, config, issuer):
    """A reviewer's real token, expired, sent again and again by signal (with signals carrying no token among
    them): each is refused and counted, what needs no clock costs no activity, and no more than MAX_UNTIMELY
    activities judge the token's times. The reviewer can still decide, by update."""
    flood = 2 * MAX_UNTIMELY + 6  # two in three carry the token: more than MAX_UNTIMELY
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        expired = forged(issuer, await time_env.get_current_time(), "expired")
        handle = time_env.client.get_workflow_handle(run_id)
        for i in range(flood):
            await handle.signal("approve", {"request_id": "compliance_review", "token": expired if i % 3 else None})
        for _ in range(400):
            status = await baton.status(run_id)
            if status.refused_signals == flood:
                break
            await asyncio.sleep(0.05)
        await baton.approve(run_id, by=REVIEWERS[0], request_id="compliance_review", comment="checked")
        outcome = await baton.result(run_id)
        history = await handle.fetch_history()
    judged = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
              and e.activity_task_scheduled_event_attributes.activity_type.name == "judge_token"]
    assert status.refused_signals == flood, status.refused_signals
    assert 0 < len(judged) <= MAX_UNTIMELY < flood * 2 // 3, len(judged)
    assert outcome.state is RunState.COMPLETED, outcome.reason
