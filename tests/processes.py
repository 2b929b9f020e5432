"""Small processes that exist only to drive engine behaviour the shipped ones do not show."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.approvals import ApprovalStatus, AskPolicy, AtDeadline, Stage
from workflows.engine import Process
from workflows.outcome import ModelOutputInvalid, RunOutcome, RunState
from workflows.visibility import Shown

with workflow.unsafe.imports_passed_through():
    from baton_examples.onboarding.tools import NewCustomer, OnboardingSystems
    from activities.policy import BudgetOverride
    from baton_examples.outbox import Email


class Draft(BaseModel):
    headline: str = Field(min_length=5, max_length=60)
    words: int = Field(ge=1)


class DraftRequest(BaseModel):
    topic: str
    unbounded_retries: bool = False


@workflow.defn(name="test-drafting")
class Drafting(Process):
    """Drafts with the model; a draft the model never gets right goes to a person."""

    name = "test-drafting"
    outputs = (Draft,)

    @workflow.run
    async def run(self, request: DraftRequest) -> RunOutcome[Draft]:
        return await self.execute(lambda: self._draft(request), None)

    async def _draft(self, request: DraftRequest) -> RunOutcome[Draft]:
        retry = RetryPolicy() if request.unbounded_retries else RetryPolicy(maximum_attempts=3)
        try:
            draft = await self.llm("draft", f"Draft a headline about {request.topic}", Draft, retry=retry)
        except ModelOutputInvalid as bad:
            review = await self.approval(
                "write_by_hand",
                ask=f"The model could not draft a valid headline ({bad.problem}). Write one?",
                context=request,
                policy=AskPolicy(roles=["compliance"], timeout=timedelta(hours=1), at_deadline=AtDeadline.REJECT),
            )
            return self.end(RunState.REJECTED, f"escalated to a person: {review.status.value} by {review.by}")
        return self.end(RunState.COMPLETED, "drafted", draft)


class Refund(BaseModel):
    order_id: str
    amount_usd: float
    confidence: float


@workflow.defn(name="test-signoff")
class Signoff(Process):
    """Two sign-offs asked at once (parallel branches), then a refund under a threshold rule."""

    name = "test-signoff"
    roles = ("compliance", "compliance-lead")

    @workflow.run
    async def run(self, refund: Refund) -> RunOutcome[dict]:
        return await self.execute(lambda: self._sign(refund), None)

    async def _sign(self, refund: Refund) -> RunOutcome[dict]:
        hour = timedelta(hours=1)
        legal, finance = await asyncio.gather(
            self.approval("legal_signoff", ask="Legal sign-off?", context=refund,
                          policy=AskPolicy(roles=["compliance"], timeout=hour)),
            self.approval("finance_signoff", ask="Finance sign-off?", context=refund,
                          policy=AskPolicy(roles=["compliance-lead"], timeout=hour)),
        )
        if ApprovalStatus.REJECTED in (legal.status, finance.status):
            return self.end(RunState.REJECTED, f"legal {legal.status.value}, finance {finance.status.value}")
        refund_ok = await self.approval(
            "refund", ask=f"Refund ${refund.amount_usd} on {refund.order_id}?", context=refund,
            policy=AskPolicy(roles=["compliance"], timeout=hour,
                             auto_approve="confidence >= 0.9 and amount_usd <= 50"),
        )
        return self.end(RunState.COMPLETED, f"refund {refund_ok.status.value} by {refund_ok.by}")


@workflow.defn(name="test-unguarded-send")
class UnguardedSend(Process):
    """Calls an irreversible tool without an approval policy: the engine must refuse."""

    name = "test-unguarded-send"

    @workflow.run
    async def run(self, request: DraftRequest) -> RunOutcome[dict]:
        return await self.execute(self._send, None)

    async def _send(self) -> RunOutcome[dict]:
        await self.tool("notify", "send_email", Email(to="x@example.com", subject="hi", body="hello"))
        return self.end(RunState.COMPLETED, "sent")


@workflow.defn(name="test-asked-write")
class AskedWrite(Process):
    """Asks before a write tool because it says so: an approval given to any tool step is honoured."""

    name = "test-asked-write"

    @workflow.run
    async def run(self, request: DraftRequest) -> RunOutcome[dict]:
        return await self.execute(self._write, None)

    async def _write(self) -> RunOutcome[dict]:
        customer = NewCustomer(applicant_id="A-9", name="Test Person", email="t@example.com", segment="retail")
        await self.tool("create", OnboardingSystems.create_crm_record, customer,
                        approval=AskPolicy(roles=["compliance"], timeout=timedelta(hours=1)))
        return self.end(RunState.COMPLETED, "written")


class Unanswered(BaseModel):
    """How long nobody answers, and how the run ends when the deadline passes."""

    seconds: float = Field(default=1, gt=0)
    end_state: RunState = RunState.TIMED_OUT


@workflow.defn(name="test-unanswered")
class NobodyAnswers(Process):
    """Asks compliance with a deadline of seconds, so a `timed_out` (or `escalated`) end happens on real time."""

    name = "test-unanswered"
    roles = ("compliance",)

    @workflow.run
    async def run(self, request: Unanswered) -> RunOutcome[dict]:
        return await self.execute(lambda: self._ask(request), None)

    async def _ask(self, request: Unanswered) -> RunOutcome[dict]:
        await self.approval(
            "sign_off", ask="Sign off?", context=request,
            policy=AskPolicy(roles=["compliance"], timeout=timedelta(seconds=request.seconds),
                             end_state=request.end_state),
        )
        return self.end(RunState.COMPLETED, "signed off")


class Headline(BaseModel):
    text: str


class Topic(BaseModel):
    topic: str


SLOW_STEP_ATTEMPTS = 3


@workflow.defn(name="test-slow-model")
class SlowModel(Process):
    """One model step with a one-second timeout and three quick attempts: a slow server outlasts them all."""

    name = "test-slow-model"
    outputs = (Headline,)

    @workflow.run
    async def run(self, topic: Topic) -> RunOutcome[Headline]:
        return await self.execute(lambda: self._draft(topic), None)

    async def _draft(self, topic: Topic) -> RunOutcome[Headline]:
        retry = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=SLOW_STEP_ATTEMPTS)
        headline = await self.llm(
            "draft", f"A headline about {topic.topic}", Headline, timeout=timedelta(seconds=1), retry=retry
        )
        return self.end(RunState.COMPLETED, "drafted", headline)


class Member(BaseModel):
    """A person greeted by the model: their name is marked personal, their club is not."""

    name: str = Field(json_schema_extra={"personal": True})
    club: str
    mention_name: bool = True  # the prompt interpolates the name
    declare: bool = False  # the step says its prompt carries personal data


@workflow.defn(name="test-greeting")
class Greeting(Process):
    """One model step whose prompt may carry a personal field, declared or not."""

    name = "test-greeting"
    outputs = (Headline,)

    @workflow.run
    async def run(self, member: Member) -> RunOutcome[Headline]:
        return await self.execute(lambda: self._greet(member), None)

    async def _greet(self, member: Member) -> RunOutcome[Headline]:
        who = member.name if member.mention_name else "a new member"
        headline = await self.llm(
            "greet", f"A one-line welcome for {who} of the {member.club} club", Headline, personal=member.declare
        )
        return self.end(RunState.COMPLETED, "greeted", headline)


class StepsRequest(BaseModel):
    steps: int = Field(ge=1, le=50)


@workflow.defn(name="test-model-steps")
class ModelStepsInARow(Process):
    """N priced model steps in a row: each changes the run's cost, nothing else a search attribute shows."""

    name = "test-model-steps"
    outputs = (Headline,)

    @workflow.run
    async def run(self, request: StepsRequest) -> RunOutcome[Headline]:
        return await self.execute(lambda: self._in_a_row(request), None)

    async def _in_a_row(self, request: StepsRequest) -> RunOutcome[Headline]:
        headline = Headline(text="none")
        for i in range(request.steps):
            headline = await self.llm(f"step_{i + 1}", f"A headline for item {i + 1}", Headline)
        return self.end(RunState.COMPLETED, "done", headline)


