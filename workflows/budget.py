"""The run's kill switches: what each cap has used, the checks before a step, and the extension a person may grant.

A mixin of the engine's `Process`. Every cap is checked before the step it
would pay for (steps, cost and wall clock before any step; model calls before
a model step; tool calls before a tool call), and time caps also bound every
wait for a person. A breach ends the run `budget_exceeded` naming the cap,
unless the process declares `budget_extension`: then a person is asked to
extend the cap by one more of its original allowance, and the run goes on if
they agree.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow

from workflows.approvals import ApprovalRequest, ApprovalStatus, AskPolicy
from workflows.ledger import StepKind
from workflows.outcome import BudgetExceeded
from workflows.visibility import Shown

with workflow.unsafe.imports_passed_through():
    from activities.policy import Budget, BudgetOverride

EXTENDABLE = ("max_cost_usd", "max_steps", "max_llm_calls", "max_tool_calls", "max_wall_clock")


class BudgetUsage(BaseModel):
    """What the run has consumed of each cap so far."""

    cost_usd: float
    steps: int
    llm_calls: int
    tool_calls: int
    wall_clock_s: float
    longest_approval_wait_s: float


class BudgetBreach(BaseModel):
    """What a person is asked when a cap is reached: the cap, what it allowed, and what extending gives."""

    cap: str
    used: str
    limit: str
    extend_to: str
    before_step: str


class BudgetSteps:
    """Counting and checking the caps; the engine calls these around every step."""

    budget_extension: AskPolicy | None = None  # who may extend a reached cap; None: a breach ends the run

    _by_timer = False  # the wall clock ends when its timer fires (workflows/patches.py WALL_CLOCK), not when the clock says
    _wall_clock_out = False  # that timer fired (or, for an agent, had fired in the run it continues)
    _clock_timer: asyncio.Task[None] | None = None

    def _start_budget(self, budget: Budget, override: BudgetOverride | None, *, by_timer: bool) -> None:
        """`by_timer`: the run holds patches.WALL_CLOCK (before any local activity)."""
        self._budget, clamped = budget.tightened(override)
        self._allowance = self._budget  # what each extension adds: the run's own first allowance
        self._started = self._started or workflow.now()
        self._by_timer = by_timer
        if not self._wall_clock_out:
            self._arm_wall_clock()
        for note in clamped:
            self._record(step="budget", kind=StepKind.BUDGET, name="override", started_at=workflow.now(),
                         outcome="clamped", detail=f"the run's budget override was clamped: {note}")

    def usage(self) -> BudgetUsage:
        return BudgetUsage(
            cost_usd=round(self._cost, 6), steps=self._steps_taken(), llm_calls=self._llm_calls,
            tool_calls=self._tool_calls, wall_clock_s=round(self._elapsed().total_seconds(), 3),
            longest_approval_wait_s=self._longest_wait_s,
        )

    def _time_left(self) -> timedelta | None:
        """What the wall clock still allows one activity, retries included; None when uncapped."""
        cap = self._budget.max_wall_clock
        return None if cap is None else max(cap - self._elapsed(), timedelta(seconds=1))

    def _wall_clock_spent(self) -> bool:
        """Whether max_wall_clock has run out: its timer fired, or (runs before the timer) the clock says so."""
        cap = self._budget.max_wall_clock if self._budget else None
        if cap is None:
            return False
        return self._wall_clock_out if self._by_timer else self._elapsed() >= cap

    def _wall_clock_left(self, cap: timedelta) -> timedelta:
        """What the wall clock leaves a wait: nothing once its timer fired; until then at least the second the
        timer is never short of, so whether the wait ends at once is the timer's to say, not the clock's."""
        if not self._by_timer:
            return cap - self._elapsed()
        return timedelta(0) if self._wall_clock_out else max(cap - self._elapsed(), timedelta(seconds=1))

    def _arm_wall_clock(self) -> None:
        """Start the timer that ends max_wall_clock, for what the cap has left.

        At least a second, whatever the clock says, so whether the timer starts never
        depends on which clock a task read: only its duration does, which replay
        does not compare. Re-armed when an extension raises the cap.
        """
        cap = self._budget.max_wall_clock
        if not self._by_timer or cap is None:
            return
        if self._clock_timer is not None:
            self._clock_timer.cancel()
        self._wall_clock_out = False
        left = max(cap - self._elapsed(), timedelta(seconds=1))
        self._clock_timer = asyncio.create_task(self._wall_clock_runs_out(left, cap))

    async def _wall_clock_runs_out(self, left: timedelta, cap: timedelta) -> None:
        await workflow.sleep(left, summary=Shown(f"max_wall_clock: {span(cap)} from the run's start"))
        self._wall_clock_out = True

    def _elapsed(self) -> timedelta:
        return workflow.now() - self._started if self._started else timedelta(0)

    async def _before_step(self, step: str, *, llm: bool = False, tool: bool = False) -> datetime:
        """Check every cap this step could breach (asking for an extension if declared); returns its start."""
        while breach := self._breach(step, llm=llm, tool=tool):
            cap, used, limit = breach
            if cap not in EXTENDABLE or self.budget_extension is None or not await self._extended(step, cap, used, limit):
                raise BudgetExceeded(cap, f"{cap}: {used} used, limit {limit}; stopped before {step}")
        self._current_step = step
        self._publish()
        return workflow.now()

    def _breach(self, step: str, *, llm: bool, tool: bool) -> tuple[str, str, str] | None:
        b = self._budget
        if self._steps_taken() >= b.max_steps:
            return "max_steps", f"{self._steps_taken()} steps", f"{b.max_steps}"
        if self._cost >= b.max_cost_usd:
            return "max_cost_usd", f"${self._cost:.6f}", f"${b.max_cost_usd}"
        if self._wall_clock_spent():
            return "max_wall_clock", f"{span(self._elapsed())}", f"{span(b.max_wall_clock)}"
        if llm and b.max_llm_calls is not None and self._llm_calls >= b.max_llm_calls:
            return "max_llm_calls", f"{self._llm_calls} model calls", f"{b.max_llm_calls}"
        if tool and b.max_tool_calls is not None and self._tool_calls >= b.max_tool_calls:
            return "max_tool_calls", f"{self._tool_calls} tool calls", f"{b.max_tool_calls}"
        return None

    async def _extended(self, step: str, cap: str, used: str, limit: str) -> bool:
        """Ask the process's extension approvers to raise `cap` by its first allowance; True if they did."""
        raised = getattr(self._budget, cap) + getattr(self._allowance, cap)
        shown = span(raised) if isinstance(raised, timedelta) else f"${raised:.6g}" if cap == "max_cost_usd" else str(raised)
        breach = BudgetBreach(cap=cap, used=used, limit=limit, extend_to=shown, before_step=step)
        asked = sum(1 for e in self._ledger if e.kind is StepKind.BUDGET and e.name == cap) + 1
        request_id = f"budget.{cap}" + (f".{asked}" if asked > 1 else "")
        started = workflow.now()
        request = ApprovalRequest(
            id=request_id, step=step, ask=f"The run reached {cap} ({used} of {limit}) before {step}. Extend it to {shown}?",
            proposed=f"raise {cap} to {shown}", roles=self.budget_extension.roles, context=breach.model_dump(mode="json"),
            cost_so_far_usd=round(self._cost, 6), requested_at=started, deadline=started + self.budget_extension.timeout,
        )
        self._desk.ask(request, self._eligible(self.budget_extension), self.budget_extension.roles_asked())
        result = await self._wait_through_stages(request, self.budget_extension, capped=False)
        self._close_request(request.id)
        approved = result.status is ApprovalStatus.APPROVED
        self._record(
            step=request_id, kind=StepKind.BUDGET, name=cap, started_at=started,
            outcome="extended" if approved else result.status.value, by=result.by, comment=result.comment,
            detail=f"{cap} raised from {limit} to {shown}" if approved else f"{cap} not extended; the run stops",
            decision={**breach.model_dump(mode="json"), **result.model_dump(mode="json")},
        )
        if approved:
            self._budget = self._budget.model_copy(update={cap: raised})
            if cap == "max_wall_clock":
                self._arm_wall_clock()
        return approved

    def _wait_cap(self, requested_at: datetime) -> tuple[timedelta, str] | None:
        """The time left before a time cap stops a wait for a person begun at `requested_at`, and which cap."""
        b, now = self._budget, workflow.now()
        limits = []
        if b.max_approval_idle is not None:
            limits.append((b.max_approval_idle - (now - requested_at), "max_approval_idle"))
        if b.max_wall_clock is not None:
            limits.append((self._wall_clock_left(b.max_wall_clock), "max_wall_clock"))
        return min(limits, key=lambda x: x[0]) if limits else None


def calls_and_clock(budget: Budget, usage: BudgetUsage) -> list[str]:
    """What the count and time caps have used, of what they allow (uncapped ones: what was used)."""
    def of(limit: object) -> str:
        return "" if limit is None else f" of {span(limit) if isinstance(limit, timedelta) else limit}"

    return [
        f"{usage.llm_calls}{of(budget.max_llm_calls)} model calls",
        f"{usage.tool_calls}{of(budget.max_tool_calls)} tool calls",
        f"{span(timedelta(seconds=usage.wall_clock_s))}{of(budget.max_wall_clock)} wall clock",
    ]


def span(t: timedelta) -> str:
    """A duration as people read it: 1d 02:03:04, or 02:03:04."""
    seconds = int(t.total_seconds())
    days, rest = divmod(seconds, 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock
