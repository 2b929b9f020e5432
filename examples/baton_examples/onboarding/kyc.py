"""The KYC rules: a deterministic decision in code, never a model.

An auditor must be able to read why an applicant was cleared, sent to review,
or rejected; these rules and the values they saw are recorded in the ledger.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from baton_examples.onboarding.tools import CreditReport, IdentityCheck

MIN_SCORE = 500
REVIEW_BELOW_SCORE = 650
PRIME_SCORE = 720
MAX_OPEN_DEFAULTS = 2


class KycVerdict(StrEnum):
    CLEAR = "clear"
    REVIEW = "review"
    REJECT = "reject"


class KycResult(BaseModel):
    verdict: KycVerdict
    reasons: list[str]
    segment: str


def match_kyc(identity: IdentityCheck, credit: CreditReport) -> KycResult:
    rejects, reviews = [], []
    if not identity.verified:
        rejects.append(f"identity not verified: {identity.reason}")
    if identity.sanctions_hit:
        rejects.append("sanctions list hit")
    if identity.pep:
        reviews.append("politically exposed person")
    if not credit.found:
        reviews.append("no credit file")
    elif credit.score < MIN_SCORE or credit.open_defaults > MAX_OPEN_DEFAULTS:
        rejects.append(f"credit score {credit.score} with {credit.open_defaults} open defaults")
    elif credit.score < REVIEW_BELOW_SCORE or credit.open_defaults > 0:
        reviews.append(f"credit score {credit.score} with {credit.open_defaults} open defaults")
    segment = "prime" if credit.score >= PRIME_SCORE and not (rejects or reviews) else "standard"
    if rejects:
        return KycResult(verdict=KycVerdict.REJECT, reasons=rejects + reviews, segment=segment)
    if reviews:
        return KycResult(verdict=KycVerdict.REVIEW, reasons=reviews, segment=segment)
    return KycResult(verdict=KycVerdict.CLEAR, reasons=["all checks passed"], segment=segment)
