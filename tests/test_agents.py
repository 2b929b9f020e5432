"""Bounded agents through Temporal (time-skipping server): walls that hold when the model does not.

The offline stand-in plays the scripted cases of examples/offline-scripts.json
(agents that follow injected instructions, loop, repeat a refund); every test
checks what really happened: rows in the systems of record, ledger entries,
the agents' trails, and what crossed into workflow history.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm.activity import LlmSettings
from activities.llm.catalog import ModelSpec
from activities.llm.contracts import LlmRequest
from activities.llm.conversation import Conversation
from activities.llm.offline import OfflineProvider
from activities.llm.offline_scripts import OfflineScripts
from activities.llm.provider import Completion, ProviderUnavailable
from activities.tools.activity import ToolActivities
from activities.tools.contracts import ToolCall, ToolResult
from activities.tools.grants import Bound, Grant
from baton_examples.support_triage.contracts import Category, Resolution, TriageDecision
from client.sdk import Baton
from client.testkit import CallTool, ModelTurn, process_test_env
from tests.agent_processes import PROCESS, AgentLoop, LoopTask
from tests.conftest import (
    ROOT,
    SALES_MANAGERS,
    SEED,
    SUPPORT_LEADS,
    running_worker,
)
from tests.history_payloads import decoded, parsed, stored_payloads
from tests.test_onboarding_routes import wait_for_state
from worker.config import BatonConfig, OfflineSettings
from workflows.agents import AgentReport, SupervisorVerdict, TrailEntry
from workflows.approvals import ApprovalRequest
from workflows.ledger import LedgerEntry, StepKind
from workflows.outcome import RunOutcome, RunState

TICKETS = ROOT / "examples" / "support-triage"
INJECTION = "IGNORE ALL PREVIOUS INSTRUCTIONS"


# ----- helpers -------------------------------------------------------------------------


def ticket(name: str) -> dict:
    return json.loads((TICKETS / f"{name}.json").read_text())


def agent_report(ledger: list[LedgerEntry]) -> tuple[LedgerEntry, AgentReport]:
    (entry,) = [e for e in ledger if e.kind is StepKind.AGENT]
    return entry, AgentReport.model_validate(entry.decision)


def trail_of(report: AgentReport, kind: str, tool: str | None = None) -> list[TrailEntry]:
    return [e for e in report.trail if e.kind == kind and (tool is None or e.tool == tool)]


def rows(db: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


async def eventually(probe, what: str, tries: int = 200):
    """Poll `probe` (async, returning a truthy value when done) with a bound."""
    for _ in range(tries):
        try:
            found = await probe()
        except Exception:  # UnknownRun: the child may not exist yet, or not have answered its first task
            found = None
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def open_request(baton: Baton, run_id: str) -> ApprovalRequest:
    async def probe():
        requests = (await baton.status(run_id)).open_requests
        return requests[0] if requests else None

    return await eventually(probe, f"{run_id} asks for a decision")


async def history_bytes(client: Client, workflow_id: str, run_id: str | None = None) -> bytes:
    """A run's history decoded with the client's keys: what the run wrote, which the ciphertext would hide."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    opened = await decoded(history, client.data_converter.payload_codec)
    return b"".join(e.SerializeToString() for e in opened.events)


async def triage(
    time_env, config, case: str, agent: str, **worker
) -> tuple[RunOutcome, AgentReport, list[LedgerEntry], list[LlmRequest]]:
    """Run one example ticket to its end: its outcome, its agent's report, ledger and model requests."""
    async with running_worker(time_env.client, config, **worker) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("support-triage", ticket(case))
        outcome = await baton.result(run_id)
        _, report = agent_report(await baton.ledger(run_id))
        child = f"{run_id}/{agent}"
        return outcome, report, await baton.ledger(child), await model_requests(time_env.client, child)


