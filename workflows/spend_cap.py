"""What a run does when its process's cap across runs refuses a model request: wait, ask, or end.

A mixin of the engine's model steps. The model activity reserves each request
under the cap (activities/spend.py); refused, nothing is sent and the run is
handed the window as the entity counted it. The process declares the answer:

- `end` (the default): the run ends budget_exceeded, its cap `across_runs`;
- `wait`: the run parks on a timer until the window ends, then asks again;
- `ask`: a person (`spend_cap_approval`) may let the step go over the cap.

A refused request is the step's ledger entry (`refused`, the window as its
decision); a wait is an entry of kind `budget` (`waited`); a person's decision
is the approval step's.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import ClassVar

from temporalio import workflow

from workflows.approvals import ApprovalStatus, AskPolicy
from workflows.budget import span
from workflows.ledger import StepKind
from workflows.outcome import BudgetExceeded
from workflows.visibility import Shown

with workflow.unsafe.imports_passed_through():
    from activities.spend import SpendRefusal

CAP = "across_runs"


class OnSpendCap(StrEnum):
    WAIT = "wait"
    ASK = "ask"
    END = "end"


class CapRefused(Exception):
    """A model request was refused under the cap across runs (raised inside the model step, never out of it)."""

    def __init__(self, refusal: SpendRefusal) -> None:
        super().__init__(refusal.reason())
        self.refusal = refusal


class SpendCapSteps:
    on_spend_cap: ClassVar[OnSpendCap] = OnSpendCap.END  # what a run does when its process's cap refuses a request
    spend_cap_approval: ClassVar[AskPolicy | None] = None  # with `ask`: who may let a step go over the cap

    async def _over_cap(self, step: str, refusal: SpendRefusal) -> bool:
        """Wait, ask or end as the process declares; True when a person let the step go over the cap."""
        how = OnSpendCap(self.on_spend_cap)
        reason = refusal.reason()  # the step's ledger entry, `refused`, says it too
        if refusal.never_fits:
            raise BudgetExceeded(CAP, f"{reason}, more than the whole cap; stopped at {step}")
        if how is OnSpendCap.WAIT:
            await self._wait_for_window(step, refusal)
            return False
        if how is OnSpendCap.ASK and self.spend_cap_approval is not None:
            return await self._ask_over_cap(step, refusal)
        raise BudgetExceeded(CAP, f"{reason}; stopped at {step}")

    async def _wait_for_window(self, step: str, refusal: SpendRefusal) -> None:
        """Park on a timer until the window ends (never past the run's wall clock), then the step asks again."""
        started = workflow.now()
        wait = max(refusal.window.end - started, timedelta(seconds=1))
        left = self._time_left()
        if left is not None and left < wait:
            wait = left  # the wall clock then ends the run at the next check
        self._current_step = f"{step} (waiting for the spend cap's next window)"
        self._publish(settle=True)
        await workflow.sleep(wait, summary=Shown(
            f"{step}: {refusal.process}'s spend cap across runs (${refusal.cap_usd:g} per "
            f"{span(refusal.window_length)}) is full until {refusal.window.end:%Y-%m-%d %H:%M:%S} UTC; waiting"
        ))
        self._record(step=f"{step}.spend_cap", kind=StepKind.BUDGET, name=CAP, started_at=started, outcome="waited",
                     detail=f"waited for the window ending {refusal.window.end:%Y-%m-%d %H:%M:%S} UTC")

    async def _ask_over_cap(self, step: str, refusal: SpendRefusal) -> bool:
        asked = sum(1 for e in self._ledger if e.kind is StepKind.APPROVAL and e.step.startswith(f"{step}.over_cap"))
        result = await self.approval(
            f"{step}.over_cap" + (f".{asked + 1}" if asked else ""),
            ask=f"{refusal.reason()}. Let {step} go over the cap?",
            proposed=f"go over {refusal.process}'s cap across runs by up to ${refusal.asked_usd:.6f} per request",
            context=refusal, policy=self.spend_cap_approval,
        )
        if result.status is not ApprovalStatus.APPROVED:
            raise BudgetExceeded(CAP, f"{refusal.reason()}; going over was {result.status.value}; stopped at {step}")
        return True
