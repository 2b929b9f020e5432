"""What an onboarding run takes, what its model step answers, what its rules see and what it returns."""

from __future__ import annotations

from pydantic import BaseModel, EmailStr, Field

from baton_examples.onboarding.kyc import KycResult, KycVerdict
from workflows.api import PERSONAL, SUBJECT, BudgetOverride


class Applicant(BaseModel):
    """The input of an onboarding run."""

    applicant_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200, json_schema_extra=PERSONAL)
    email: EmailStr = Field(json_schema_extra=SUBJECT)
    document_number: str = Field(min_length=1, max_length=64, json_schema_extra=PERSONAL)
    budget: BudgetOverride | None = None

    def business_key(self) -> str:
        return self.applicant_id


class WelcomeEmail(BaseModel):
    subject: str = Field(min_length=1, max_length=200, examples=["Welcome aboard"])
    body: str = Field(min_length=1, max_length=4000)


class SendFacts(BaseModel):
    """What the confirmation's approval rule looks at."""

    verdict: KycVerdict
    reviewed_by: str | None


class Onboarded(BaseModel):
    """The process's own result, whatever the end state."""

    applicant_id: str
    kyc: KycResult | None = None
    reviewed_by: str | None = None
    customer_id: str | None = None
    confirmation_id: str | None = None