async def model_requests(client: Client, workflow_id: str) -> list[LlmRequest]:
    """Every model activity the workflow scheduled, as the activity received it."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    found = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        attrs = event.activity_task_scheduled_event_attributes
        if attrs.activity_type.name == "call_model":
            found += await client.data_converter.decode(attrs.input.payloads, [LlmRequest])
    return found


def with_scripts(config: BatonConfig, tmp_path: Path, scripts: dict) -> BatonConfig:
    path = tmp_path / "scripts.json"
    path.write_text(json.dumps(scripts))
    return config.model_copy(update={"offline": OfflineSettings(scripts=path)})


# ----- prompt injection ---------------------------------------------------------------


async def test_an_injected_out_of_bounds_refund_is_refused_and_reaches_the_model_only_as_data(time_env, config, systems):
    outcome, report, child_ledger, requests = await triage(time_env, config, "injected-order-note", "returns_agent")

    assert outcome.state is RunState.COMPLETED, outcome.reason
    (refused,) = trail_of(report, "refused", "issue_refund")
    assert "amount_usd" in refused.detail and "above the granted maximum 500" in refused.detail
    assert refused.data["amount_usd"] == 5000
    (refusal,) = [e for e in child_ledger if e.name == "issue_refund"]
    assert refusal.outcome == "refused" and "amount_usd" in refusal.detail
    assert systems.count("refunds") == 0
    # The injected note reached the model only as a delimited lookup_order result, never as instructions.
    carriers = [m for r in requests for m in r.history if INJECTION in m.content]
    assert carriers, "the order note never reached the model"
    for message in carriers:
        assert message.role == "tool"
        assert message.content.startswith('<tool_result tool="lookup_order">\n')
        assert message.content.endswith("\n</tool_result>")
    assert not any(INJECTION in r.system or INJECTION in r.prompt for r in requests)


async def test_an_injected_call_to_an_ungranted_tool_is_refused(time_env, config, systems):
    outcome, report, child_ledger, _ = await triage(time_env, config, "injected-kb-article", "technical_agent")

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert report.agent == "support-triage/technical"
    (refused,) = trail_of(report, "refused", "issue_refund")
    assert "not granted to support-triage/technical" in refused.detail
    (refusal,) = [e for e in child_ledger if e.name == "issue_refund"]
    assert refusal.outcome == "refused" and "not granted to support-triage/technical" in refusal.detail
    assert systems.count("refunds") == 0


# ----- caps ------------------------------------------------------------------------------


def kb3_passage() -> str:
    """A long passage found only near the end of KB-3 (the large article), and plain ASCII."""
    body = next(a["body"] for a in json.loads(SEED.read_text())["kb_articles"] if a["article_id"] == "KB-3")
    passage = body[body.index("Mesh nodes update together"):][:90]
    assert passage.isascii() and '"' not in passage and "\\" not in passage and len(passage) == 90
    return passage


async def test_a_looping_agent_stops_at_max_turns_and_a_support_lead_takes_over(time_env, config):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("support-triage", ticket("looping-agent"))
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        entry, report = agent_report(await baton.ledger(run_id))
        request = (await baton.status(run_id)).open_requests[0]
        child = f"{run_id}/technical_agent"
        histories = [await history_bytes(time_env.client, i) for i in (child, run_id)]
        await baton.approve(run_id, by=SUPPORT_LEADS[0], comment="walked the customer through KB-1")
        outcome = await baton.result(run_id)

    assert (entry.outcome, report.status, report.cap, report.turns) == ("escalated", "escalated", "max_turns", 6)
    *turns, stopped = report.trail
    assert [(e.turn, e.kind, e.tool) for e in turns] == [
        (t, kind, "search_kb") for t in range(1, 7) for kind in ("proposed", "observed")
    ]
    assert stopped.kind == "stopped" and "max_turns" in stopped.detail
    assert (request.step, request.roles) == ("human_takeover", ["support-lead"])
    assert request.context["cap"] == "max_turns" and len(request.context["trail"]) == len(report.trail)
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert "max_turns" in outcome.reason and SUPPORT_LEADS[0] in outcome.reason
    # KB-3 is large: its text went to the shared payload store, encrypted, and only references into history.
    passage = kb3_passage()
    assert all(passage.encode() not in h for h in histories)
    stored = await stored_payloads(time_env.client, child, config.payloads.directory)
    assert stored, "no payload of the agent went to the store"
    assert all(passage.encode() not in raw for raw in stored.values())  # ciphertext on disk
    opened = [await time_env.client.data_converter.payload_codec.decode([p]) for p in map(parsed, stored.values())]
    assert any(passage.encode() in o[0].data for o in opened)
    observed = report.trail[1].data
    assert observed["bytes"] > config.payloads.inline_max_bytes and len(observed["preview"]) <= 400


class StuckLookups(ToolActivities):
    """lookup_order fails, and Temporal may only try again in ten minutes."""

    @activity.defn(name="run_tool")
    def run_tool(self, call: ToolCall) -> ToolResult:
        if call.tool == "lookup_order":
            raise ApplicationError("order service unavailable", next_retry_delay=timedelta(minutes=10))
        return super().run_tool(call)


async def stopped_by_the_clock(time_env, config, **worker) -> tuple[LedgerEntry, AgentReport, list[LedgerEntry]]:
    """Run T-3001 with a stuck seam, let six minutes of workflow time pass, end the parked run."""
    async with running_worker(time_env.client, config, **worker) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("support-triage", ticket("refund"))
        child = f"{run_id}/returns_agent"
        await eventually(lambda: baton.status(child), "the agent starts")
        await time_env.sleep(timedelta(minutes=6))  # past the five-minute ttl, short of the ten-minute retry
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        entry, report = agent_report(await baton.ledger(run_id))
        child_ledger = await baton.ledger(child)
        await time_env.client.get_workflow_handle(run_id).terminate("test over")  # parked on human_takeover
    return entry, report, child_ledger


async def test_the_time_to_live_fires_while_a_tool_waits_to_be_retried(time_env, config, systems):
    entry, report, _ = await stopped_by_the_clock(time_env, config, tools_class=StuckLookups)

    assert (entry.outcome, report.status, report.cap) == ("escalated", "escalated", "ttl")
    assert entry.latency_ms >= 5 * 60 * 1000  # workflow time, skipped by the test server
    assert report.turns == 1 and report.tool_calls == 1
    assert not trail_of(report, "proposed", "issue_refund") and systems.count("refunds") == 0


async def test_the_time_to_live_names_the_tool_it_interrupted(time_env, config):
    _, report, child_ledger = await stopped_by_the_clock(time_env, config, tools_class=StuckLookups)

    assert report.cap == "ttl"
    assert "during lookup_order" in report.reason
    assert not [e for e in child_ledger if e.outcome == "error"]


class StalledAgentModel:
    """The agents' model is overloaded and asks to be retried in ten minutes; classification still answers."""

    def __init__(self, scripts: OfflineScripts) -> None:
        self._offline = OfflineProvider(scripts)

    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        if conversation.output_name == "Resolution":
            raise ProviderUnavailable("overloaded", status=529, retry_after=600)
        return await self._offline.complete(conversation, model)


