"""An agent's ttl: its own working time, people's waits excluded, ended by a timer.

A mixin of the bounded agent (workflows/bounded_agent.py), as budget.py is of
the engine. Runs holding workflows/patches.py TTL decide the ttl by a timer for
the working time left, paused while a person is asked: a task's code may run on
the previous task's clock (a query racing the event that woke it), so no
decision compares `workflow.now()`. Runs started before compare the clock as
they ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

from workflows.agents import AgentDeclaration, AgentProgress
from workflows.budget import span
from workflows.ledger import LedgerEntry
from workflows.visibility import Shown


class CapReached(Exception):
    """One of the agent's caps stopped it: its step ends `escalated`, with the trail."""

    def __init__(self, cap: str, reason: str) -> None:
        super().__init__(reason)
        self.cap = cap
        self.reason = reason


class WorkingTime:
    """The ttl's timer, its pauses for people, and the wait of each turn within it."""

    name: str
    _declared: AgentDeclaration
    _p: AgentProgress
    _ledger: list[LedgerEntry]
    _ttl_by_timer = False  # the run holds patches.TTL
    _ttl_out = False  # the ttl's timer fired (in this run, or the one it continues)
    _ttl_timer: asyncio.Task[None] | None = None

    async def _within_ttl(self, work: Coroutine[Any, Any, Any], what: str) -> Any:
        """Await `work` within the agent's remaining working time; past it, cancel `work` and stop.

        A cancelled activity surfaces inside `work` as a failed step; what `work`
        recorded on its way out is relabelled `cancelled` rather than left as an error.
        """
        ttl = self._declared.caps.ttl
        if self._ttl_out if self._ttl_by_timer else self._ttl_left_s() <= 0:
            work.close()
            raise CapReached("ttl", f"ttl: {ttl} of working time used up before {what}")
        ledger_mark, trail_mark = len(self._ledger), len(self._p.trail)
        task = asyncio.ensure_future(work)
        if self._ttl_by_timer:
            await workflow.wait_condition(lambda: task.done() or self._ttl_out)
        else:  # runs before patches.TTL: a timer of their own for what the clock says is left
            await workflow.wait([task], timeout=self._ttl_left_s())
        if task.done():
            return task.result()
        task.cancel()
        try:
            await task
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 (the cancelled step's own failure)
            pass
        del self._p.trail[trail_mark:]
        for entry in self._ledger[ledger_mark:]:
            if entry.outcome == "error":
                entry.outcome, entry.detail = "cancelled", f"the agent's ttl ({ttl}) ran out"
        raise CapReached("ttl", f"ttl: {ttl} of working time used up during {what}")

    def _ttl_left_s(self) -> float:
        """The working time the clock says is left: the ttl less the time since the agent started, people's waits excluded."""
        return self._declared.caps.ttl.total_seconds() - ((workflow.now() - self._p.started_at).total_seconds() - self._p.paused_s)

    def _arm_ttl(self) -> None:
        """Start the timer that ends the ttl, for the working time left (patches.TTL runs only).

        At least a second, whatever the clock says, so whether the timer starts never
        depends on which clock a task read: only its duration does, which replay does
        not compare. Not started again once it fired, in this run or the one continued.
        """
        if self._ttl_by_timer and not self._ttl_out:
            left = timedelta(seconds=max(self._ttl_left_s(), 1.0))
            self._ttl_timer = asyncio.create_task(self._ttl_runs_out(left))

    async def _ttl_runs_out(self, left: timedelta) -> None:
        await workflow.sleep(left, summary=Shown(f"ttl: {span(self._declared.caps.ttl)} of {self.name}'s working time"))
        self._ttl_out = True

    def _pause_ttl(self) -> datetime:
        """A person is asked: their time is not the agent's, so its ttl's timer stops. Returns when they were asked."""
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
            self._ttl_timer = None
        return workflow.now()

    def _resume_ttl(self, asked: datetime) -> None:
        """The person answered: count their wait as paused, and time what working time is left."""
        self._p.paused_s += (workflow.now() - asked).total_seconds()  # people's time is not the agent's
        self._arm_ttl()
