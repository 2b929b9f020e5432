"""Human approval as a designed step: the request, the decision, the result."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class ApprovalRequest(BaseModel):
    """One open question to a person: stable id, what is asked, by when."""

    id: str
    step: str
    ask: str
    approvers: list[str] = Field(description="roles that may decide")
    context: dict
    cost_so_far_usd: float
    requested_at: datetime
    deadline: datetime


class Decision(BaseModel):
    """The payload of the `approve` / `reject` signals (plain `temporal workflow signal`)."""

    by: str = Field(min_length=1)
    request_id: str | None = Field(
        default=None, description="may be left out when exactly one request is open"
    )
    comment: str = ""


class Verdict(Decision):
    """The payload of the `decide` update: a decision and which way it goes."""

    approved: bool


class ApprovalStatus(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


class ApprovalResult(BaseModel):
    request_id: str
    status: ApprovalStatus
    by: str | None = None
    comment: str = ""
    decided_at: datetime
