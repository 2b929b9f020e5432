"""The entity workflow that counts one process's spend across its runs, one fixed window at a time.

One per (window length, process, task queue), id `baton-spend:<window>:<process>@<queue>`
(activities/spend.py). Its updates run one at a time with no await, so a reserve
is atomic: concurrent runs never together hold more than the cap. Each reservation
is keyed (run, step, attempt, request) and a repeated key is answered as before,
so a retried reserve or settle counts once, also across continue-as-new, which
carries the window's state before history grows large. Validators refuse
malformed updates before they reach history; see activities/spend.py for what
an untrusted caller can and cannot do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from activities.spend import (
        ENTITY,
        MAX_HELD,
        ROOM,
        Reservation,
        ReserveRequest,
        SettleRequest,
        SpendWindow,
        proof_of,
        window_of,
    )

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
HISTORY_LIMIT = 2_000  # events before the entity continues as new (or sooner, when Temporal suggests it)
MIN_HISTORY = 20  # the fewest a start may ask for: anyone may start the entity, none may make it churn


class Held(BaseModel):
    amount_usd: float  # the request's worst case
    settled_usd: float | None = None  # what it cost, once settled
    proof: str
    forced: bool = False


class SpendState(BaseModel):
    """What one window holds: carried across continue-as-new, dropped when the window rolls."""

    start: datetime | None = None
    held: dict[str, Held] = {}
    refused: int = 0


class SpendStart(BaseModel):
    """The entity's start input: its history limit (a test's lower one), and the state its own continue-as-new carries."""

    history_limit: int = HISTORY_LIMIT
    carried: SpendState | None = None


@workflow.defn(name=ENTITY)
class SpendWindowWorkflow:
    @workflow.init
    def __init__(self, start: SpendStart | None = None) -> None:
        info = workflow.info()
        start = start or SpendStart()
        self._length = window_of(info.workflow_id)
        self._process = info.workflow_id.split(":", 2)[2].rsplit("@", 1)[0]
        # Only a run continued from this entity carries state: anyone else's is ignored, and their limit bounded.
        self._state = start.carried if start.carried is not None and info.continued_run_id else SpendState()
        self._limit = min(max(start.history_limit, MIN_HISTORY), HISTORY_LIMIT)
        self._ignored = 0

    @workflow.run
    async def run(self, start: SpendStart | None = None) -> None:
        await workflow.wait_condition(self._history_full)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(SpendStart(history_limit=self._limit, carried=self._state))

    def _history_full(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self._limit

    # ----- updates ----------------------------------------------------------------------

    @workflow.update
    def reserve(self, req: ReserveRequest) -> Reservation:
        """Hold the request's worst case if the window has room (or a person approved going over)."""
        self._roll()
        held = self._state.held.get(req.key)
        if held is not None:  # the same request again (a retried activity, a repeated update)
            same = held.proof == req.proof
            return Reservation(granted=same, window=self.window(), reason="" if same else "key held by another")
        if len(self._state.held) >= MAX_HELD:
            return self._refuse(f"the window holds {MAX_HELD} reservations already")
        if not req.force and self._counted() + req.amount_usd > req.cap_usd + 1e-9:
            return self._refuse(ROOM)
        self._state.held[req.key] = Held(amount_usd=req.amount_usd, proof=req.proof, forced=req.force)
        return Reservation(granted=True, window=self.window())

    @reserve.validator
    def _reserve_ok(self, req: ReserveRequest) -> None:
        ReserveRequest.model_validate(req.model_dump())  # bounds again: the converter may build it unchecked

    @workflow.update
    def settle(self, req: SettleRequest) -> SpendWindow:
        """Replace a reservation by what its request cost (held and proved: see the validator)."""
        held = self._state.held[req.key]
        held.settled_usd = req.amount_usd
        return self.window()

    @settle.validator
    def _settle_ok(self, req: SettleRequest) -> None:
        """Only the reserver settles, once, for a reservation of the current window; nothing else reaches history."""
        SettleRequest.model_validate(req.model_dump())
        held = self._state.held.get(req.key) if self._state.start == self._window_start() else None
        if held is None:
            raise ValueError("no such reservation in the current window (unknown, or expired with its window)")
        if proof_of(req.secret) != held.proof:
            raise ValueError("the secret does not match the reservation's proof")
        if held.settled_usd is not None and held.settled_usd != req.amount_usd:
            raise ValueError("settled already, with another amount")

    @workflow.signal(dynamic=True)
    def _ignore(self, name: str, args: Sequence[RawValue]) -> None:
        """The entity takes no signals: anyone's are dropped, not buffered in memory."""
        self._ignored += 1

    @workflow.query
    def window(self) -> SpendWindow:
        """The current window: an ended one (not rolled yet, for want of a request) shows empty."""
        start = self._window_start()
        current = self._state.start == start
        held = list(self._state.held.values()) if current else []
        return SpendWindow(
            process=self._process, start=start, end=start + self._length,
            reserved_usd=round(sum(h.amount_usd for h in held if h.settled_usd is None), 6),
            settled_usd=round(sum(h.settled_usd for h in held if h.settled_usd is not None), 6),
            reservations=len(held), refused=self._state.refused if current else 0,
            forced_usd=round(sum(h.amount_usd for h in held if h.forced), 6),
        )

    # ----- the window -------------------------------------------------------------------

    def _window_start(self) -> datetime:
        """The fixed window now falls in: aligned to multiples of its length since the epoch (UTC)."""
        return EPOCH + (workflow.now() - EPOCH) // self._length * self._length

    def _roll(self) -> None:
        """Drop what an ended window held: its reservations, settled or not, expire with it."""
        start = self._window_start()
        if self._state.start != start:
            self._state = SpendState(start=start)

    def _counted(self) -> float:
        return sum(h.amount_usd if h.settled_usd is None else h.settled_usd for h in self._state.held.values())

    def _refuse(self, why: str) -> Reservation:
        self._state.refused += 1
        return Reservation(granted=False, window=self.window(), reason=why)
