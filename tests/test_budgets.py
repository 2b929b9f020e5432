"""Every kill switch, breached in turn through Temporal: the run ends typed, naming the cap it hit.

Each test tightens one cap through the run's own budget override, so the
same shipped processes (and the shipped defaults for every other cap) are
what is measured. Time caps are driven on the time-skipping server.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError

from activities.policy import Budget, BudgetOverride
from activities.tools.activity import ToolActivities
from activities.tools.contracts import ToolCall, ToolResult
from client.sdk import Baton
from tests.conftest import LEADS, REVIEWERS, SUPPORT_LEADS, running_worker
from tests.processes import EscalatingApproval, Escalation, Pause, PauseBetweenSteps, PauseThenExtend
from tests.test_onboarding_routes import CLEAR, PEP, wait_for_state
from tests.test_replay import replayer, with_stale_clock
from workflows.ledger import LedgerEntry, StepKind
from workflows.outcome import RunState
from workflows.search_attributes import AWAITING_APPROVAL
from workflows.budget import span
from workflows.visibility import at_start

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(path: str) -> dict:
    return json.loads((EXAMPLES / path).read_text())


async def run_to_end(time_env, config, process: str, data: dict) -> tuple:
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start(process, data)
        outcome = await baton.result(run_id)
        return outcome, await baton.status(run_id), await baton.ledger(run_id)


def model_requests(ledger: list[LedgerEntry]) -> int:
    return sum(len(e.calls) for e in ledger if e.kind is StepKind.LLM)


async def test_max_llm_calls_stops_before_the_next_model_step(time_env, config, systems):
    data = {**example("sales-followup/northwind.json"), "budget": {"max_llm_calls": 1}}
    outcome, status, ledger = await run_to_end(time_env, config, "sales-followup", data)

    assert (outcome.state, outcome.cap) == (RunState.BUDGET_EXCEEDED, "max_llm_calls")
    assert outcome.reason.startswith("max_llm_calls: 1 model calls used, limit 1; stopped before draft_email")
    assert [e.step for e in ledger] == ["read_crm_notes", "summarise_signals", "suggest_slot"]
    assert status.usage.llm_calls == model_requests(ledger) == 1
    assert systems.count("outbox") == 0


async def test_max_tool_calls_stops_before_the_next_tool(time_env, config, systems):
    outcome, status, ledger = await run_to_end(time_env, config, "onboarding", {**CLEAR, "budget": {"max_tool_calls": 2}})

    assert (outcome.state, outcome.cap) == (RunState.BUDGET_EXCEEDED, "max_tool_calls")
    assert "stopped before create_crm_record" in outcome.reason
    assert [e.step for e in ledger] == ["validate_identity", "pull_credit", "match_kyc", "welcome_email"]
    assert status.usage.tool_calls == sum(e.kind is StepKind.TOOL for e in ledger) == 2
    assert systems.count("crm_records") == 0 and systems.count("outbox") == 0


async def test_max_steps_and_max_cost_name_their_caps(time_env, config):
    steps, _, _ = await run_to_end(time_env, config, "onboarding", {**CLEAR, "budget": {"max_steps": 3}})
    cost, _, ledger = await run_to_end(time_env, config, "onboarding", {**CLEAR, "budget": {"max_cost_usd": 1e-5}})

    assert (steps.state, steps.cap) == (RunState.BUDGET_EXCEEDED, "max_steps")
    assert "stopped before welcome_email" in steps.reason
    assert (cost.state, cost.cap) == (RunState.BUDGET_EXCEEDED, "max_cost_usd")
    assert ledger[-1].outcome == "over_budget"


@pytest.mark.parametrize("cap", ["max_approval_idle", "max_wall_clock"])
async def test_a_time_cap_ends_a_run_parked_for_a_person(time_env, config, cap):
    """The review would wait 24 h for compliance; the cap (2 h) ends the wait, and the run, first."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", {**PEP, "budget": {cap: "PT2H"}})
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        (request,) = (await baton.status(run_id)).open_requests
        assert request.stops_run == cap
        assert request.deadline - request.requested_at <= timedelta(hours=2)
        await time_env.sleep(timedelta(hours=2, minutes=1))
        outcome = await baton.result(run_id)
        status = await baton.status(run_id)
        ledger = await baton.ledger(run_id)
        described = await time_env.client.get_workflow_handle(run_id).describe()

    assert (outcome.state, outcome.cap) == (RunState.BUDGET_EXCEEDED, cap)
    assert outcome.reason.startswith(f"{cap}: ") and "limit 02:00:00" in outcome.reason
    assert "compliance_review" in outcome.reason and "for compliance" in outcome.reason
    assert (ledger[-1].step, ledger[-1].outcome) == ("compliance_review", "timed_out")
    assert status.open_requests == [] and 7000 < status.usage.longest_approval_wait_s <= status.usage.wall_clock_s
    assert described.typed_search_attributes.get(AWAITING_APPROVAL) is False


