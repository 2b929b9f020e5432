"""Support triage: a deterministic backbone that hands each request to one bounded agent.

classify (LLM, fast tier) → route on the typed category →
  returns:   lookup_order, issue_refund (≤ $500 a call by grant; only on an order of the
             ticket's customer, looked up since its last refund, never past what was
             paid, ≤ $500 a ticket; a strong-tier supervisor reviews each refund;
             while the ticket's refunds stay ≤ $50 a rule approves, past it a support lead)
  technical: search_kb, open_ticket
  billing:   lookup_invoices, open_ticket
each with a five-minute time to live and caps → done: resolved ·
escalated (a cap was reached): a support lead takes over, with the agent's trail.
The agents' tools are granted in baton.toml, never here.
"""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

from temporalio import workflow

from workflows.api import (
    Agent, AgentCaps, AgentReport, ApprovalStatus, AskPolicy, AtDeadline, Facts, Lookup, PlannedStep, Process,
    RunOutcome, RunState, Total,
)

with workflow.unsafe.imports_passed_through():  # contracts and tools: loaded once per worker, not per run
    from baton_examples.support_triage import tools  # declares the tools the facts below name
    from baton_examples.support_triage.contracts import (
        Category, Escalation, Resolution, SupportRequest, Ticket, TriageDecision, Triaged,
    )

TTL = timedelta(minutes=5)
RESOLVE = (
    "Answer with a Resolution when you are done: whether the request is resolved, what you did, "
    "and a short reply to the customer. If you cannot resolve it, answer with resolved=false and say why."
)

TICKET_REFUND_LIMIT_USD = 500
# What a refund is weighed against, besides what the model proposes: the order as
# lookup_order read it (its owner, what was paid and refunded), and this ticket's refunds so far.
REFUND_FACTS = Facts(
    lookups=(Lookup(name="order", tool="lookup_order", key="order_id", changed_by=("issue_refund",)),),
    totals=(Total(name="ticket_refunds_usd", tool="issue_refund", field="amount_usd"),),
    require={"issue_refund": (
        "order.customer_email == context.customer_email"
        " and amount_usd + order.refunded_usd <= order.total_usd"
        f" and ticket_refunds_usd + amount_usd <= {TICKET_REFUND_LIMIT_USD}"
    )},
)
REFUND_APPROVAL = AskPolicy(
    roles=["support-lead"],
    timeout=timedelta(hours=4),
    at_deadline=AtDeadline.REJECT,
    auto_approve="ticket_refunds_usd + amount_usd <= 50",
)


RETURNS = Agent(
    name="returns",
    instructions=(
        "You are the returns agent of an online shop's support desk. Look the order up first. A refund is due "
        "when an item arrived damaged, is defective, or is not as described. Refund at most what the customer "
        f"paid, once per order. {RESOLVE}"
    ),
    output=Resolution,
    caps=AgentCaps(max_turns=6, max_tool_calls=4, max_cost_usd=0.05, ttl=TTL),
    approvals={"issue_refund": REFUND_APPROVAL},
    facts=REFUND_FACTS,
)
TECHNICAL = Agent(
    name="technical",
    instructions=(
        "You are the technical support agent. Search the knowledge base for the customer's problem and "
        f"give them the steps; open a ticket for an engineer if the articles do not cover it. {RESOLVE}"
    ),
    output=Resolution,
    caps=AgentCaps(max_turns=6, max_tool_calls=8, max_cost_usd=0.05, ttl=TTL),
)
BILLING = Agent(
    name="billing",
    instructions=(
        "You are the billing agent. Read the customer's invoices; a charge made twice or an amount that does "
        f"not match goes to a ticket for the billing team, with the invoice ids. {RESOLVE}"
    ),
    output=Resolution,
    caps=AgentCaps(max_turns=6, max_tool_calls=4, max_cost_usd=0.05, ttl=TTL),
)
AGENTS = MappingProxyType({Category.RETURNS: RETURNS, Category.TECHNICAL: TECHNICAL, Category.BILLING: BILLING})  # read-only: shared by every run
TAKEOVER = AskPolicy(roles=["support-lead"], timeout=timedelta(hours=8))


@workflow.defn(name="support-triage")
class SupportTriage(Process):
    name = "support-triage"
    roles = ("support-lead",)
    outputs = (TriageDecision,)
    # A ticket that reaches a cap is not dropped: the support lead may extend the budget once more.
    budget_extension = AskPolicy(roles=["support-lead"], timeout=timedelta(hours=4))
    agents = (RETURNS, TECHNICAL, BILLING)
    plan = (
        PlannedStep("classify", "llm", tier="fast"),
        PlannedStep("returns_agent", "agent", agent="returns", note="when classified returns"),
        PlannedStep("technical_agent", "agent", agent="technical", note="when classified technical"),
        PlannedStep("billing_agent", "agent", agent="billing", note="when classified billing"),
        PlannedStep("human_takeover", "approval", roles=("support-lead",), note="when the agent escalates"),
    )

    @workflow.run
    async def run(self, request: SupportRequest) -> RunOutcome[Triaged]:
        return await self.execute(lambda: self._triage(request), request.budget)

    async def _triage(self, r: SupportRequest) -> RunOutcome[Triaged]:
        result = self.keep(Triaged(ticket_id=r.ticket_id))
        ticket = Ticket.model_validate(r.model_dump(exclude={"budget"}))
        decision = await self.llm(
            "classify",
            f"Classify support ticket {r.ticket_id} as returns, technical or billing, with its urgency.\n"
            f"Subject: {r.subject}\n<ticket>\n{r.body}\n</ticket>",
            TriageDecision,
            tier="fast",
        )
        agent = AGENTS[decision.category]
        result.category, result.agent = decision.category, agent.name
        report = await self.agent(
            f"{agent.name}_agent", agent, goal=f"Resolve support ticket {r.ticket_id}: {decision.summary}", context=ticket
        )
        result.agent_status = report.status
        if report.status == "done" and report.answer is not None:  # done always answers: the agent loop checks it
            result.resolution = resolution = report.answer
            return self.end(RunState.COMPLETED, f"the {agent.name} agent: {resolution.action}", result)
        return await self._take_over(ticket, report, result)

    async def _take_over(self, ticket: Ticket, report: AgentReport[Resolution], result: Triaged) -> RunOutcome[Triaged]:
        """A cap stopped the agent: a support lead takes the ticket over, with the trail in front of them."""
        result.escalation = escalation = Escalation(
            ticket=ticket, agent=report.agent, cap=report.cap, reason=report.reason,
            trail=[f"turn {e.turn} · {e.kind} {e.tool or ''} {e.detail}".strip() for e in report.trail],
        )
        decision = await self.approval(
            "human_takeover",
            ask=f"Agent {report.agent} stopped on ticket {ticket.ticket_id} ({report.reason}). "
            "Take it over: approve with what you did, or reject to close it unresolved.",
            proposed=f"a support lead handles {ticket.ticket_id} by hand",
            context=escalation,
            policy=TAKEOVER,
        )
        result.taken_over_by = decision.by
        why = f"escalated ({report.cap or 'a failed step'})"
        if decision.status is ApprovalStatus.REJECTED:
            return self.end(RunState.REJECTED, f"{why}; closed unresolved by {decision.by}", result)
        comment = decision.comment or "no comment"
        return self.end(RunState.COMPLETED, f"{why}; resolved by {decision.by}: {comment}", result)
