"""Approvals see facts, not proposals: the attacks of issue 16 on refunds, through Temporal.

A scripted returns agent (the offline stand-in, examples-style scripts written
here) proposes refunds; the shipped triage process, its rules and the support
desk's system of record decide. Each test checks what was paid, in the
system's own rows, and what the ledger says was seen.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from baton_examples.systems import SystemsOfRecord
from client.sdk import Baton
from tests.conftest import SEED, SUPPORT_LEADS, running_worker
from tests.test_agents import agent_report, open_request, rows, trail_of, with_scripts
from baton_examples.support_triage import tools as support_desk
from workflows.facts import FactBook, Facts, Lookup, RunFacts, Total
from workflows.ledger import StepKind
from workflows.outcome import RunState

ANA = "ana@example.com"
BEN = "ben@example.com"


def ticket(ticket_id: str, customer: str) -> dict:
    return {"ticket_id": ticket_id, "customer_email": customer, "subject": "Refund, please",
            "body": "Something I bought arrived broken; I would like my money back."}


def refunds(*steps: tuple[str, float]) -> list[dict]:
    """An agent's turns: look each order up, then propose its refund; then answer."""
    turns = []
    for order_id, amount in steps:
        turns += [{"tool": "lookup_order", "arguments": {"order_id": order_id}},
                  {"tool": "issue_refund", "arguments": {"order_id": order_id, "amount_usd": amount, "reason": "Broken."}}]
    return [*turns, {"answer": {"resolved": True, "action": "Refunded what was due.", "reply": "Done."}}]


def scripts(cases: dict[str, list[dict]]) -> dict:
    """Per ticket id: classified as returns, the agent's turns, and a supervisor that passes everything."""
    out = []
    for ticket_id, turns in cases.items():
        match = f"ticket {ticket_id}"
        out += [
            {"match": match, "output": "TriageDecision",
             "turns": [{"answer": {"category": "returns", "urgency": "normal", "summary": "Refund asked."}}]},
            {"match": match, "output": "Resolution", "turns": turns},
            {"match": match, "output": "SupervisorVerdict", "repeat_last": True,
             "turns": [{"answer": {"passed": True, "reason": "Looks right."}}]},
        ]
    return {"scripts": out}


def add_orders(systems: SystemsOfRecord, db: Path, *orders: tuple[str, str, float]) -> None:
    systems.create(SEED)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO orders (order_id, customer_email, items, total_usd, status) VALUES (?,?,'[\"mug\"]',?,'delivered')",
            orders,
        )


async def test_a_ticket_refunds_only_its_own_customers_orders(time_env, config, systems, tmp_path: Path):
    """One of ana's tickets once refunded ben's, cy's and dee's orders, $105, each under the $50 rule."""
    turns = refunds(("O-2002", 40.0))[:2] + [
        {"tool": "issue_refund", "arguments": {"order_id": o, "amount_usd": a, "reason": "Broken."}}
        for o, a in (("O-2003", 40.0), ("O-2004", 25.0))
    ]
    config = with_scripts(config, tmp_path, scripts({"T-3911": [*turns, *refunds()]}))
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("support-triage", ticket("T-3911", ANA))
        outcome = await baton.result(run_id)
        _, report = agent_report(await baton.ledger(run_id))
        child_ledger = await baton.ledger(f"{run_id}/returns_agent")

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert systems.count("refunds") == 0
    foreign, unread, unread_too = trail_of(report, "refused", "issue_refund")
    assert "order.customer_email == context.customer_email" in foreign.detail
    assert "order.customer_email='ben@example.com'" in foreign.detail and f"context.customer_email={ANA!r}" in foreign.detail
    assert [e.data["order_id"] for e in (unread, unread_too)] == ["O-2003", "O-2004"]
    assert all("look order O-200" in e.detail and "up first (lookup_order)" in e.detail for e in (unread, unread_too))
    # Refused before anyone looked at them: no supervisor's review, no approval.
    assert not [e for e in child_ledger if e.step.endswith((".review", ".approval"))]