async def test_the_wall_clock_is_checked_before_a_step_too(time_env, config, systems):
    """A run that spent its wall clock waiting on a (wall-clock-free) extension finds it gone at the next step."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        data = {**example("support-triage/refund.json"), "budget": {"max_steps": 1, "max_wall_clock": "PT1H"}}
        run_id = await baton.start("support-triage", data)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        await time_env.sleep(timedelta(hours=2))
        await baton.approve(run_id, by=SUPPORT_LEADS[0], request_id="budget.max_steps")
        for _ in range(100):  # the same check, one cap later: now the wall clock asks
            requests = (await baton.status(run_id)).open_requests
            if requests and requests[0].id == "budget.max_wall_clock":
                break
            await asyncio.sleep(0.05)
        await baton.reject(run_id, by=SUPPORT_LEADS[0], request_id="budget.max_wall_clock")
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    assert (outcome.state, outcome.cap) == (RunState.BUDGET_EXCEEDED, "max_wall_clock")
    assert outcome.reason.startswith("max_wall_clock: 02:00:0") and "stopped before returns_agent" in outcome.reason
    assert [(e.kind, e.name, e.outcome) for e in ledger[1:]] == [
        (StepKind.BUDGET, "max_steps", "extended"), (StepKind.BUDGET, "max_wall_clock", "rejected"),
    ]
    assert systems.count("refunds") == 0


async def test_an_override_above_the_policy_is_clamped_and_recorded(time_env, config):
    config = config.model_copy(update={"budgets": {
        "default": config.default_budget(),
        "onboarding": config.default_budget().model_copy(
            update={"max_cost_usd": 0.05, "maximum": BudgetOverride(max_cost_usd=0.20)}),
    }})
    outcome, status, ledger = await run_to_end(
        time_env, config, "onboarding", {**CLEAR, "budget": {"max_cost_usd": 0.15, "max_steps": 500}})

    assert outcome.state is RunState.COMPLETED
    assert status.budget.max_cost_usd == 0.15  # above the process's 0.05, within its maximum
    assert status.budget.max_steps == config.default_budget().max_steps
    (clamped,) = [e for e in ledger if e.kind is StepKind.BUDGET]
    assert clamped.outcome == "clamped" and "max_steps: asked 500" in clamped.detail
    assert outcome.steps == sum(e.counts_as_step for e in ledger) == len(ledger) - 1


async def test_usage_adds_up_the_ledger_and_the_agent_child(time_env, config):
    outcome, status, ledger = await run_to_end(time_env, config, "support-triage", example("support-triage/refund.json"))

    (agent,) = [e for e in ledger if e.kind is StepKind.AGENT]
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert agent.decision["llm_calls"] >= 2 and agent.decision["tool_calls"] >= 2
    assert status.usage.llm_calls == model_requests(ledger) + agent.decision["llm_calls"]
    assert status.usage.tool_calls == agent.decision["tool_calls"]
    assert status.usage.cost_usd == outcome.cost_usd
    assert status.usage.steps == outcome.steps


async def extension_run(time_env, config, decide: str) -> tuple:
    """Triage with one step allowed: the agent step breaches max_steps and asks the support lead to extend."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("support-triage", {**example("support-triage/refund.json"), "budget": {"max_steps": 1}})
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        (request,) = (await baton.status(run_id)).open_requests
        await getattr(baton, decide)(run_id, by=SUPPORT_LEADS[0], request_id=request.id, comment="checked the ticket")
        outcome = await baton.result(run_id)
        return request, outcome, await baton.status(run_id), await baton.ledger(run_id)


async def test_a_process_may_ask_a_person_to_extend_a_cap(time_env, config):
    request, outcome, status, ledger = await extension_run(time_env, config, "approve")

    assert request.id == "budget.max_steps" and request.roles == ["support-lead"]
    assert request.context["cap"] == "max_steps" and request.context["extend_to"] == "2"
    assert outcome.state is RunState.COMPLETED, outcome.reason
    (extension,) = [e for e in ledger if e.kind is StepKind.BUDGET]
    assert (extension.outcome, extension.by, extension.comment) == ("extended", "sam-support", "checked the ticket")
    assert status.budget.max_steps == 2 and outcome.steps == 2


async def test_a_refused_extension_ends_the_run_naming_the_cap(time_env, config):
    _, outcome, status, ledger = await extension_run(time_env, config, "reject")

    assert (outcome.state, outcome.cap) == (RunState.BUDGET_EXCEEDED, "max_steps")
    assert [e.kind for e in ledger] == [StepKind.LLM, StepKind.BUDGET]
    assert ledger[-1].outcome == "rejected" and status.budget.max_steps == 1


