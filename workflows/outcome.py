"""How a run ends (or stands): one typed state, a reason a person can read."""

from __future__ import annotations

from enum import StrEnum
from typing import Generic, TypeVar

from pydantic import BaseModel


class RunState(StrEnum):
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    ESCALATED = "escalated"
    BUDGET_EXCEEDED = "budget_exceeded"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self not in (RunState.RUNNING, RunState.AWAITING_APPROVAL)

    @property
    def fails_in_temporal(self) -> bool:
        """Ends Temporal records as Failed: the run did not do what it was for. The business ends a
        process designs (completed, rejected, escalated to a person) are Completed."""
        return self in (RunState.FAILED, RunState.BUDGET_EXCEEDED, RunState.TIMED_OUT)


ResultT = TypeVar("ResultT")


class RunOutcome(BaseModel, Generic[ResultT]):
    """What a process returns: the end state, why, and the process's own typed result."""

    process: str
    state: RunState
    reason: str
    result: ResultT | None = None
    cost_usd: float
    steps: int
    cap: str | None = None  # the budget cap that ended the run, when one did


class StopRun(Exception):
    """Raised inside a run to end it with a typed state (budget breach, failed step)."""

    cap: str | None = None

    def __init__(self, state: RunState, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


class BudgetExceeded(StopRun):
    """A kill switch fired: `cap` names it (max_cost_usd, max_steps, max_llm_calls, ...)."""

    def __init__(self, cap: str, reason: str) -> None:
        super().__init__(RunState.BUDGET_EXCEEDED, reason)
        self.cap = cap


class ModelOutputInvalid(StopRun):
    """A model step never gave a valid answer, repairs included.

    A process may catch it to route the step elsewhere (to a person, say);
    uncaught, it ends the run as `failed`.
    """

    def __init__(self, step: str, problem: str) -> None:
        super().__init__(RunState.FAILED, f"step {step} failed: {problem}")
        self.step = step
        self.problem = problem


class ToolRefused(StopRun):
    """The engine refused a tool call (not granted, or an argument out of bounds) before sending it."""

    def __init__(self, step: str, problem: str) -> None:
        super().__init__(RunState.FAILED, f"step {step} refused: {problem}")
        self.step = step
        self.problem = problem


class PersonalDataRefused(StopRun):
    """A model step's prompt carries personal data it may not send: undeclared, or no model may receive it.

    Raised before any request goes out; `problem` names the step, the fields or
    the tier, never the data.
    """

    def __init__(self, step: str, problem: str) -> None:
        super().__init__(RunState.FAILED, f"step {step} refused: {problem}")
        self.step = step
        self.problem = problem
