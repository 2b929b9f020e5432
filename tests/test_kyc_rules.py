"""The KYC rules: every verdict, on both sides of every threshold.

Thresholds are imported from baton_examples.onboarding.kyc, so a policy change moves the
boundaries these tests probe instead of breaking them.
"""

from __future__ import annotations

import pytest

from baton_examples.onboarding.tools import CreditReport, IdentityCheck
from baton_examples.onboarding.kyc import (
    MAX_OPEN_DEFAULTS,
    MIN_SCORE,
    PRIME_SCORE,
    REVIEW_BELOW_SCORE,
    KycVerdict,
    match_kyc,
)

CLEAN = IdentityCheck(verified=True, country="GB")
GOOD_SCORE = max(PRIME_SCORE, REVIEW_BELOW_SCORE) + 10


def credit(score: int = GOOD_SCORE, defaults: int = 0) -> CreditReport:
    return CreditReport(found=True, score=score, open_defaults=defaults)


def test_thresholds_are_ordered() -> None:
    # The rules below only make sense in this order; a config slip should fail loudly.
    assert 0 < MIN_SCORE < REVIEW_BELOW_SCORE <= PRIME_SCORE
    assert MAX_OPEN_DEFAULTS >= 1


# ------------------------------------------------------------------- clear


def test_clear_for_clean_identity_and_good_credit() -> None:
    result = match_kyc(CLEAN, credit())
    assert result.verdict is KycVerdict.CLEAR
    assert result.reasons == ["all checks passed"]
    assert result.segment == "prime"


def test_clear_exactly_at_review_threshold() -> None:
    result = match_kyc(CLEAN, credit(REVIEW_BELOW_SCORE, 0))
    assert result.verdict is KycVerdict.CLEAR


def test_review_one_below_review_threshold() -> None:
    result = match_kyc(CLEAN, credit(REVIEW_BELOW_SCORE - 1, 0))
    assert result.verdict is KycVerdict.REVIEW
    assert result.reasons == [f"credit score {REVIEW_BELOW_SCORE - 1} with 0 open defaults"]


# ------------------------------------------------------------------ segment


def test_prime_exactly_at_prime_score() -> None:
    result = match_kyc(CLEAN, credit(PRIME_SCORE, 0))
    assert result.verdict is KycVerdict.CLEAR
    assert result.segment == "prime"


def test_standard_one_below_prime_score() -> None:
    result = match_kyc(CLEAN, credit(PRIME_SCORE - 1, 0))
    assert result.verdict is KycVerdict.CLEAR
    assert result.segment == "standard"


def test_pep_with_prime_score_is_standard() -> None:
    pep = IdentityCheck(verified=True, country="US", pep=True)
    result = match_kyc(pep, credit(PRIME_SCORE + 50, 0))
    assert result.verdict is KycVerdict.REVIEW
    assert result.segment == "standard"


def test_open_default_with_prime_score_is_standard() -> None:
    result = match_kyc(CLEAN, credit(PRIME_SCORE + 50, 1))
    assert result.verdict is KycVerdict.REVIEW
    assert result.segment == "standard"


def test_sanctioned_with_prime_score_is_not_recorded_as_prime() -> None:
    sanctioned = IdentityCheck(verified=True, country="FR", sanctions_hit=True)
    result = match_kyc(sanctioned, credit(PRIME_SCORE + 80, 0))
    assert result.verdict is KycVerdict.REJECT
    assert result.segment == "standard"


def test_no_credit_file_is_standard() -> None:
    result = match_kyc(CLEAN, CreditReport(found=False))
    assert result.segment == "standard"


# ------------------------------------------------------------------- review


def test_review_for_pep() -> None:
    pep = IdentityCheck(verified=True, country="US", pep=True)
    result = match_kyc(pep, credit())
    assert result.verdict is KycVerdict.REVIEW
    assert result.reasons == ["politically exposed person"]


def test_review_for_missing_credit_file() -> None:
    result = match_kyc(CLEAN, CreditReport(found=False))
    assert result.verdict is KycVerdict.REVIEW
    assert result.reasons == ["no credit file"]


def test_review_exactly_at_min_score() -> None:
    result = match_kyc(CLEAN, credit(MIN_SCORE, 0))
    assert result.verdict is KycVerdict.REVIEW
    assert result.reasons == [f"credit score {MIN_SCORE} with 0 open defaults"]


def test_review_for_one_open_default_with_good_score() -> None:
    result = match_kyc(CLEAN, credit(GOOD_SCORE, 1))
    assert result.verdict is KycVerdict.REVIEW
    assert result.reasons == [f"credit score {GOOD_SCORE} with 1 open defaults"]


def test_review_exactly_at_max_open_defaults() -> None:
    result = match_kyc(CLEAN, credit(GOOD_SCORE, MAX_OPEN_DEFAULTS))
    assert result.verdict is KycVerdict.REVIEW


