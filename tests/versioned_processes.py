"""Two builds of the same two processes, for the Worker Versioning test (tests/test_versioning.py).

Build A and build B register processes of the same names whose commands are
the same up to and through their approval (so a run can move between them),
and whose last step says which build ran it: a run's reason names the build
that took its approval. `test-versioned-pinned` declares nothing, so it takes
Baton's default (pinned); `test-versioned-moving` declares auto-upgrade, as a
process written against workflows.api would.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

from workflows.api import AskPolicy, Process, RunOutcome, RunState, VersioningBehavior


class Ticket(BaseModel):
    reference: str


PINNED, MOVING = "test-versioned-pinned", "test-versioned-moving"


class _Parked(Process):
    """Asks compliance to approve, then ends naming its `build`."""

    roles = ("compliance",)
    build = ""

    async def _park(self, ticket: Ticket) -> RunOutcome[dict]:
        decided = await self.approval(
            "go_ahead", ask=f"Go ahead with {ticket.reference}?", context=ticket,
            policy=AskPolicy(roles=["compliance"], timeout=timedelta(hours=1)),
        )
        return self.end(RunState.COMPLETED, f"{decided.status.value} on build {self.build}")


@workflow.defn(name=PINNED)
class PinnedOnA(_Parked):
    name, build = PINNED, "A"

    @workflow.run
    async def run(self, ticket: Ticket) -> RunOutcome[dict]:
        return await self.execute(lambda: self._park(ticket), None)


@workflow.defn(name=PINNED)
class PinnedOnB(_Parked):
    name, build = PINNED, "B"

    @workflow.run
    async def run(self, ticket: Ticket) -> RunOutcome[dict]:
        return await self.execute(lambda: self._park(ticket), None)


@workflow.defn(name=MOVING, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class MovingOnA(_Parked):
    name, build = MOVING, "A"

    @workflow.run
    async def run(self, ticket: Ticket) -> RunOutcome[dict]:
        return await self.execute(lambda: self._park(ticket), None)


@workflow.defn(name=MOVING, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class MovingOnB(_Parked):
    name, build = MOVING, "B"

    @workflow.run
    async def run(self, ticket: Ticket) -> RunOutcome[dict]:
        return await self.execute(lambda: self._park(ticket), None)


BUILD_A = (PinnedOnA, MovingOnA)
BUILD_B = (PinnedOnB, MovingOnB)
