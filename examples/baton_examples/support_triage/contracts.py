"""What a triage run takes, what its classifier and agents answer, what a support lead sees and what it returns."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, EmailStr, Field

from workflows.api import SUBJECT, BudgetOverride


class Category(StrEnum):
    RETURNS = "returns"
    TECHNICAL = "technical"
    BILLING = "billing"


class TriageDecision(BaseModel):
    category: Category
    urgency: Literal["low", "normal", "high"]
    summary: str = Field(min_length=1, max_length=300, examples=["The customer asks for help."])


class Resolution(BaseModel):
    """What every support agent answers with."""

    resolved: bool
    action: str = Field(min_length=1, max_length=300, examples=["Looked into the request."])
    reply: str = Field(min_length=1, max_length=2000, examples=["Thank you for writing to us; we are on it."])


class Ticket(BaseModel):
    """A customer's request, as the agents see it."""

    ticket_id: str = Field(min_length=1, max_length=40)
    customer_email: EmailStr = Field(json_schema_extra=SUBJECT)
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=5000)
    order_id: str | None = Field(default=None, max_length=40)


class SupportRequest(Ticket):
    """The input of a triage run."""

    budget: BudgetOverride | None = None

    def business_key(self) -> str:
        return self.ticket_id


class Escalation(BaseModel):
    """What the support lead who takes over sees."""

    ticket: Ticket
    agent: str
    cap: str | None
    reason: str
    trail: list[str]


class Triaged(BaseModel):
    """The process's own result, whatever the end state."""

    ticket_id: str
    category: Category | None = None
    agent: str | None = None
    agent_status: str | None = None
    resolution: Resolution | None = None
    escalation: Escalation | None = None
    taken_over_by: str | None = None
