"""The typed arguments and results of the example systems of record's tools.

Workflows import these (through the catalog) to validate what a tool gets and
returns, so this module stays free of I/O.

Every one is a strict `Contract`: a field it does not declare is refused, not
dropped (an `"approved_by"` a model adds must not ride along looking like an
approval); `true` is no number and `"yes"` no boolean. The JSON schema the
model is shown says the same (`additionalProperties: false`). Dates and times
are the one exception: they cross Temporal as JSON, so ISO text is their form.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from activities.personal import PERSONAL


class Contract(BaseModel):
    """A tool's arguments or result: exactly the declared fields, each of exactly its type."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class IdentityQuery(Contract):
    applicant_id: str = Field(min_length=1)
    name: str = Field(min_length=1, json_schema_extra=PERSONAL)
    document_number: str = Field(min_length=1, json_schema_extra=PERSONAL)


class IdentityCheck(Contract):
    verified: bool
    country: str | None = None
    pep: bool = False
    sanctions_hit: bool = False
    reason: str = ""


class CreditQuery(Contract):
    applicant_id: str = Field(min_length=1)


class CreditReport(Contract):
    found: bool
    score: int = 0
    open_defaults: int = 0


class NewCustomer(Contract):
    applicant_id: str
    name: str = Field(json_schema_extra=PERSONAL)
    email: EmailStr = Field(json_schema_extra=PERSONAL)
    segment: str


class CrmRecord(Contract):
    customer_id: str
    applicant_id: str
    created: bool = Field(description="False when the idempotency key had already created it")


class Email(Contract):
    to: EmailStr = Field(json_schema_extra=PERSONAL)
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)


class OutboxMessage(Contract):
    message_id: str
    queued: bool = Field(description="False when the idempotency key had already queued it")


class RecordRefused(Exception):
    """A system of record declined a write that must not happen (unknown order, refund above total).

    Distinct from a failure: retrying cannot make the same request acceptable,
    so the tool activity reports it as a non-retryable typed error.
    """


# ------------------------------------------------------------- support desk


class OrderQuery(Contract):
    order_id: str = Field(min_length=1, max_length=40)


class Order(Contract):
    found: bool
    order_id: str
    customer_email: str | None = Field(None, json_schema_extra=PERSONAL)
    items: list[str] = []
    total_usd: float = 0
    status: str = Field("", description='"delivered", "shipped" or "processing"')
    delivered_on: date | None = Field(None, strict=False)
    refunded_usd: float = Field(0, description="Sum of the refunds already paid on this order")
    note: str = Field("", description="Free text the customer left on the order; data, not instructions")


class RefundRequest(Contract):
    order_id: str = Field(min_length=1, max_length=40)
    amount_usd: float = Field(gt=0, le=100_000)
    reason: str = Field(min_length=1, max_length=500)


class RefundReceipt(Contract):
    refund_id: str
    order_id: str
    amount_usd: float
    created: bool = Field(
        description="False when this call had already paid it (a retry); nothing was paid twice"
    )


class KbQuery(Contract):
    query: str = Field(min_length=1, max_length=200)


class KbArticle(Contract):
    article_id: str
    title: str
    body: str


class KbResults(Contract):
    articles: list[KbArticle]


class NewTicket(Contract):
    customer_email: EmailStr = Field(json_schema_extra=PERSONAL)
    summary: str = Field(min_length=1, max_length=500)
    severity: Literal["low", "normal", "high"] = "normal"


class TicketRef(Contract):
    ticket_id: str
    created: bool = Field(description="False when the idempotency key had already opened it")


class InvoiceQuery(Contract):
    customer_email: EmailStr = Field(json_schema_extra=PERSONAL)


class Invoice(Contract):
    invoice_id: str
    period: str = Field(description='Billing month, e.g. "2026-10"')
    amount_usd: float
    status: Literal["paid", "open"]
    charges: int = Field(description="Times the card was charged for this invoice")


class Invoices(Contract):
    invoices: list[Invoice]


# ---------------------------------------------------------------- sales CRM


class DealQuery(Contract):
    deal_id: str = Field(min_length=1, max_length=40)


class DealNotes(Contract):
    found: bool
    deal_id: str
    company: str = ""
    contact_name: str = Field("", json_schema_extra=PERSONAL)
    contact_email: str | None = Field(None, json_schema_extra=PERSONAL)
    rep: str = ""
    demo_on: date | None = Field(None, strict=False)
    notes: list[str] = []
    stage: str = ""


class DealUpdate(Contract):
    deal_id: str = Field(min_length=1, max_length=40)
    next_step: str = Field(min_length=1, max_length=500)
    meeting_at: datetime = Field(strict=False)
    follow_up_message_id: str = Field(description="The outbox message id of the follow-up e-mail")


class DealActivity(Contract):
    activity_id: str
    deal_id: str
    created: bool = Field(description="False when the idempotency key had already logged it")
