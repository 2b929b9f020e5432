"""A run's live status, answered by the `status` query."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow

from workflows.approvals import ApprovalRequest
from workflows.budget import BudgetUsage
from workflows.outcome import RunState

with workflow.unsafe.imports_passed_through():
    from activities.identity import Verified
    from activities.policy import Budget


class RunStatus(BaseModel):
    process: str
    state: RunState
    current_step: str | None
    steps: int
    cost_usd: float
    budget: Budget | None
    usage: BudgetUsage | None = None  # what each cap has used so far
    open_requests: list[ApprovalRequest]
    reason: str | None = None
    started_by: Verified | None = None  # who started the run, as their token proved (None: not attributed)
    refused_signals: int = 0  # approve/reject signals refused, recorded in the ledger or only counted
