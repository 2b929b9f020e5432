"""The typed arguments and results of the example systems of record's tools."""

from __future__ import annotations

from pydantic import BaseModel, EmailStr, Field


class IdentityQuery(BaseModel):
    applicant_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    document_number: str = Field(min_length=1)


class IdentityCheck(BaseModel):
    verified: bool
    country: str | None = None
    pep: bool = False
    sanctions_hit: bool = False
    reason: str = ""


class CreditQuery(BaseModel):
    applicant_id: str = Field(min_length=1)


class CreditReport(BaseModel):
    found: bool
    score: int = 0
    open_defaults: int = 0


class NewCustomer(BaseModel):
    applicant_id: str
    name: str
    email: EmailStr
    segment: str


class CrmRecord(BaseModel):
    customer_id: str
    applicant_id: str
    created: bool = Field(description="False when the idempotency key had already created it")


class Email(BaseModel):
    to: EmailStr
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)


class OutboxMessage(BaseModel):
    message_id: str
    queued: bool = Field(description="False when the idempotency key had already queued it")
