"""Sales follow-up after a demo: the workflow the decision scenario chose over a five-agent crew.

read CRM notes (read) → summarise buyer signals (LLM, fast) → draft the e-mail
(LLM, strong) → suggest a meeting slot (code) → a sales manager approves the
draft → send (irreversible) → log it on the deal (write).
The model is used at the two judgment steps only; everything else is code,
so the e-mail never proposes a meeting the code did not compute.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from temporalio import workflow

from workflows.api import AskPolicy, PlannedStep, Process, RunOutcome, RunState

with workflow.unsafe.imports_passed_through():  # contracts and tools: loaded once per worker, not per run
    from baton_examples.outbox import Email, Outbox
    from baton_examples.sales_followup.contracts import (
        BuyerSignals, DraftForReview, FollowedUp, FollowUpDraft, FollowUpRequest, MeetingSlot, RunClock,
    )
    from baton_examples.sales_followup.tools import DealNotes, DealQuery, DealUpdate, SalesCrm

SEND_REVIEW = AskPolicy(roles=["sales-manager"], timeout=timedelta(hours=24))
MEETING_TIME = time(15, 0, tzinfo=timezone.utc)  # 10:00 New York, 16:00 Berlin
BUSINESS_DAYS_AFTER_DEMO = 2
MEETING_AFTER_RUN = "meeting-after-run"  # workflow.patched: the slot looks forward from the run's clock


def business_days_after(day: date) -> date:
    added = 0
    while added < BUSINESS_DAYS_AFTER_DEMO:
        day += timedelta(days=1)
        added += day.weekday() < 5
    return day


def suggest_slot(notes: DealNotes, clock: RunClock) -> MeetingSlot:
    """Two business days after the demo, or after the run's day once the demo has passed: never in the past.

    Counted from the later of the two days, the team's fixed slot is at least a day and a half
    after the run's own clock, so it is still ahead when the e-mail goes out after the manager's
    review (24 h at most). Code, so it is never invented.
    """
    today = clock.now.astimezone(timezone.utc).date()
    if notes.demo_on >= today:
        return suggest_slot_after_demo(notes)
    return MeetingSlot(
        starts_at=datetime.combine(business_days_after(today), MEETING_TIME),
        why=f"{BUSINESS_DAYS_AFTER_DEMO} business days after {today}; the demo on {notes.demo_on} has passed",
    )


def suggest_slot_after_demo(notes: DealNotes) -> MeetingSlot:
    """Two business days after the demo: what runs started before `MEETING_AFTER_RUN` keep proposing."""
    return MeetingSlot(
        starts_at=datetime.combine(business_days_after(notes.demo_on), MEETING_TIME),
        why=f"{BUSINESS_DAYS_AFTER_DEMO} business days after the demo on {notes.demo_on}",
    )


@workflow.defn(name="sales-followup")
class SalesFollowUp(Process):
    name = "sales-followup"
    roles = ("sales-manager",)
    outputs = (BuyerSignals, FollowUpDraft)
    plan = (
        PlannedStep("read_crm_notes", "tool", tool="read_crm_notes", note="no contact or demo date ends the run"),
        PlannedStep("summarise_signals", "llm", tier="fast"),
        PlannedStep("suggest_slot", "rule", note="suggest_slot: two business days after the demo, or after today once it has passed"),
        PlannedStep("draft_email", "llm", tier="strong"),
        PlannedStep("send_followup.approval", "approval", roles=("sales-manager",), note="the manager reads the draft"),
        PlannedStep("send_followup", "tool", tool="send_email"),
        PlannedStep("update_crm", "tool", tool="update_crm_deal"),
    )

    @workflow.run
    async def run(self, request: FollowUpRequest) -> RunOutcome[FollowedUp]:
        return await self.execute(lambda: self._follow_up(request), request.budget)

    async def _slot(self, notes: DealNotes) -> MeetingSlot:
        if workflow.patched(MEETING_AFTER_RUN):
            return await self.rule("suggest_slot", suggest_slot, notes, RunClock(now=workflow.now()))
        return await self.rule("suggest_slot", suggest_slot_after_demo, notes)  # runs started before the patch

    async def _follow_up(self, r: FollowUpRequest) -> RunOutcome[FollowedUp]:
        result = self.keep(FollowedUp(deal_id=r.deal_id))
        notes = await self.tool("read_crm_notes", SalesCrm.read_crm_notes, DealQuery(deal_id=r.deal_id))
        if not notes.found or not notes.contact_email or not notes.demo_on:
            return self.end(RunState.REJECTED, f"deal {r.deal_id}: no contact or demo date in the CRM", result)
        about = f"Deal {notes.deal_id} with {notes.company}; contact {notes.contact_name}; demo on {notes.demo_on}."
        result.signals = signals = await self.llm(
            "summarise_signals",
            f"{about}\nSummarise the buyer signals in the rep's notes.\n<notes>\n" + "\n".join(notes.notes) + "\n</notes>",
            BuyerSignals,
            tier="fast",
            personal=True,  # the contact's name: only models allowed personal data read it
        )
        result.meeting = slot = await self._slot(notes)
        draft = await self.llm(
            "draft_email",
            f"{about}\nWrite the follow-up e-mail from {notes.rep} to {notes.contact_name}. Address what they "
            f"care about and propose exactly this meeting time: {slot.starts_at:%A %d %B, %H:%M} UTC.\n"
            f"Signals: {signals.model_dump_json()}",
            FollowUpDraft,
            tier="strong",
            personal=True,
        )
        sent = await self.tool(
            "send_followup",
            Outbox.send_email,
            Email(to=notes.contact_email, subject=draft.subject, body=draft.body),
            approval=SEND_REVIEW,
            facts=DraftForReview(
                to=notes.contact_email, subject=draft.subject, body=draft.body,
                meeting=slot.starts_at, interest=signals.interest,
            ),
        )
        result.message_id = sent.message_id
        logged = await self.tool(
            "update_crm",
            SalesCrm.update_crm_deal,
            DealUpdate(deal_id=r.deal_id, next_step=signals.next_step, meeting_at=slot.starts_at,
                       follow_up_message_id=sent.message_id),
        )
        result.activity_id = logged.activity_id
        return self.end(
            RunState.COMPLETED, f"follow-up sent to {notes.contact_email}; meeting proposed {slot.starts_at:%Y-%m-%d %H:%M} UTC", result
        )
