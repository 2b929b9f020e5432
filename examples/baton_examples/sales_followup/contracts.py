"""What a follow-up run takes, what its model steps answer, what the sales manager sees and what it returns."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from workflows.api import PERSONAL, BudgetOverride


class FollowUpRequest(BaseModel):
    """The input of a follow-up run."""

    deal_id: str = Field(min_length=1, max_length=40)
    budget: BudgetOverride | None = None

    def business_key(self) -> str:
        return self.deal_id


class BuyerSignals(BaseModel):
    interest: Literal["high", "medium", "low"]
    signals: list[str] = Field(min_length=1, max_length=6, examples=[["Asked about the next steps"]])
    objections: list[str] = Field(default=[], max_length=6)
    next_step: str = Field(min_length=1, max_length=200, examples=["A follow-up call"])


class FollowUpDraft(BaseModel):
    subject: str = Field(min_length=1, max_length=150, examples=["Following up on our demo"])
    body: str = Field(min_length=1, max_length=3000)


class RunClock(BaseModel):
    """The run's own time (`workflow.now()`) handed to a rule, which may not read a clock itself."""

    now: datetime


class MeetingSlot(BaseModel):
    starts_at: datetime
    why: str


class DraftForReview(BaseModel):
    """What the sales manager sees before anything is sent."""

    to: str = Field(json_schema_extra=PERSONAL)
    subject: str
    body: str
    meeting: datetime
    interest: str


class FollowedUp(BaseModel):
    """The process's own result, whatever the end state."""

    deal_id: str
    signals: BuyerSignals | None = None
    meeting: MeetingSlot | None = None
    message_id: str | None = None
    activity_id: str | None = None
