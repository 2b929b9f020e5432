"""Threshold rules: parsed strictly, evaluated over typed fields, never allowing by accident."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from workflows.thresholds import Rule, RuleError


class Claim(BaseModel):
    confidence: float
    amount_usd: float
    kind: str = "refund"
    reviewer: str | None = None


RULE = "confidence >= 0.9 and amount_usd <= 50 or kind == 'goodwill'"


@pytest.mark.parametrize(
    ("claim", "allowed"),
    [
        (Claim(confidence=0.95, amount_usd=50), True),  # bounds are inclusive
        (Claim(confidence=0.89, amount_usd=10), False),
        (Claim(confidence=0.99, amount_usd=50.01), False),
        (Claim(confidence=0.1, amount_usd=900, kind="goodwill"), True),  # `or` binds looser than `and`
    ],
)
def test_and_binds_tighter_than_or(claim: Claim, allowed: bool) -> None:
    assert Rule.parse(RULE).evaluate(claim)[0] is allowed


def test_it_reports_the_values_it_saw() -> None:
    allowed, seen = Rule.parse(RULE).evaluate(Claim(confidence=0.95, amount_usd=20))
    assert allowed and seen == {"confidence": 0.95, "amount_usd": 20.0, "kind": "refund"}


def test_null_and_booleans() -> None:
    assert Rule.parse("reviewer != null").evaluate(Claim(confidence=1, amount_usd=1, reviewer="ana"))[0]
    assert not Rule.parse("reviewer != null").evaluate(Claim(confidence=1, amount_usd=1))[0]


def test_a_comparison_of_mismatched_types_never_allows() -> None:
    assert not Rule.parse("reviewer >= 3").evaluate(Claim(confidence=1, amount_usd=1))[0]


def test_a_field_name_that_starts_like_a_keyword_is_a_field() -> None:
    class Order(BaseModel):
        order_total: int
        android: bool

    assert Rule.parse("order_total < 10 and android == true").evaluate(Order(order_total=3, android=True))[0]


@pytest.mark.parametrize("text", ["", "confidence >=", "a >= 1 and", "a ~ 1", "a >= 1 b <= 2", "and a > 1", "a > 'x"])
def test_a_malformed_rule_is_refused_by_name(text: str) -> None:
    with pytest.raises(RuleError):
        Rule.parse(text)


def test_a_rule_over_a_missing_field_is_refused_not_false() -> None:
    with pytest.raises(RuleError, match="confidenc"):
        Rule.parse("confidenc >= 0.9").evaluate(Claim(confidence=1, amount_usd=1))