def test_a_run_recorded_before_the_newer_caps_has_none_of_them():
    legacy = Budget.model_validate({"max_cost_usd": 0.05, "max_steps": 10})  # as old histories hold it
    assert (legacy.max_llm_calls, legacy.max_tool_calls, legacy.max_wall_clock, legacy.max_approval_idle) == (None,) * 4


class CrmAlwaysDown(ToolActivities):
    """The CRM answers every attempt with a retryable error (a 503, say)."""

    @activity.defn(name="run_tool")
    def run_tool(self, call: ToolCall) -> ToolResult:
        if call.tool == "create_crm_record":
            raise ApplicationError("CRM unavailable", type="Unavailable")
        return super().run_tool(call)


async def test_the_wall_clock_bounds_a_step_still_retrying(time_env, config, systems):
    """Retries would take 15 s; with 10 s of wall clock, Temporal gives up on the step when its next
    attempt could not start in time, and the run names the cap, not the CRM."""
    async with running_worker(time_env.client, config, tools_class=CrmAlwaysDown) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", {**CLEAR, "budget": {"max_wall_clock": "PT10S"}})
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    assert (outcome.state, outcome.cap) == (RunState.BUDGET_EXCEEDED, "max_wall_clock"), outcome.reason
    assert outcome.reason.endswith("limit 00:00:10; create_crm_record could not finish in the time left")
    assert (ledger[-1].step, ledger[-1].outcome) == ("create_crm_record", "over_budget")
    assert "CRM unavailable" not in outcome.reason and systems.count("outbox") == 0


async def test_a_pause_past_the_wall_clock_ends_the_run_on_any_clock_a_task_read(time_env, config):
    """The pause outlasts the hour the run was given: the check before the next step ends it. Replayed as
    recorded, and with the task after the pause reading the clock of the task before it (as a first execution
    may have, tests/test_replay.py `with_stale_clock`): the same commands, so the cap is decided by no clock."""
    async with running_worker(time_env.client, config, extra_workflows=(PauseBetweenSteps,)) as w:
        handle = await time_env.client.start_workflow(
            PauseBetweenSteps.run, Pause(pause=timedelta(hours=2), budget=BudgetOverride(max_wall_clock=timedelta(hours=1))),
            id=f"pause-{uuid.uuid4().hex[:8]}", task_queue=w.task_queue, search_attributes=at_start("test-pause"),
        )
        await time_env.sleep(timedelta(hours=2, minutes=1))  # a handle fetched by id skips no time waiting
        outcome = await Baton(time_env.client).result(handle.id)
        ledger = await Baton(time_env.client).ledger(handle.id)
    history = await handle.fetch_history()

    assert (outcome.state, outcome.cap) == (RunState.BUDGET_EXCEEDED, "max_wall_clock"), outcome.reason
    assert "stopped before after" in outcome.reason and [e.step for e in ledger] == ["before"]
    pause_ended = [e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED][-1]
    stale, moved = with_stale_clock(history, pause_ended)
    assert moved >= timedelta(hours=1), moved  # the stale task reads a time inside the cap
    replay = replayer(config.payloads, extra_workflows=(PauseBetweenSteps,))
    for clock, seen in (("as recorded", history), ("on a stale clock", stale)):
        result = await replay.replay_workflow(seen, raise_on_replay_failure=False)
        assert result.replay_failure is None, (clock, result.replay_failure)


