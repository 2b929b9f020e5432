"""The tool registry: every tool's name, typed arguments, result and declared effect.

Workflows import this to know, before scheduling, what a tool may do: `read`
tools only look; `write` tools change a system of record and must carry an
idempotency key; `irreversible` tools reach the outside world (an e-mail
cannot be unsent) and carry one too.

A write's key is per run step (`run_step_key`: workflow id and step), which
makes a retry safe. What must hold across calls and runs (an order's refunds
never exceed what was paid) is the system of record's to enforce, in the same
transaction as the write: a key per business object would let the first call,
rogue or not, stand for every later one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from activities.tools import records


class Effect(StrEnum):
    READ = "read"
    WRITE = "write"
    IRREVERSIBLE = "irreversible"


@dataclass(frozen=True)
class ToolSpec:
    name: str
    effect: Effect
    args: type[BaseModel]
    result: type[BaseModel]
    description: str

    @property
    def needs_idempotency_key(self) -> bool:
        return self.effect is not Effect.READ

    def idempotency_key(self, run_step_key: str) -> str | None:
        """The key a call carries: none to read, else its run step's (what must hold across calls, the system enforces)."""
        return run_step_key if self.needs_idempotency_key else None


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "verify_identity",
            Effect.READ,
            records.IdentityQuery,
            records.IdentityCheck,
            "Match an applicant's name and document against the KYC register.",
        ),
        ToolSpec(
            "pull_credit",
            Effect.READ,
            records.CreditQuery,
            records.CreditReport,
            "Read the applicant's credit score and open defaults.",
        ),
        ToolSpec(
            "create_crm_record",
            Effect.WRITE,
            records.NewCustomer,
            records.CrmRecord,
            "Create the customer in the CRM.",
        ),
        ToolSpec(
            "send_email",
            Effect.IRREVERSIBLE,
            records.Email,
            records.OutboxMessage,
            "Queue an e-mail in the outbox for delivery.",
        ),
        ToolSpec(
            "lookup_order",
            Effect.READ,
            records.OrderQuery,
            records.Order,
            "Read an order's customer, items, total, delivery status, refunds so far and the customer's note.",
        ),
        ToolSpec(
            "issue_refund",
            Effect.IRREVERSIBLE,
            records.RefundRequest,
            records.RefundReceipt,
            "Pay a refund on an order; all refunds of an order together never exceed what was paid.",
        ),
        ToolSpec(
            "search_kb",
            Effect.READ,
            records.KbQuery,
            records.KbResults,
            "Search the help-center knowledge base and return up to three matching articles.",
        ),
        ToolSpec(
            "open_ticket",
            Effect.WRITE,
            records.NewTicket,
            records.TicketRef,
            "Open a support ticket for a customer so a person follows up.",
        ),
        ToolSpec(
            "lookup_invoices",
            Effect.READ,
            records.InvoiceQuery,
            records.Invoices,
            "List a customer's invoices with their status and how many times each was charged.",
        ),
        ToolSpec(
            "read_crm_notes",
            Effect.READ,
            records.DealQuery,
            records.DealNotes,
            "Read a sales deal's company, contact, rep, demo date, stage and the rep's notes.",
        ),
        ToolSpec(
            "update_crm_deal",
            Effect.WRITE,
            records.DealUpdate,
            records.DealActivity,
            "Log the agreed next step, meeting time and follow-up e-mail on a sales deal.",
        ),
    )
}
