"""Spend caps across runs: the config, the entity's contracts, and how a model request reserves and settles.

A process's `[budgets.NAME.across_runs]` caps what all its runs may spend per
window. The count lives in one entity workflow per (window length, process,
task queue) (workflows/spend_window.py); the model activity reserves each
request's worst case there before sending it and settles what it cost after
(activities/llm/activity.py), through the worker's own Temporal client and
data converter, with a stable update id per request so a retried update counts
once. Windows are fixed, aligned to multiples of their length since the Unix
epoch (an hourly cap resets on the hour, UTC); what a window held, reserved or
settled, expires with it, so a run that died holding a reservation never holds
the cap past its window.

Untrusted callers (anyone who can reach the namespace) can send these updates
too. What they can do is only ever make the cap stricter: reserve more (up to
its window's end, a denial of service that namespace access allows anyway).
They cannot lower what is counted: settling needs the secret whose sha256 the
reservation carried, which only the reserving activity attempt holds in memory
and never sends anywhere but the settle; amounts are finite, non-negative and
bounded; the entity trusts carried state only from its own continue-as-new.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

ENTITY = "baton-spend"  # the entity's workflow type
MAX_REQUEST_USD = 10_000.0  # no one model request reserves or settles more: anything bigger is malformed
MAX_KEY = 300  # characters of a reservation key
MAX_HELD = 2_000  # reservations one window holds; past it, reserves are refused (fail closed), history stays bounded
WINDOW = TypeAdapter(timedelta)


class AcrossRuns(BaseModel):
    """`[budgets.NAME.across_runs]`: what all runs of the process may spend together per window."""

    model_config = ConfigDict(extra="forbid")

    max_cost_usd: float = Field(gt=0, le=1_000_000, allow_inf_nan=False)
    window: timedelta = Field(ge=timedelta(minutes=1), le=timedelta(days=31), description="fixed windows, UTC-aligned")


ROOM = "the cap has no room"  # the entity's refusal when the window is full (any other is named in the reason)


def entity_id(process: str, window: timedelta, queue: str) -> str:
    """The entity's workflow id: its window length first (the entity reads it back), then whose cap it is."""
    return f"{ENTITY}:{WINDOW.dump_python(window, mode='json')}:{process}@{queue}"


def window_of(workflow_id: str) -> timedelta:
    """The window length an entity id names (ValueError when it names none)."""
    return WINDOW.validate_python(workflow_id.split(":", 2)[1])


def proof_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ReserveRequest(BaseModel):
    """Hold `amount_usd` (a request's worst case) under `key` if the window has room under `cap_usd`."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=MAX_KEY)
    amount_usd: float = Field(ge=0, le=MAX_REQUEST_USD, allow_inf_nan=False)
    cap_usd: float = Field(gt=0, le=1_000_000, allow_inf_nan=False)
    proof: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the secret a settle must show")
    force: bool = Field(default=False, description="a person approved going over: held even past the cap")


class SettleRequest(BaseModel):
    """Replace the reservation `key` by what its request cost; only its reserver knows `secret`."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=MAX_KEY)
    amount_usd: float = Field(ge=0, le=MAX_REQUEST_USD, allow_inf_nan=False)
    secret: str = Field(min_length=16, max_length=128)


class SpendWindow(BaseModel):
    """One window of one process's cap as the entity counts it (the cap itself is config's)."""

    process: str
    start: datetime
    end: datetime
    reserved_usd: float = Field(description="held by requests not settled yet, at their worst case")
    settled_usd: float = Field(description="what settled requests cost")
    reservations: int
    refused: int = Field(description="reserves refused this window")
    forced_usd: float = Field(default=0.0, description="held past the cap because a person approved it")

    @property
    def counted_usd(self) -> float:
        return self.reserved_usd + self.settled_usd


class Reservation(BaseModel):
    granted: bool
    window: SpendWindow
    reason: str = ""


class SpendRefusal(BaseModel):
    """Why a model request was not sent: handed to the run, which waits, asks or ends as its process declares."""

    process: str
    cap_usd: float
    window_length: timedelta
    asked_usd: float
    window: SpendWindow
    never_fits: bool = Field(description="the request alone costs more than the cap: waiting cannot help")
    why: str = Field(default="", description="the entity's word, when it is not the cap's lack of room")

    def reason(self) -> str:
        w = self.window
        return (
            f"across_runs: {self.process} has ${w.settled_usd:.6f} settled and ${w.reserved_usd:.6f} reserved "
            f"of its ${self.cap_usd:g} cap in the window ending {w.end:%Y-%m-%d %H:%M:%S} UTC; "
            f"the next request could cost ${self.asked_usd:.6f}" + (f"; refused: {self.why}" if self.why else "")
        )


