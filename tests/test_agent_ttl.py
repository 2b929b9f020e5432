"""An agent's time to live, decided by timers: the same commands whichever clock a task read.

A task's code may run on the clock of the task before it (a query racing a
result or a decision, tests/test_replay.py `with_stale_clock`); replay gives it
its own. Whatever an agent decides by comparing `workflow.now()` can then go
one way when the run is first executed and the other on replay, and the run is
stuck. These tests record runs on the time-skipping server and replay them as
recorded and on such a stale clock.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.exceptions import ApplicationError

from activities.policy import Budget
from activities.tools.activity import ToolActivities
from activities.tools.contracts import ToolCall, ToolResult

from client.credentials import TokenProvider
from client.sdk import Baton
from tests.conftest import SUPPORT_LEADS, running_worker
from tests.agent_processes import PROCESS, AgentLoop, LoopTask
from tests.test_agents import agent_report, loop_config, open_request, ticket, trail_of  # noqa: F401 (a fixture)
from tests.test_replay import replayer, with_stale_clock
from worker.issuer import LocalIssuer
from workflows.outcome import RunState


def signed_in_at(issuer: LocalIssuer, when: datetime) -> TokenProvider:
    """Tokens issued at `when`, good for two hours: the run verifies them by its clock, and the stale one (below)
    must find them valid too, or it would replay a refusal instead of the decision this test is about."""
    async def tokens(by: str | None) -> str:
        return issuer.mint(by, now=when, ttl=timedelta(hours=2))
    return tokens


def decision_task(history: WorkflowHistory) -> int:
    """The event after which the task that took a person's decision starts.

    An update is accepted by the task it reached (its events follow the task's
    completion); a signal comes before the task it wakes.
    """
    events = history.events
    decided = next(e.event_id for e in reversed(events) if e.HasField("workflow_execution_update_accepted_event_attributes")
                   or e.HasField("workflow_execution_signaled_event_attributes"))
    if events[decided - 1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        return decided
    return max(e.event_id for e in events if e.event_id < decided and e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED) - 1


async def test_a_person_slower_than_the_ttl_stops_no_agent_on_any_clock_a_task_read(time_env, issuer, config):
    """The returns agent (ttl 5 min) asks a support lead about a $420 refund; the lead answers after an hour.
    People's time is not the agent's: it pays the refund and answers. Replayed as recorded, and with the task
    after the decision reading the clock of the task that asked (so the pause it counts is nothing): the same
    commands, so no clock decides whether the agent's working time ran out."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("support-triage", ticket("large-refund"))
        child = f"{run_id}/returns_agent"
        request = await open_request(baton, child)
        await time_env.sleep(timedelta(hours=1))  # twelve ttls, short of the four-hour approval deadline
        lead = Baton(time_env.client, w.task_queue, tokens=signed_in_at(issuer, request.requested_at))
        await lead.approve(child, by=SUPPORT_LEADS[0], request_id=request.id, comment="checked the order")
        outcome = await baton.result(run_id)
        _, report = agent_report(await baton.ledger(run_id))
    history = await time_env.client.get_workflow_handle(child).fetch_history()

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert (report.status, report.cap) == ("done", None), report.reason
    assert trail_of(report, "approved", "issue_refund") and trail_of(report, "observed", "issue_refund")
    stale, moved = with_stale_clock(history, decision_task(history))
    assert moved >= timedelta(hours=1), moved  # the stale task counts none of the lead's hour as a pause
    replay = replayer(config.payloads)
    for clock, seen in (("as recorded", history), ("on a stale clock", stale)):
        result = await replay.replay_workflow(seen, raise_on_replay_failure=False)
        assert result.replay_failure is None, (clock, result.replay_failure)


WALL_CLOCK = timedelta(minutes=4)  # the loop process's: inside the agent's five-minute ttl


class LastSecondLookups(ToolActivities):
    """Turn 1's lookup answers in the wall clock's last half second (its first try asks to be retried then).
    Scheduled then, turn 2's has the second the wall clock never gives less (workflows/budget.py `_time_left`);
    its first try asks to be retried in 0.7 s of it, so it answers after the wall clock's timer fired (by some
    0.2 s of workflow time), within its own time (by some 0.3 s)."""

    @activity.defn(name="run_tool")
    def run_tool(self, call: ToolCall) -> ToolResult:
        if call.step in ("turn-1.lookup_order", "turn-2.lookup_order") and activity.info().attempt == 1:
            wait = WALL_CLOCK - timedelta(milliseconds=500) if call.step.startswith("turn-1") else timedelta(milliseconds=700)
            raise ApplicationError("order service busy", next_retry_delay=wait)
        return super().run_tool(call)


async def test_an_agent_continued_after_its_wall_clock_ran_out_takes_no_turn(time_env, loop_config):
    """The short-runs agent continues as new after two turns; its wall clock's timer fires during turn 2's
    lookup, which answers after it. The run it continues as must not start a fresh timer and take turn 3:
    the timer fired, and the flag it set is carried."""
    budgets = {**loop_config.budgets, PROCESS: Budget(max_wall_clock=WALL_CLOCK)}
    async with running_worker(time_env.client, loop_config.model_copy(update={"budgets": budgets}),
                              tools_class=LastSecondLookups, extra_workflows=(AgentLoop,)) as w:
        handle = await time_env.client.start_workflow(
            AgentLoop.run, LoopTask(agent="short-runs"), id=f"{PROCESS}-{uuid.uuid4().hex[:6]}", task_queue=w.task_queue,
        )
        await handle.result()
        _, report = agent_report(await Baton(time_env.client).ledger(handle.id))
    child = f"{handle.id}/short-runs_agent"
    latest = await time_env.client.get_workflow_handle(child).fetch_history()
    continued = latest.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    assert continued, "it never continued"
    history = await time_env.client.get_workflow_handle(child, run_id=continued).fetch_history()
    first = [EventType.Name(e.event_type) for e in history.events]
    fired, answered = first.index("EVENT_TYPE_TIMER_FIRED"), len(first) - first[::-1].index("EVENT_TYPE_ACTIVITY_TASK_COMPLETED")
    assert fired < answered, first  # the premise: the wall clock's timer fired before turn 2's lookup answered
    assert (report.status, report.cap, report.turns) == ("escalated", "max_wall_clock", 2), report.reason
    assert "stopped before turn-3" in report.reason
    assert [e.kind for e in report.trail if e.turn == 2] == ["proposed", "observed", "stopped"]
    assert not [e for e in latest.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