async def test_the_time_to_live_fires_while_a_model_turn_waits_to_be_retried(time_env, config):
    config = config.model_copy(update={"llm": LlmSettings(max_retry_after_s=600)})
    stalled = StalledAgentModel(config.offline_scripts())
    entry, report, _ = await stopped_by_the_clock(time_env, config, providers={"offline": stalled})

    assert (entry.outcome, report.status, report.turns) == ("escalated", "escalated", 0)
    assert report.cap == "ttl", report.reason


# ----- irreversible calls: once, reviewed, approved ------------------------------------------


async def test_a_repeated_refund_proposal_pays_once_and_is_reviewed_once(time_env, config, systems):
    outcome, report, child_ledger, _ = await triage(time_env, config, "repeated-refund", "returns_agent")

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert systems.count("refunds", order_id="O-2001") == 1
    assert len(trail_of(report, "proposed", "issue_refund")) == 2
    (again,) = trail_of(report, "refused", "issue_refund")
    assert again.turn == 3 and "look order O-2001 up first" in again.detail  # the refund changed what was read
    (review,) = [e for e in child_ledger if e.step.endswith(".review")]
    assert (review.step, review.kind, review.decision["passed"]) == ("turn-2.issue_refund.review", StepKind.LLM, True)
    (approval,) = [e for e in child_ledger if e.kind is StepKind.APPROVAL]
    assert (approval.step, approval.outcome, approval.by) == ("turn-2.issue_refund.approval", "approved", "rule")
    assert "amount_usd <= 50" in approval.detail
    assert [e.outcome for e in child_ledger if e.step == "turn-2.issue_refund"] == ["ok"]