def test_review_lists_every_reason_in_order() -> None:
    pep = IdentityCheck(verified=True, country="US", pep=True)
    result = match_kyc(pep, credit(REVIEW_BELOW_SCORE - 1, 1))
    assert result.verdict is KycVerdict.REVIEW
    assert result.reasons == [
        "politically exposed person",
        f"credit score {REVIEW_BELOW_SCORE - 1} with 1 open defaults",
    ]


def test_review_pep_and_no_credit_file() -> None:
    pep = IdentityCheck(verified=True, country="US", pep=True)
    result = match_kyc(pep, CreditReport(found=False))
    assert result.verdict is KycVerdict.REVIEW
    assert result.reasons == ["politically exposed person", "no credit file"]


# ------------------------------------------------------------------- reject


def test_reject_one_below_min_score() -> None:
    result = match_kyc(CLEAN, credit(MIN_SCORE - 1, 0))
    assert result.verdict is KycVerdict.REJECT
    assert result.reasons == [f"credit score {MIN_SCORE - 1} with 0 open defaults"]


def test_reject_one_above_max_open_defaults() -> None:
    result = match_kyc(CLEAN, credit(GOOD_SCORE, MAX_OPEN_DEFAULTS + 1))
    assert result.verdict is KycVerdict.REJECT
    assert result.reasons == [f"credit score {GOOD_SCORE} with {MAX_OPEN_DEFAULTS + 1} open defaults"]


def test_reject_unverified_identity_names_the_reason() -> None:
    unverified = IdentityCheck(verified=False, reason="name or document does not match")
    result = match_kyc(unverified, credit())
    assert result.verdict is KycVerdict.REJECT
    assert result.reasons == ["identity not verified: name or document does not match"]


def test_reject_sanctions_hit() -> None:
    sanctioned = IdentityCheck(verified=True, country="FR", sanctions_hit=True)
    result = match_kyc(sanctioned, credit())
    assert result.verdict is KycVerdict.REJECT
    assert result.reasons == ["sanctions list hit"]


def test_reject_outranks_review_and_keeps_review_reasons() -> None:
    """A sanctioned PEP with a thin file: rejected, and the auditor sees every finding."""
    identity = IdentityCheck(verified=True, country="FR", pep=True, sanctions_hit=True)
    result = match_kyc(identity, CreditReport(found=False))
    assert result.verdict is KycVerdict.REJECT
    assert result.reasons == ["sanctions list hit", "politically exposed person", "no credit file"]


def test_reject_collects_every_reject_reason() -> None:
    identity = IdentityCheck(verified=False, reason="applicant not in the register", sanctions_hit=True)
    result = match_kyc(identity, credit(MIN_SCORE - 1, MAX_OPEN_DEFAULTS + 1))
    assert result.verdict is KycVerdict.REJECT
    assert result.reasons == [
        "identity not verified: applicant not in the register",
        "sanctions list hit",
        f"credit score {MIN_SCORE - 1} with {MAX_OPEN_DEFAULTS + 1} open defaults",
    ]


def test_seeded_applicants_get_their_expected_verdicts() -> None:
    """The shipped examples (clear / review / reject) as the register answers for them."""
    ada = match_kyc(IdentityCheck(verified=True, country="GB"), CreditReport(found=True, score=742, open_defaults=0))
    grace = match_kyc(
        IdentityCheck(verified=True, country="US", pep=True), CreditReport(found=True, score=701, open_defaults=0)
    )
    victor = match_kyc(
        IdentityCheck(verified=True, country="FR", sanctions_hit=True),
        CreditReport(found=True, score=655, open_defaults=1),
    )
    assert (ada.verdict, ada.segment) == (KycVerdict.CLEAR, "prime")
    assert grace.verdict is KycVerdict.REVIEW
    assert victor.verdict is KycVerdict.REJECT


@pytest.mark.parametrize(
    ("score", "defaults", "verdict"),
    [
        (MIN_SCORE - 1, 0, KycVerdict.REJECT),
        (MIN_SCORE, 0, KycVerdict.REVIEW),
        (REVIEW_BELOW_SCORE - 1, 0, KycVerdict.REVIEW),
        (REVIEW_BELOW_SCORE, 0, KycVerdict.CLEAR),
        (REVIEW_BELOW_SCORE, 1, KycVerdict.REVIEW),
        (REVIEW_BELOW_SCORE, MAX_OPEN_DEFAULTS, KycVerdict.REVIEW),
        (REVIEW_BELOW_SCORE, MAX_OPEN_DEFAULTS + 1, KycVerdict.REJECT),
        (MIN_SCORE, MAX_OPEN_DEFAULTS + 1, KycVerdict.REJECT),
        (MIN_SCORE - 1, MAX_OPEN_DEFAULTS, KycVerdict.REJECT),
    ],
)
def test_credit_grid(score: int, defaults: int, verdict: KycVerdict) -> None:
    assert match_kyc(CLEAN, credit(score, defaults)).verdict is verdict