class Pause(BaseModel):
    """How long the run pauses between its two model steps, under what budget."""

    pause: timedelta
    budget: BudgetOverride | None = None


@workflow.defn(name="test-pause")
class PauseBetweenSteps(Process):
    """A model step, a pause (anything that outlasts the run's wall clock between two checks), another model step."""

    name = "test-pause"
    outputs = (Headline,)

    @workflow.run
    async def run(self, request: Pause) -> RunOutcome[Headline]:
        return await self.execute(lambda: self._pause_between(request), request.budget)

    async def _pause_between(self, request: Pause) -> RunOutcome[Headline]:
        await self.llm("before", "A headline before the pause", Headline)
        await workflow.sleep(request.pause, summary=Shown("the pause between the steps"))
        headline = await self.llm("after", "A headline after the pause", Headline)
        return self.end(RunState.COMPLETED, "done", headline)


@workflow.defn(name="test-pause-extend")
class PauseThenExtend(PauseBetweenSteps):
    """The pause, and compliance may extend the run's wall clock when it runs out."""

    name = "test-pause-extend"
    roles = ("compliance",)
    budget_extension = AskPolicy(roles=["compliance"], timeout=timedelta(hours=1))

    @workflow.run
    async def run(self, request: Pause) -> RunOutcome[Headline]:
        return await self.execute(lambda: self._pause_between(request), request.budget)


class Escalation(BaseModel):
    """The budget of a run whose one approval escalates: compliance for an hour, then its lead for two."""

    budget: BudgetOverride | None = None


@workflow.defn(name="test-escalate")
class EscalatingApproval(Process):
    """One approval in two stages, so a time cap of the budget can fall on the escalation between them."""

    name = "test-escalate"
    roles = ("compliance", "compliance-lead")

    @workflow.run
    async def run(self, request: Escalation) -> RunOutcome[dict]:
        return await self.execute(lambda: self._ask(request), request.budget)

    async def _ask(self, request: Escalation) -> RunOutcome[dict]:
        policy = AskPolicy(roles=["compliance"], timeout=timedelta(hours=1),
                           escalate=[Stage(roles=["compliance-lead"], timeout=timedelta(hours=2))])
        await self.approval("sign_off", ask="Sign off?", context=request, policy=policy)
        return self.end(RunState.COMPLETED, "signed off")