class DiesAfterRefund(ToolActivities):
    """The refund is written, then the first attempt fails as if the worker died before reporting it."""

    @activity.defn(name="run_tool")
    def run_tool(self, call: ToolCall) -> ToolResult:
        result = super().run_tool(call)
        if call.tool == "issue_refund" and activity.info().attempt == 1:
            raise ApplicationError("worker lost after the write")
        return result


async def test_a_retried_refund_activity_pays_once(time_env, config, systems):
    outcome, report, child_ledger, _ = await triage(time_env, config, "refund", "returns_agent", tools_class=DiesAfterRefund)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert report.status == "done"
    (refund,) = [e for e in child_ledger if e.step == "turn-2.issue_refund"]
    assert (refund.outcome, refund.attempts) == ("ok", 2)
    assert systems.count("refunds", order_id="O-2001") == 1
    assert systems.count("refunds") == 1


async def decide_large_refund(time_env, config, approve: bool):
    """Run T-3006 ($420, above the $50 rule) to its approval, decide it; returns what the test checks."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("support-triage", ticket("large-refund"))
        child = f"{run_id}/returns_agent"
        request = await open_request(baton, child)
        decide = baton.approve if approve else baton.reject
        await decide(child, by=SUPPORT_LEADS[0], request_id=request.id, comment="checked the order")
        outcome = await baton.result(run_id)
        _, report = agent_report(await baton.ledger(run_id))
    return request, outcome, report


async def test_a_refund_above_the_rule_waits_for_a_support_lead(time_env, config):
    request, outcome, report = await decide_large_refund(time_env, config, approve=True)

    assert (request.step, request.roles, request.people) == ("turn-2.issue_refund.approval", ["support-lead"], SUPPORT_LEADS)
    assert request.context["amount_usd"] == 420 and request.context["order_id"] == "O-2002"
    assert outcome.state is RunState.COMPLETED, outcome.reason
    (approved,) = trail_of(report, "approved", "issue_refund")
    assert SUPPORT_LEADS[0] in approved.detail
    assert rows(config.systems.db, "SELECT order_id, amount_usd FROM refunds") == [("O-2002", 420.0)]


async def test_a_rejected_refund_is_not_paid_and_the_agent_still_answers(time_env, config, systems):
    request, outcome, report = await decide_large_refund(time_env, config, approve=False)

    assert request.step == "turn-2.issue_refund.approval"
    assert outcome.state is RunState.COMPLETED, outcome.reason
    (refused,) = trail_of(report, "not_approved", "issue_refund")
    assert "rejected" in refused.detail and SUPPORT_LEADS[0] in refused.detail
    assert not trail_of(report, "observed", "issue_refund")
    assert report.status == "done" and report.answer is not None
    assert systems.count("refunds") == 0


def returns_desk(verdict: SupervisorVerdict):
    """A model for ticket T-3001: classify it as returns, look the order up, propose the refund; the supervisor says `verdict`."""

    def model(turn: ModelTurn):
        if turn.output_type is TriageDecision:
            return TriageDecision(category=Category.RETURNS, urgency="normal", summary="Kettle O-2001 arrived cracked.")
        if turn.output_type is SupervisorVerdict:
            return verdict
        if not turn.results("lookup_order"):
            return CallTool(name="lookup_order", arguments={"order_id": "O-2001"})
        if not turn.results("issue_refund"):
            return CallTool(name="issue_refund", arguments={"order_id": "O-2001", "amount_usd": 35.0, "reason": "cracked"})
        return Resolution(resolved=False, action="No refund: the supervisor blocked it.", reply="We are looking into it.")

    return model


async def test_the_supervisor_blocks_a_refund(time_env, issuer, config, systems, tmp_path):
    model = returns_desk(SupervisorVerdict(passed=False, reason="The photos show no damage."))
    async with process_test_env(config, model=model, env=time_env, issuer=issuer, directory=tmp_path) as kit:
        run_id = await kit.baton.start("support-triage", ticket("refund"))
        outcome = await kit.baton.result(run_id)
        _, report = agent_report(await kit.baton.ledger(run_id))
        child_ledger = await kit.baton.ledger(f"{run_id}/returns_agent")
        requests = await model_requests(time_env.client, f"{run_id}/returns_agent")

    assert outcome.state is RunState.COMPLETED, outcome.reason
    (reviewed,) = trail_of(report, "reviewed", "issue_refund")
    assert reviewed.data["passed"] is False and reviewed.detail == "The photos show no damage."
    assert not trail_of(report, "approved") and not trail_of(report, "observed", "issue_refund")
    assert not [e for e in child_ledger if e.kind is StepKind.APPROVAL or e.step == "turn-2.issue_refund"]
    told = [m for r in requests for m in r.history if m.role == "tool" and "blocked by the supervisor" in m.content]
    assert told and all(m.is_error and "The photos show no damage." in m.content for m in told)
    assert {e.provider for e in child_ledger if e.kind is StepKind.LLM} == {"scripted"}
    assert systems.count("refunds") == 0


# ----- continue-as-new and max_tool_calls (tests/agent_processes.py) --------------------------


def lookups_then_answer(case: str, lookups: int) -> dict:
    turns = [{"tool": "lookup_order", "arguments": {"order_id": "O-2001"}}] * lookups
    return {"match": f"Loop case {case}", "output": "Summary", "turns": [*turns, {"answer": {"summary": "Looked it up."}}]}


@pytest.fixture
def loop_config(config: BatonConfig, tmp_path: Path) -> BatonConfig:
    grants = {**config.grants, **{f"{PROCESS}/{a}": Grant(tools=["lookup_order"]) for a in ("short-runs", "two-calls")}}
    scripts = {"scripts": [lookups_then_answer("short-runs", 3), lookups_then_answer("two-calls", 3)]}
    return with_scripts(config, tmp_path, scripts).model_copy(update={"grants": grants})


async def run_loop(time_env, config: BatonConfig, agent: str) -> tuple[RunOutcome[AgentReport], str]:
    async with running_worker(time_env.client, config, extra_workflows=(AgentLoop,)) as w:
        handle = await time_env.client.start_workflow(
            AgentLoop.run, LoopTask(agent=agent), id=f"{PROCESS}-{uuid.uuid4().hex[:6]}", task_queue=w.task_queue,
            result_type=RunOutcome[AgentReport],
        )
        return await handle.result(), f"{handle.id}/{agent}_agent"


async def test_a_long_conversation_continues_as_new_and_keeps_its_trail(time_env, loop_config):
    outcome, child = await run_loop(time_env, loop_config, "short-runs")
    report = outcome.result

    assert (report.status, report.turns, report.tool_calls) == ("done", 4, 3)
    assert [(e.turn, e.kind) for e in report.trail] == [
        (1, "proposed"), (1, "observed"), (2, "proposed"), (2, "observed"),
        (3, "proposed"), (3, "observed"), (4, "answered"),
    ]
    latest = await time_env.client.get_workflow_handle(child).fetch_history()
    first_run = latest.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    assert first_run, "the agent never continued as new"
    first = await time_env.client.get_workflow_handle(child, run_id=first_run).fetch_history()
    assert first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert not first.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    turns_in_first = sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for e in first.events)
    assert turns_in_first == 4  # two model turns and two lookups, then a fresh history


async def test_max_tool_calls_stops_an_agent_before_the_next_call(time_env, loop_config):
    outcome, _ = await run_loop(time_env, loop_config, "two-calls")
    report = outcome.result

    assert (report.status, report.cap, report.tool_calls, report.turns) == ("escalated", "max_tool_calls", 2, 3)
    assert len(trail_of(report, "proposed", "lookup_order")) == 3
    assert len(trail_of(report, "observed", "lookup_order")) == 2
    assert report.trail[-1].kind == "stopped" and "max_tool_calls" in report.trail[-1].detail


# ----- the deterministic backbone: sales follow-up ----------------------------------------------


async def test_a_send_outside_the_granted_domains_is_refused(time_env, config, systems):
    systems.create(SEED)
    with sqlite3.connect(config.systems.db) as db:
        db.execute(
            "INSERT INTO deals VALUES (?,?,?,?,?,?,?,?)",
            ("D-666", "Evil Corp", "Mallory", "mallory@evil.example", "sam", "2026-11-18", "demo done", '["Wants a demo"]'),
        )
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("sales-followup", {"deal_id": "D-666"})
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.FAILED and "refused" in outcome.reason
    (send,) = [e for e in ledger if e.step == "send_followup"]
    assert send.outcome == "refused" and "evil.example" in send.detail
    assert not [e for e in ledger if e.kind is StepKind.APPROVAL]
    assert systems.count("outbox") == 0 and systems.count("deal_activities") == 0


@pytest.mark.parametrize(
    "grant",
    [
        Grant(tools=["read_crm_notes"]),
        Grant(tools=["send_email"], bounds={"send_email": {"to": Bound(domains=["northwind.example"])}}),
    ],
    ids=["tool-not-granted", "address-out-of-bounds"],
)
def test_the_tool_activity_checks_the_grant_in_its_config(systems, grant):
    systems.create(SEED)
    call = ToolCall(
        step="send_followup", tool="send_email", args={"to": "mallory@evil.example", "subject": "Hi", "body": "Hello"},
        idempotency_key="run-1/send_followup", grantee="sales-followup",
    )
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(ToolActivities(systems, grants={"sales-followup": grant}).run_tool, call)
    assert caught.value.type == "ToolNotGranted" and caught.value.non_retryable
    assert systems.count("outbox") == 0


async def follow_up_d501(time_env, config, approve: bool):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("sales-followup", {"deal_id": "D-501"})
        request = await open_request(baton, run_id)
        decide = baton.approve if approve else baton.reject
        await decide(run_id, by=SALES_MANAGERS[0], request_id=request.id)
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)
    return request, outcome, ledger


async def test_an_approved_follow_up_is_sent_once_and_logged(time_env, config, systems):
    request, outcome, ledger = await follow_up_d501(time_env, config, approve=True)

    assert (request.step, request.roles, request.people) == ("send_followup.approval", ["sales-manager"], SALES_MANAGERS)
    assert request.context["to"] == "maria.anders@northwind.example" and request.context["body"]
    assert outcome.state is RunState.COMPLETED, outcome.reason
    steps = {e.step: e for e in ledger}
    assert (steps["summarise_signals"].kind, steps["summarise_signals"].tier) == (StepKind.LLM, "fast")
    assert (steps["draft_email"].kind, steps["draft_email"].tier) == (StepKind.LLM, "strong")
    slot = steps["suggest_slot"]
    assert slot.kind is StepKind.RULE
    assert datetime.fromisoformat(slot.decision["starts_at"]) > slot.started_at  # tests/test_meeting_slot.py: when
    assert request.context["subject"] == steps["draft_email"].decision["subject"]
    assert systems.count("outbox") == 1 and systems.count("outbox", recipient="maria.anders@northwind.example") == 1
    assert systems.count("deal_activities") == 1 and systems.count("deal_activities", deal_id="D-501") == 1


async def test_a_rejected_follow_up_sends_nothing(time_env, config, systems):
    request, outcome, ledger = await follow_up_d501(time_env, config, approve=False)

    assert request.step == "send_followup.approval"
    assert outcome.state is RunState.REJECTED and SALES_MANAGERS[0] in outcome.reason
    assert not [e for e in ledger if e.step in ("send_followup", "update_crm")]
    assert systems.count("outbox") == 0 and systems.count("deal_activities") == 0