class SpendCapUnavailable(Exception):
    """The entity cannot be used (closed by someone): nothing is sent, the cap fails closed."""


class Ticket(BaseModel):
    """A granted reservation, and the secret that settles it (kept in the activity's memory only)."""

    process: str
    key: str
    secret: str


class SpendCaps:
    """The worker's cross-run caps (trusted config), reserved and settled from inside an activity."""

    def __init__(self, caps: dict[str, AcrossRuns] | None = None) -> None:
        self.caps = caps or {}

    def cap(self, process: str | None) -> AcrossRuns | None:
        return self.caps.get(process) if process else None

    async def reserve(self, process: str, key: str, amount: float, *, force: bool = False) -> Ticket | SpendRefusal:
        """Hold `amount` for the request `key`; a refusal says what the window holds."""
        cap = self.caps[process]
        secret = secrets.token_hex(32)
        req = ReserveRequest(key=key, amount_usd=_up(amount), cap_usd=cap.max_cost_usd, proof=proof_of(secret), force=force)
        got = await self._update(process, "reserve", req, key, Reservation)
        if got.granted:
            return Ticket(process=process, key=key, secret=secret)
        return SpendRefusal(
            process=process, cap_usd=cap.max_cost_usd, window_length=cap.window, asked_usd=req.amount_usd,
            window=got.window, never_fits=req.amount_usd > cap.max_cost_usd,
            why="" if got.reason == ROOM else got.reason,
        )

    async def settle(self, ticket: Ticket, amount: float) -> None:
        """Replace the reservation by what the request cost. A window that rolled meanwhile refuses it: it expired."""
        req = SettleRequest(key=ticket.key, amount_usd=_up(amount), secret=ticket.secret)
        try:
            await self._update(ticket.process, "settle", req, ticket.key, SpendWindow)
        except (WorkflowUpdateFailedError, RPCError, SpendCapUnavailable) as err:
            # The answer is in hand: failing the step now would pay for it twice. Unsettled, the
            # reservation keeps counting the request's worst case until its window ends.
            activity.logger.warning("spend cap settle for %s failed: %s", ticket.key, getattr(err, "cause", None) or err)

    async def _update(self, process: str, name: str, req: BaseModel, key: str, result: type[BaseModel]):
        """Execute the update with a stable id (a retry of it is the same update), starting the entity if need be."""
        client, wid = activity.client(), entity_id(process, self.caps[process].window, activity.info().task_queue)
        for _ in range(2):
            try:
                return await client.get_workflow_handle(wid).execute_update(
                    name, req, id=update_id(name, req), result_type=result
                )
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise
            await _start(client, wid, process)
        raise SpendCapUnavailable(
            f"the spend cap entity {wid} is closed (terminated?): requests of {process} are refused until an "
            "operator deletes it (`temporal workflow delete --workflow-id ...`), which starts a fresh window"
        )


async def _start(client: Client, wid: str, process: str) -> None:
    """Start the entity; a closed one is never replaced silently (its count would be lost), so reuse is refused."""
    try:
        await client.start_workflow(
            ENTITY, id=wid, task_queue=activity.info().task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"spend cap across runs of {process}",
        )
    except WorkflowAlreadyStartedError:
        pass  # started meanwhile by another request (or closed: the update says which)


def update_id(name: str, req: ReserveRequest | SettleRequest) -> str:
    """The update's id: the same for a retry of this very request, unguessable by anyone else.

    Temporal answers a second update with a known id by the first one's
    outcome, without running the handler. Were the id the key alone (which
    names a run, step and attempt anyone on the namespace can see), a
    stranger could send it first with $0 and have the real request granted
    without being counted. The proof (or the settle's secret's proof) is
    known only to the reserving attempt.
    """
    secret_proof = req.proof if isinstance(req, ReserveRequest) else proof_of(req.secret)
    return f"{name}/{req.key}/{secret_proof}"


def _up(amount: float) -> float:
    """Amounts in whole micro-dollars, rounded up: a reservation is never less than its request could cost."""
    return math.ceil(round(amount * 1_000_000, 3)) / 1_000_000