async def test_an_extended_wall_clock_runs_out_again_on_a_timer_of_its_own(time_env, config):
    """Out after an hour (paused 90 min), extended to two: the 'after' step runs, and a new timer keeps the
    extended cap, which replay finds whichever clock the task after the extension read."""
    async with running_worker(time_env.client, config, extra_workflows=(PauseThenExtend,)) as w:
        baton = Baton(time_env.client, w.task_queue)
        handle = await time_env.client.start_workflow(
            PauseThenExtend.run, Pause(pause=timedelta(minutes=90), budget=BudgetOverride(max_wall_clock=timedelta(hours=1))),
            id=f"pause-{uuid.uuid4().hex[:8]}", task_queue=w.task_queue, search_attributes=at_start("test-pause-extend"),
        )
        await time_env.sleep(timedelta(minutes=91))
        await wait_for_state(baton, handle.id, RunState.AWAITING_APPROVAL)
        await baton.approve(handle.id, by=REVIEWERS[0], request_id="budget.max_wall_clock")
        outcome = await baton.result(handle.id)
        status, ledger = await baton.status(handle.id), await baton.ledger(handle.id)
    history = await handle.fetch_history()

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert [(e.step, e.outcome) for e in ledger] == [("before", "ok"), ("budget.max_wall_clock", "extended"), ("after", "ok")]
    assert status.budget.max_wall_clock == timedelta(hours=2)
    timers = [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() for e in history.events
              if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert timedelta(minutes=28) < timers[-1] <= timedelta(minutes=30), timers  # what the extension left: 2 h - 91 min
    extended = [e.event_id for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")
                or e.HasField("workflow_execution_signaled_event_attributes")][-1]
    stale, _ = with_stale_clock(history, extended)
    replay = replayer(config.payloads, extra_workflows=(PauseThenExtend,))
    for clock, seen in (("as recorded", history), ("on a stale clock", stale)):
        result = await replay.replay_workflow(seen, raise_on_replay_failure=False)
        assert result.replay_failure is None, (clock, result.replay_failure)


@pytest.mark.parametrize(("cap", "limit", "ends"), [
    ("max_approval_idle", timedelta(hours=1), None),
    ("max_wall_clock", timedelta(hours=2, minutes=30), [("compliance", "escalated"), ("compliance-lead", "timed_out")]),
])
async def test_a_time_cap_ends_an_escalated_approval_on_any_clock_a_task_read(time_env, config, cap, limit, ends):
    """Compliance has an hour, then its lead two. max_approval_idle (1 h) runs out as compliance's hour does
    (whether the escalation is recorded first depends on whether the server delivers the two timers in one task
    or two); max_wall_clock (2 h 30) ends the lead's stage half-way. Replayed as
    recorded, and with the task after the first stage's timer reading the clock of the task that asked
    (tests/test_replay.py `with_stale_clock`): on that clock the idle cap has an hour left, so a cap decided by
    comparing clocks would start a timer where the recorded run ended."""
    async with running_worker(time_env.client, config, extra_workflows=(EscalatingApproval,)) as w:
        handle = await time_env.client.start_workflow(
            EscalatingApproval.run, Escalation(budget=BudgetOverride(**{cap: limit})),
            id=f"escalate-{uuid.uuid4().hex[:8]}", task_queue=w.task_queue, search_attributes=at_start("test-escalate"),
        )
        await time_env.sleep(timedelta(hours=3, minutes=1))  # a handle fetched by id skips no time waiting
        outcome = await Baton(time_env.client).result(handle.id)
        status = await Baton(time_env.client).status(handle.id)
        ledger = await Baton(time_env.client).ledger(handle.id)
    history = await handle.fetch_history()

    assert (outcome.state, outcome.cap) == (RunState.BUDGET_EXCEEDED, cap), outcome.reason
    assert f"limit {span(limit)}" in outcome.reason and status.open_requests == []
    assert ledger[-1].outcome == "timed_out" and ledger[-1].detail.startswith(f"{cap} ran out after "), ledger[-1]
    if ends is not None:  # not on the idle cap's tie with the first deadline (see above)
        assert [(e.name, e.outcome) for e in ledger] == ends
    first_stage_over = [e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED][0]
    stale, moved = with_stale_clock(history, first_stage_over)
    assert moved >= timedelta(hours=1), moved  # the stale task reads the time the request was asked
    replay = replayer(config.payloads, extra_workflows=(EscalatingApproval,))
    for clock, seen in (("as recorded", history), ("on a stale clock", stale)):
        result = await replay.replay_workflow(seen, raise_on_replay_failure=False)
        assert result.replay_failure is None, (clock, result.replay_failure)


async def test_a_decision_wins_and_closes_its_idle_timer(time_env, config):
    """The lead approves in the second stage, within the idle cap: the run goes on. The cap had one timer, for
    all of it, from the ask (no duration read off a clock), cancelled with the request (none left to fire)."""
    budget = BudgetOverride(max_approval_idle=timedelta(hours=2))
    async with running_worker(time_env.client, config, extra_workflows=(EscalatingApproval,)) as w:
        baton = Baton(time_env.client, w.task_queue)
        handle = await time_env.client.start_workflow(
            EscalatingApproval.run, Escalation(budget=budget), id=f"escalate-{uuid.uuid4().hex[:8]}",
            task_queue=w.task_queue, search_attributes=at_start("test-escalate"),
        )
        await time_env.sleep(timedelta(hours=1, minutes=30))
        (request,) = (await baton.status(handle.id)).open_requests
        await baton.approve(handle.id, by=LEADS[0], request_id="sign_off")
        outcome = await baton.result(handle.id)
    history = await handle.fetch_history()

    assert (request.roles, request.stops_run) == (["compliance-lead"], "max_approval_idle")
    assert outcome.state is RunState.COMPLETED, outcome.reason
    idle = [(e.event_id, e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()) for e in history.events
            if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED and b"max_approval_idle" in e.user_metadata.summary.data]
    canceled = [e.timer_canceled_event_attributes.started_event_id for e in history.events
                if e.event_type == EventType.EVENT_TYPE_TIMER_CANCELED]
    assert [d for _, d in idle] == [timedelta(hours=2)] and idle[0][0] in canceled, (idle, canceled)