async def test_a_tickets_refunds_past_the_rules_total_ask_a_person(time_env, config, systems, tmp_path: Path):
    """Two $45 refunds on ana's own orders: the first is within the rule's $50 a ticket, the second is not."""
    add_orders(systems, config.systems.db, ("O-2901", ANA, 45.0), ("O-2902", ANA, 45.0))
    config = with_scripts(config, tmp_path, scripts({"T-3912": refunds(("O-2901", 45.0), ("O-2902", 45.0))}))
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("support-triage", ticket("T-3912", ANA))
        child = f"{run_id}/returns_agent"
        request = await open_request(baton, child)
        await baton.reject(child, by=SUPPORT_LEADS[0], request_id=request.id, comment="one refund is enough")
        outcome = await baton.result(run_id)
        child_ledger = await baton.ledger(child)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert rows(config.systems.db, "SELECT order_id, amount_usd FROM refunds") == [("O-2901", 45.0)]
    by_rule, by_person = [e for e in child_ledger if e.kind is StepKind.APPROVAL]
    assert (by_rule.step, by_rule.by) == ("turn-2.issue_refund.approval", "rule")
    assert by_rule.decision == {"ticket_refunds_usd": 0, "amount_usd": 45.0}
    assert (by_person.step, by_person.by, by_person.outcome) == ("turn-4.issue_refund.approval", SUPPORT_LEADS[0], "rejected")
    # The person asked saw the facts, not only the proposal: this ticket's refunds so far, the order's owner.
    assert request.step == "turn-4.issue_refund.approval"
    assert request.context["ticket_refunds_usd"] == 45.0 and request.context["amount_usd"] == 45.0
    assert request.context["order"]["customer_email"] == ANA and request.context["order"]["total_usd"] == 45.0


async def test_a_rogue_refund_does_not_block_the_orders_legitimate_one(time_env, config, systems, tmp_path: Path):
    """$10 refunded on ben's $420 order first; his own ticket's $400 still goes through, but no more than paid."""
    config = with_scripts(config, tmp_path, scripts({
        "T-3913": refunds(("O-2002", 10.0)),
        "T-3914": refunds(("O-2002", 400.0), ("O-2002", 20.0)),
    }))
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        first = await baton.start("support-triage", ticket("T-3913", BEN))
        assert (await baton.result(first)).state is RunState.COMPLETED
        second = await baton.start("support-triage", ticket("T-3914", BEN))
        child = f"{second}/returns_agent"
        request = await open_request(baton, child)
        await baton.approve(child, by=SUPPORT_LEADS[0], request_id=request.id, comment="defective")
        outcome = await baton.result(second)
        _, report = agent_report(await baton.ledger(second))

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert rows(config.systems.db, "SELECT order_id, amount_usd FROM refunds ORDER BY refunded_at, rowid") == [
        ("O-2002", 10.0), ("O-2002", 400.0),
    ]
    assert request.context["order"]["refunded_usd"] == 10.0
    (over,) = trail_of(report, "refused", "issue_refund")
    assert over.data["amount_usd"] == 20.0 and "order.total_usd" in over.detail


ORDER = Lookup(name="order", tool="lookup_order", key="order_id", changed_by=("issue_refund",))


@pytest.mark.parametrize(
    ("facts", "said"),
    [
        (dict(lookups=(ORDER,), require={"issue_refund": "order.total_usdd >= amount_usd"}),
         "'order.total_usdd', no field of lookup_order's result"),
        (dict(lookups=(ORDER,), require={"issue_refund": "ordr.total_usd >= amount_usd"}), "names 'ordr.total_usd'"),
        (dict(lookups=(Lookup(name="order", tool="issue_refund", key="order_id"),)), "no read tool"),
        (dict(lookups=(Lookup(name="order", tool="lookup_order", key="id"),)), "'id' is not an argument of lookup_order"),
        (dict(totals=(Total(name="why", tool="issue_refund", field="reason"),)), "reason is no number"),
        (dict(totals=(Total(name="amount_usd", tool="issue_refund", field="amount_usd"),),
              require={"issue_refund": "amount_usd < 5"}), "also its arguments"),
        (dict(lookups=(ORDER,), totals=(Total(name="order", tool="issue_refund", field="amount_usd"),)), "distinct"),
        (dict(require={"issue_refund": "amount_usd <"}), "expected a field or a value"),
    ],
)
def test_facts_that_could_not_work_are_refused_where_declared(facts: dict, said: str) -> None:
    with pytest.raises(ValidationError, match=said):
        Facts(**facts)


def test_a_required_rule_the_context_cannot_answer_refuses() -> None:
    """A process that hands its agent no customer cannot have the owner check pass by accident."""
    facts = Facts(lookups=(ORDER,), require={"issue_refund": "order.customer_email == context.customer_email"})
    book = FactBook(records={"order": {"O-2001": {"customer_email": ANA}}})
    refund = support_desk.RefundRequest(order_id="O-2001", amount_usd=5.0, reason="x")
    assert RunFacts(facts, {"customer_email": ANA}, book).refusal("issue_refund", refund) is None
    problem = RunFacts(facts, {}, book).refusal("issue_refund", refund)
    assert problem and "cannot be checked here" in problem and "context.customer_email" in problem
