"""Approvals as designed steps, through Temporal on the time-skipping server.

Roles from config, escalation when a deadline passes, the declared end at the
last deadline, parallel requests decided in either order, threshold rules that
decide without a person, and signals that cannot crash or unblock a run.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import Client, Interceptor, OutboundInterceptor, WorkflowHandle

from client.sdk import Baton, Refused, UnknownRun
from tests.conftest import LEADS, REVIEWERS, running_worker
from tests.processes import AskedWrite, DraftRequest, Refund, Signoff, UnguardedSend
from tests.test_onboarding_routes import PEP, wait_for_state
from workflows import search_attributes as sa
from workflows.outcome import RunOutcome, RunState

EXTRA = (Signoff, UnguardedSend)


async def start(client, queue: str, workflow, arg) -> WorkflowHandle:
    return await client.start_workflow(
        workflow.run, arg, id=f"{workflow.name}-{uuid.uuid4().hex[:6]}", task_queue=queue,
        result_type=RunOutcome[dict],
    )


async def open_ids(baton: Baton, run_id: str, count: int) -> list[str]:
    for _ in range(200):
        status = await baton.status(run_id)
        if len(status.open_requests) == count:
            return sorted(r.id for r in status.open_requests)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never had {count} open requests")


async def test_an_unanswered_review_escalates_and_the_lead_approves(time_env, config, systems):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        first = (await baton.status(run_id)).open_requests[0]
        assert (first.roles, first.people, first.escalates_to) == (["compliance"], REVIEWERS, ["compliance-lead"])

        await time_env.sleep(timedelta(hours=24, minutes=1))
        escalated = (await baton.status(run_id)).open_requests[0]
        assert (escalated.roles, escalated.people, escalated.stage) == (["compliance-lead"], LEADS, 1)
        assert escalated.deadline > first.deadline
        with pytest.raises(Refused, match="compliance-lead"):
            await baton.approve(run_id, by=REVIEWERS[0])  # the first stage's people are no longer asked
        await baton.approve(run_id, by=LEADS[0], comment="reviewed on escalation")
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert outcome.result["reviewed_by"] == LEADS[0]
    escalation, review = [e for e in ledger if e.step == "compliance_review"]
    assert escalation.outcome == "escalated" and "compliance-lead" in escalation.detail
    assert (review.outcome, review.by) == ("approved", LEADS[0])
    assert systems.count("crm_records", applicant_id="A-1002") == 1


@pytest.mark.parametrize("order", [("legal_signoff", "finance_signoff"), ("finance_signoff", "legal_signoff")])
async def test_two_parallel_requests_decided_in_either_order(time_env, config, order):
    deciders = {"legal_signoff": REVIEWERS[1], "finance_signoff": LEADS[0]}
    async with running_worker(time_env.client, config, extra_workflows=EXTRA) as w:
        baton = Baton(time_env.client, w.task_queue)
        handle = await start(time_env.client, w.task_queue, Signoff, Refund(order_id="O-1", amount_usd=20, confidence=0.95))
        assert await open_ids(baton, handle.id, 2) == ["finance_signoff", "legal_signoff"]
        await baton.approve(handle.id, by=deciders[order[0]], request_id=order[0])
        assert await open_ids(baton, handle.id, 1) == [order[1]]
        attrs = (await handle.describe()).typed_search_attributes
        assert attrs.get(sa.AWAITING_APPROVAL) is True  # still true: one request is open
        remaining = "compliance-lead" if order[1] == "finance_signoff" else "compliance"
        assert attrs.get(sa.APPROVAL_ROLES) == [remaining]
        await baton.approve(handle.id, by=deciders[order[1]], request_id=order[1])
        outcome = await handle.result()
        ledger = await baton.ledger(handle.id)
        attrs = (await handle.describe()).typed_search_attributes

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert [e.step for e in ledger if e.by not in (None, "rule")] == list(order)
    assert attrs.get(sa.AWAITING_APPROVAL) is False


async def test_a_request_needs_no_person_when_its_threshold_rule_holds(time_env, config):
    async with running_worker(time_env.client, config, extra_workflows=EXTRA) as w:
        baton = Baton(time_env.client, w.task_queue)
        small = await start(time_env.client, w.task_queue, Signoff, Refund(order_id="O-2", amount_usd=20, confidence=0.95))
        large = await start(time_env.client, w.task_queue, Signoff, Refund(order_id="O-3", amount_usd=80, confidence=0.95))
        for handle in (small, large):
            await open_ids(baton, handle.id, 2)
            await baton.approve(handle.id, by=REVIEWERS[0], request_id="legal_signoff")
            await baton.approve(handle.id, by=LEADS[0], request_id="finance_signoff")
        assert await open_ids(baton, large.id, 1) == ["refund"]  # $80 is over the rule's $50
        await baton.approve(large.id, by=REVIEWERS[2], request_id="refund")
        small_outcome, large_outcome = await small.result(), await large.result()
        small_ledger, large_ledger = await baton.ledger(small.id), await baton.ledger(large.id)

    assert small_outcome.reason == "refund approved by rule"
    by_rule = small_ledger[-1]
    assert (by_rule.step, by_rule.by) == ("refund", "rule")
    assert by_rule.detail == "approved by rule `confidence >= 0.9 and amount_usd <= 50` with confidence=0.95, amount_usd=20.0"
    assert by_rule.decision == {"confidence": 0.95, "amount_usd": 20.0}
    assert large_outcome.reason == f"refund approved by {REVIEWERS[2]}"
    assert large_ledger[-1].by == REVIEWERS[2]


async def test_refused_decisions_change_nothing(time_env, config):
    async with running_worker(time_env.client, config, extra_workflows=EXTRA) as w:
        baton = Baton(time_env.client, w.task_queue)
        handle = await start(time_env.client, w.task_queue, Signoff, Refund(order_id="O-4", amount_usd=20, confidence=0.95))
        await open_ids(baton, handle.id, 2)
        with pytest.raises(Refused, match="no open approval request 'nope'"):
            await baton.approve(handle.id, by=REVIEWERS[0], request_id="nope")
        with pytest.raises(Refused, match="may not decide 'finance_signoff'"):
            await baton.approve(handle.id, by=REVIEWERS[0], request_id="finance_signoff")
        with pytest.raises(Refused, match="name one with request_id"):
            await baton.approve(handle.id, by=REVIEWERS[0])  # two are open: which one?
        await baton.approve(handle.id, by=REVIEWERS[0], request_id="legal_signoff")
        again = await baton.approve(handle.id, by=REVIEWERS[0], request_id="legal_signoff")  # idempotent
        with pytest.raises(Refused, match="already decided"):
            await baton.reject(handle.id, by=REVIEWERS[1], request_id="legal_signoff")
        assert await open_ids(baton, handle.id, 1) == ["finance_signoff"]
        ledger = await baton.ledger(handle.id)
        await handle.terminate("test over")  # a run left waiting would hold back the shared server's clock

    assert again.approved and again.request_id == "legal_signoff"
    assert [(e.step, e.outcome) for e in ledger] == [("legal_signoff", "approved")]  # refusals left no trace


@pytest.mark.parametrize("payload", ["hello", {"nonsense": 1}, {"by": ""}, None, {"by": "mallory", "request_id": "legal_signoff"}])
async def test_a_bad_signal_is_recorded_and_the_run_keeps_waiting(time_env, config, payload):
    async with running_worker(time_env.client, config, extra_workflows=EXTRA) as w:
        baton = Baton(time_env.client, w.task_queue)
        handle = await start(time_env.client, w.task_queue, Signoff, Refund(order_id="O-5", amount_usd=20, confidence=0.95))
        await open_ids(baton, handle.id, 2)
        if payload is None:
            await handle.signal("approve")
        else:
            await handle.signal("approve", payload)
        for _ in range(100):
            refused = [e for e in await baton.ledger(handle.id) if e.outcome == "refused"]
            if refused:
                break
            await asyncio.sleep(0.05)
        status = await baton.status(handle.id)
        await handle.terminate("test over")

    assert len(refused) == 1 and refused[0].detail.startswith("approve signal refused: ")
    if payload in ({"nonsense": 1}, {"by": ""}):  # the field is named, as the converter reads it
        assert f"{next(iter(payload))}: " in refused[0].detail, refused[0].detail
    if payload == {"by": "mallory", "request_id": "legal_signoff"}:  # a name is no identity
        assert "no token" in refused[0].detail and refused[0].by is None
    assert status.state is RunState.AWAITING_APPROVAL and len(status.open_requests) == 2
    assert status.steps == 0  # a refused signal spends no step


async def test_an_irreversible_tool_without_an_approval_policy_is_refused(time_env, config, systems):
    async with running_worker(time_env.client, config, extra_workflows=EXTRA) as w:
        handle = await start(time_env.client, w.task_queue, UnguardedSend, DraftRequest(topic="x"))
        outcome = await Baton(time_env.client, w.task_queue).result(handle.id)  # Failed in Temporal, typed here
    assert outcome.state is RunState.FAILED
    assert "send_email is irreversible" in outcome.reason
    assert systems.count("outbox") == 0


async def test_a_write_tool_given_an_approval_asks_before_it_writes(time_env, config, systems):
    """`approval=` on any tool step is honoured, not only on irreversible ones: nothing written until approved."""
    async with running_worker(time_env.client, config, extra_workflows=(AskedWrite,)) as w:
        baton = Baton(time_env.client, w.task_queue)
        handle = await start(time_env.client, w.task_queue, AskedWrite, DraftRequest(topic="x"))
        await wait_for_state(baton, handle.id, RunState.AWAITING_APPROVAL)
        assert systems.count("crm_records", applicant_id="A-9") == 0
        await baton.approve(handle.id, by=REVIEWERS[0])
        outcome = await baton.result(handle.id)
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert systems.count("crm_records", applicant_id="A-9") == 1


class CountingDescribes(Interceptor):
    """Counts the describe calls a client makes: each is a round trip to the server."""

    def __init__(self) -> None:
        self.describes = 0

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        counter = self

        class Counting(OutboundInterceptor):
            async def describe_workflow(self, input):
                counter.describes += 1
                return await super().describe_workflow(input)

        return Counting(next)


async def test_waiting_for_a_result_costs_no_describe_and_a_missing_run_is_named(time_env, config):
    """`result` waits on the history alone: a run is described only when it failed or is not there."""
    counting = CountingDescribes()
    config_ = time_env.client.config()
    client = Client(**{**config_, "interceptors": [*config_["interceptors"], counting]})  # still proving who acts
    async with running_worker(time_env.client, config) as w:
        baton = Baton(client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        await baton.approve(run_id, by=REVIEWERS[0])
        before = counting.describes
        outcome = await baton.result(run_id)
        assert outcome.state is RunState.COMPLETED, outcome.reason
        assert counting.describes == before
        missing = f"onboarding-nobody-{uuid.uuid4().hex[:6]}"
        with pytest.raises(UnknownRun, match=missing):
            await baton.result(missing)


async def test_a_decision_for_a_missing_or_finished_run_is_refused_by_name(time_env, config):
    """Approving costs one round trip; the run is looked up only when the update finds nothing."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        missing = f"onboarding-nobody-{uuid.uuid4().hex[:6]}"
        with pytest.raises(UnknownRun, match=missing):
            await baton.approve(missing, by=REVIEWERS[0])
        with pytest.raises(UnknownRun, match=missing):
            await baton.status(missing)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        await baton.reject(run_id, by=REVIEWERS[0], comment="not today")
        await baton.result(run_id)
        again = await baton.reject(run_id, by=REVIEWERS[0], request_id="compliance_review")  # answered as the first
        with pytest.raises(Refused, match="no longer running"):
            await baton.approve(run_id, by=REVIEWERS[0])
        with pytest.raises(Refused, match="no longer running"):
            await baton.reject(run_id, by=REVIEWERS[1])
        assert (await baton.status(run_id)).state is RunState.REJECTED  # a finished run still answers
    assert (again.request_id, again.by, again.approved, again.comment) == ("compliance_review", REVIEWERS[0], False, "not today")


async def test_the_deadline_timer_says_which_request_and_whom_it_waits_for(time_env, config):
    """`temporal workflow show` and the Web UI's event history name the timer, not just its duration."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        handle = time_env.client.get_workflow_handle(run_id)
        history = await handle.fetch_history()
        await handle.terminate("test over")
    decode = time_env.client.data_converter.decode  # summaries are payloads, sealed like the rest
    summaries = [
        (await decode([e.user_metadata.summary], [str]))[0] if e.user_metadata.HasField("summary") else None
        for e in history.events if e.HasField("timer_started_event_attributes")
    ]
    assert None not in summaries, summaries  # every timer is named: the deadline's, and the wall clock's
    assert "compliance_review · deadline for compliance" in summaries, summaries
    assert any(s.startswith("max_wall_clock: ") for s in summaries), summaries
