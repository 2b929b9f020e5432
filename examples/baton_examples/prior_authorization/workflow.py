"""Prior authorization: the deterministic orchestrator of seed 000, where every node's input and output is audited.

extract the request from the doctor's note (LLM, fast tier; a field the note
does not state is null) → read the member's policy for the procedure (read;
skipped when the note lacks member, procedure or date) → policy rules (code):
approve · deny · incomplete → log the case in the CRM (write) →
  approve: end, authorized by the rules ·
  deny or incomplete: a clinical reviewer approves (authorize) or rejects (deny)
  → the decision is recorded on the case (write).
The model is used once, to read; every decision is code or a person.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.api import ApprovalStatus, AskPolicy, PlannedStep, Process, RunOutcome, RunState

with workflow.unsafe.imports_passed_through():  # contracts, rules and tools: loaded once per worker, not per run
    from baton_examples.prior_authorization.contracts import (
        ExtractedRequest, PriorAuthorized, PriorAuthRequest, ReviewFile,
    )
    from baton_examples.prior_authorization.rules import Determination, Verdict, check_policy_limits
    from baton_examples.prior_authorization.tools import (
        CaseDecision, CaseRef, Coverage, CoverageQuery, PayerSystems, PriorAuthCase,
    )

CLINICAL_REVIEW = AskPolicy(roles=["clinical-reviewer"], timeout=timedelta(hours=48))


def extraction_prompt(r: PriorAuthRequest) -> str:
    return (
        f"Extract prior authorization request {r.request_id} from the doctor's note below into the fields asked. "
        "A field the note does not state is null: never guess, complete or invent a value.\n"
        f"<note>\n{r.note}\n</note>"
    )


@workflow.defn(name="prior-authorization")
class PriorAuthorization(Process):
    name = "prior-authorization"
    roles = ("clinical-reviewer",)
    outputs = (ExtractedRequest,)
    plan = (
        PlannedStep("extract_request", "llm", tier="fast", note="the note's fields; unstated ones null"),
        PlannedStep("check_coverage", "tool", tool="check_coverage", note="when member, procedure and date are stated"),
        PlannedStep("check_policy_limits", "rule", note="check_policy_limits: approve, deny or incomplete"),
        PlannedStep("log_case", "tool", tool="log_prior_auth"),
        PlannedStep("clinical_review", "approval", roles=("clinical-reviewer",), note="when denied or incomplete"),
        PlannedStep("record_decision", "tool", tool="record_auth_decision", note="after the review"),
    )

    @workflow.run
    async def run(self, request: PriorAuthRequest) -> RunOutcome[PriorAuthorized]:
        return await self.execute(lambda: self._authorize(request), request.budget)

    async def _coverage(self, x: ExtractedRequest) -> Coverage | None:
        """The member's policy for the procedure on the day, when the note says all three."""
        if x.member_id is None or x.procedure_code is None or x.requested_date is None:
            return None
        query = CoverageQuery(member_id=x.member_id, procedure_code=x.procedure_code, on=x.requested_date)
        return await self.tool("check_coverage", PayerSystems.check_coverage, query)

    async def _log(self, r: PriorAuthRequest, x: ExtractedRequest, d: Determination) -> CaseRef:
        return await self.tool("log_case", PayerSystems.log_prior_auth, PriorAuthCase(
            request_id=r.request_id, member_id=x.member_id, procedure_code=x.procedure_code,
            diagnosis_code=x.diagnosis_code, requested_date=x.requested_date, provider_npi=x.provider_npi,
            status="approved" if d.verdict is Verdict.APPROVE else "pending_review", reasons=d.reasons,
        ))

    async def _authorize(self, r: PriorAuthRequest) -> RunOutcome[PriorAuthorized]:
        result = self.keep(PriorAuthorized(request_id=r.request_id))
        extracted = await self.llm(
            "extract_request", extraction_prompt(r), ExtractedRequest, tier="fast",
            personal=True,  # the note is patient data: only models allowed personal data read it
        )
        coverage = await self._coverage(extracted)
        d = await self.rule("check_policy_limits", check_policy_limits, extracted, coverage)
        result.verdict, result.missing, result.reasons = d.verdict.value, d.missing, d.reasons
        case = await self._log(r, extracted, d)
        result.case_id = case.case_id
        if d.verdict is Verdict.APPROVE:
            result.decision = "approved"
            return self.end(RunState.COMPLETED, f"authorized by the policy rules; CRM case {case.case_id}", result)
        return await self._review(r, extracted, coverage, d, case, result)

    async def _review(
        self, r: PriorAuthRequest, x: ExtractedRequest, coverage: Coverage | None, d: Determination, case: CaseRef,
        result: PriorAuthorized,
    ) -> RunOutcome[PriorAuthorized]:
        """A clinician decides what the rules cannot pass: approve authorizes, reject denies; the CRM records it."""
        why = (f"the note does not state {', '.join(d.missing)}" if d.verdict is Verdict.INCOMPLETE
               else "the policy rules deny it: " + "; ".join(d.reasons))
        review = await self.approval(
            "clinical_review",
            # Codes, plans and counts only: the ask is shown undecoded in the Web UI's current details.
            ask=f"Prior authorization {r.request_id} (procedure {x.procedure_code or 'not stated'}, CRM case "
            f"{case.case_id}): {why}. Approve to authorize it, reject to deny it.",
            proposed=f"authorize procedure {x.procedure_code or '(not stated)'} and record it on case {case.case_id}",
            context=ReviewFile(request_id=r.request_id, request=x, coverage=coverage, verdict=d.verdict.value,
                               missing=d.missing, reasons=d.reasons, case_id=case.case_id),
            policy=CLINICAL_REVIEW,
        )
        approved = review.status is ApprovalStatus.APPROVED
        result.reviewed_by, result.decision = review.by, "approved" if approved else "denied"
        await self.tool("record_decision", PayerSystems.record_auth_decision, CaseDecision(
            case_id=case.case_id, status=result.decision, decided_by=review.by or "unknown", comment=review.comment or "",
        ))
        said = review.comment or "no comment"
        if approved:
            return self.end(RunState.COMPLETED, f"authorized by {review.by} on review ({why}): {said}", result)
        return self.end(RunState.REJECTED, f"denied by {review.by} on review ({why}): {said}", result)
