"""The policy rules: whether a prior-authorization request passes on its own, in code, never a model.

An auditor reads here why a request was approved or sent to a clinician. The
reasons name plans, procedure codes, dates, counts and amounts, never the
patient: they are shown in the approval's ask, which the Web UI shows undecoded.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from baton_examples.prior_authorization.contracts import ExtractedRequest
from baton_examples.prior_authorization.tools import Coverage

# What a request must state before any payer can decide it (the patient's name is not needed: the member id is).
REQUIRED = ("member_id", "procedure_code", "diagnosis_code", "requested_date", "provider_npi", "clinical_justification")


class Verdict(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    INCOMPLETE = "incomplete"


class Determination(BaseModel):
    verdict: Verdict
    missing: list[str]
    reasons: list[str]


def missing_fields(request: ExtractedRequest) -> list[str]:
    return [name for name in REQUIRED if getattr(request, name) is None]


def limit_breaches(request: ExtractedRequest, coverage: Coverage) -> list[str]:
    """Why the policy does not pay for this request; empty when it does."""
    if not coverage.member_found:
        return ["the member id is not in the policy table"]
    if not coverage.active:
        return [f"plan {coverage.plan} is not in force on {request.requested_date}"]
    if not coverage.covered:
        return [f"plan {coverage.plan} does not cover procedure {request.procedure_code}"]
    breaches = []
    if coverage.visits_limit is not None and coverage.visits_used + 1 > coverage.visits_limit:
        breaches.append(f"visit limit reached: {coverage.visits_used} of {coverage.visits_limit} visits used this plan year")
    if coverage.amount_limit_usd is not None and (
        coverage.amount_used_usd + coverage.procedure_cost_usd > coverage.amount_limit_usd
    ):
        breaches.append(
            f"amount limit: {coverage.amount_used_usd:.2f} USD used + {coverage.procedure_cost_usd:.2f} USD for this"
            f" procedure is above the {coverage.amount_limit_usd:.2f} USD a plan year"
        )
    return breaches


def check_policy_limits(request: ExtractedRequest, coverage: Coverage | None) -> Determination:
    """Approve only a complete request the policy covers within its limits; anything else goes to a clinician.

    `coverage` is None when the note lacks what the policy table is read by
    (member, procedure, date): the request is incomplete, never approved.
    """
    missing = missing_fields(request)
    breaches = limit_breaches(request, coverage) if coverage is not None else []
    if missing:
        return Determination(verdict=Verdict.INCOMPLETE, missing=missing, reasons=breaches)
    if breaches:
        return Determination(verdict=Verdict.DENY, missing=[], reasons=breaches)
    rule = "requires prior authorization" if coverage.prior_auth_required else "needs no prior authorization"
    used = f"{coverage.visits_used} of {coverage.visits_limit} visits" if coverage.visits_limit is not None else "no visit limit"
    return Determination(verdict=Verdict.APPROVE, missing=[], reasons=[
        f"plan {coverage.plan} covers procedure {request.procedure_code} ({rule}); {used};"
        f" {coverage.amount_used_usd + coverage.procedure_cost_usd:.2f} USD of"
        f" {coverage.amount_limit_usd if coverage.amount_limit_usd is not None else 'unlimited'} USD with it"
    ])
