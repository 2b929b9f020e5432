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


class Proposal(BaseModel):
    amount_usd: float
    customer: str
    order: dict


PAID = {"total_usd": 60.0, "refunded_usd": 35.0}
WITHIN_PAID = "amount_usd + order.refunded_usd <= order.total_usd and order.customer == customer"


@pytest.mark.parametrize(
    ("amount", "customer", "allowed"),
    [(25.0, "ana@example.com", True), (25.01, "ana@example.com", False), (5.0, "ben@example.com", False)],
)
def test_a_rule_weighs_a_proposal_against_facts(amount: float, customer: str, allowed: bool) -> None:
    order = {"customer": "ana@example.com", **PAID}
    assert Rule.parse(WITHIN_PAID).evaluate(Proposal(amount_usd=amount, customer=customer, order=order))[0] is allowed


def test_it_reports_every_field_either_side_saw() -> None:
    _, seen = Rule.parse(WITHIN_PAID).evaluate(Proposal(amount_usd=1, customer="a", order={"customer": "b", **PAID}))
    assert seen == {"amount_usd": 1.0, "order.refunded_usd": 35.0, "order.total_usd": 60.0, "order.customer": "b",
                    "customer": "a"}


def test_signs_and_negative_literals() -> None:
    claim = Claim(confidence=1, amount_usd=10)
    assert Rule.parse("amount_usd - 15 >= -5").evaluate(claim)[0]
    assert not Rule.parse("amount_usd - 15 >= -4.5").evaluate(claim)[0]
    assert Rule.parse("-amount_usd < 0").evaluate(claim)[0]


@pytest.mark.parametrize("text", ["reviewer + 1 > 0", "kind + amount_usd > 0", "confidence + true > 0"])
def test_only_numbers_add_up_and_anything_else_never_allows(text: str) -> None:
    assert not Rule.parse(text).evaluate(Claim(confidence=1, amount_usd=1))[0]


@pytest.mark.parametrize("text", ["a + >= 1", "a >= 1 +", "+ >= 1", "a b >= 1"])
def test_a_malformed_sum_is_refused_by_name(text: str) -> None:
    with pytest.raises(RuleError, match="expected"):
        Rule.parse(text)
