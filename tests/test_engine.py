"""Engine guarantees, driven through Temporal: budgets stop runs typed, writes happen once."""

from __future__ import annotations

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm.catalog import ModelSpec
from activities.llm.conversation import Conversation, Message
from activities.llm.offline import OfflineProvider
from activities.llm.provider import Completion, Usage
from activities.tools.activity import ToolActivities
from activities.tools.contracts import ToolCall, ToolResult
from client.sdk import Baton
from tests.conftest import running_worker
from tests.test_onboarding_routes import CLEAR
from workflows.outcome import RunState


async def test_step_budget_stops_the_run_before_the_next_step(time_env, config, systems):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", {**CLEAR, "budget": {"max_steps": 2}})
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.BUDGET_EXCEEDED
    assert outcome.reason.startswith("max_steps") and "match_kyc" in outcome.reason
    assert [e.step for e in ledger] == ["validate_identity", "pull_credit"]
    assert systems.count("crm_records") == 0


class CountingOffline(OfflineProvider):
    """The offline provider, counting the requests that actually reach it."""

    def __init__(self) -> None:
        self.sent = 0

    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        self.sent += 1
        return await super().complete(conversation, model)


async def test_a_call_the_budget_cannot_cover_is_never_sent(time_env, config, systems):
    provider = CountingOffline()
    async with running_worker(time_env.client, config, providers={"offline": provider}) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", {**CLEAR, "budget": {"max_cost_usd": 1e-5}})
        outcome = await baton.result(run_id)
        status = await baton.status(run_id)
        ledger = await baton.ledger(run_id)

    assert provider.sent == 0
    assert outcome.state is RunState.BUDGET_EXCEEDED
    assert outcome.reason.startswith("max_cost_usd") and "welcome_email" in outcome.reason
    assert "not sent" in outcome.reason
    assert outcome.cost_usd == 0
    assert status.state is RunState.BUDGET_EXCEEDED
    assert (ledger[-1].step, ledger[-1].outcome, ledger[-1].calls[0].outcome) == (
        "welcome_email", "over_budget", "over_budget",
    )
    assert systems.count("crm_records") == 0 and systems.count("outbox") == 0


async def test_budget_override_can_only_tighten(time_env, config):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", {**CLEAR, "budget": {"max_steps": 1000, "max_cost_usd": 99}})
        await baton.result(run_id)
        status = await baton.status(run_id)

    assert status.budget == config.default_budget()


class LosesReplyAfterCrmWrite(ToolActivities):
    """The CRM write commits, then the worker loses the reply: Temporal retries the call."""

    @activity.defn(name="run_tool")
    def run_tool(self, call: ToolCall) -> ToolResult:
        result = super().run_tool(call)
        if call.tool == "create_crm_record" and activity.info().attempt == 1:
            raise ConnectionResetError("reply lost after the write committed")
        return result


async def test_write_retried_after_it_succeeded_exists_once(time_env, config, systems):
    async with running_worker(time_env.client, config, tools_class=LosesReplyAfterCrmWrite) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    crm = next(e for e in ledger if e.step == "create_crm_record")
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert crm.attempts == 2
    assert crm.decision["created"] is False  # the retry found the first attempt's record
    assert crm.idempotency_key == f"{run_id}/create_crm_record"
    assert systems.count("crm_records", applicant_id="A-1001") == 1
    assert outcome.result["customer_id"] == crm.decision["customer_id"]


class OutboxRejects(ToolActivities):
    """The outbox refuses the message for good (a 4xx from a mail API, say)."""

    @activity.defn(name="run_tool")
    def run_tool(self, call: ToolCall) -> ToolResult:
        if call.tool == "send_email":
            raise ApplicationError("mailbox does not exist", type="Bounce", non_retryable=True)
        return super().run_tool(call)


async def test_failing_step_ends_the_run_typed(time_env, config, systems):
    async with running_worker(time_env.client, config, tools_class=OutboxRejects) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.FAILED
    assert "send_confirmation" in outcome.reason and "mailbox does not exist" in outcome.reason
    assert (ledger[-1].step, ledger[-1].outcome) == ("send_confirmation", "error")
    assert systems.count("outbox") == 0


class AnswersOffSchema:
    """A provider whose answer parses but breaks the step's schema (a model ignoring it)."""

    def __init__(self) -> None:
        self.sent = 0

    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        self.sent += 1
        answer = {"subject": ""}
        return Completion(
            message=Message(role="assistant", content=str(answer)), output=answer, usage=Usage(input=10, output=3)
        )


async def test_model_output_that_fails_the_schema_ends_the_run_typed(time_env, config, systems):
    provider = AnswersOffSchema()
    async with running_worker(time_env.client, config, providers={"offline": provider}) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    turns = config.llm.repair_turns + 1
    assert provider.sent == turns  # the first ask and every repair turn, then no more
    assert outcome.state is RunState.FAILED
    assert "welcome_email" in outcome.reason and "body" in outcome.reason
    email = ledger[-1]
    assert (email.step, email.outcome, email.tokens_in) == ("welcome_email", "invalid", 10 * turns)
    assert [c.turn for c in email.calls] == list(range(turns))
    assert {c.outcome for c in email.calls} == {"invalid"}
    # every unusable answer was still paid for
    assert email.cost_usd == pytest.approx(turns * (10 * 0.15 + 3 * 0.60) / 1e6)
    assert outcome.cost_usd == round(email.cost_usd, 6)
    assert systems.count("crm_records") == 0


async def test_every_step_keeps_its_input_and_output_for_the_audit_to_digest(time_env, config):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    # No unkeyed digest (a dictionary reverses them): `baton audit` keys them at export (tests/test_audit.py).
    assert all(e.input_digest is None and e.output_digest is None for e in ledger)
    assert all(e.input is not None and e.decision is not None for e in ledger)
    kyc = next(e for e in ledger if e.step == "match_kyc")
    crm = next(e for e in ledger if e.step == "create_crm_record")
    sent = {**{k: CLEAR[k] for k in ("applicant_id", "name", "email")}, "segment": kyc.decision["segment"]}
    assert crm.input == sent
