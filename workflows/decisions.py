"""How people's decisions reach a run: the `approve`/`reject` signals and the `decide` update.

A mixin of the engine's `Process`, beside workflows/human_steps.py (which asks):
it takes decisions onto the run's approval desk (workflows/approval_desk.py).
Anyone who can reach the namespace can send these, with any payload: nothing
they send may crash a workflow task, unblock a run without a valid decision,
or be lost without a trace.

A decision proves who decides with a token from the identity provider, verified
here against the keys the run took with its policy (see activities/identity.py):
the decider and their roles come from the token only. Its times (exp, nbf, iat)
are judged where the clock can be trusted: by the update's validator (never
replayed), or, for a signal, by an activity on Temporal's clock (recorded); runs
started before that (not holding workflows/patches.py TOKEN_TIMES) judge them on
workflow time, as they ran.
Whoever started the run (proved the same way, worker/run_input.py) may not
decide its requests. Runs started before this (not holding workflows/patches.py PROOF) replay
as they ran: by the name given.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import patches
from workflows.approval_desk import MAX_SETTLING, ApprovalDesk
from workflows.approvals import Decision, Verdict
from workflows.ledger import StepKind
from workflows.visibility import Shown

with workflow.unsafe.imports_passed_through():
    from activities.identity import IdentityRefused, TrustedIssuer, Verified, verify
    from activities.token_times import TokenCheck, judge_token

MAX_REFUSALS_RECORDED = 20  # refused signals kept one by one in the ledger; the rest are counted
MAX_UNTIMELY = 20  # signed tokens a run refuses on their times; past it, a signal's token is not judged at all
SETTLE = timedelta(seconds=1)  # how long a decision waits for a request the run has not reached
SETTLE_SUMMARY = Shown("a decision before its request")
JUDGE = timedelta(seconds=10)  # how long judging a token's times may take (three tries)
JUDGE_SUMMARY = Shown("judge a decider's token's times, on Temporal's clock")


def _one_payload(handler: Callable[..., None]) -> Callable[..., None]:
    """Show the SDK a signal handler's single RawValue parameter, not its `*extra`.

    With the one typed parameter, a signal's payload reaches the handler raw whatever it
    holds (so a malformed one is recorded, not dropped by the SDK unseen). The `*extra`
    the SDK does not see still takes the payloads a client may add beyond the first
    (`temporal workflow signal --input A --input B`): without it the call would raise
    TypeError and fail the workflow task on every retry, leaving the run stuck.
    """
    params = inspect.signature(handler).parameters.values()
    handler.__signature__ = inspect.Signature([p for p in params if p.kind is not p.VAR_POSITIONAL])  # type: ignore[attr-defined]
    return handler


class Decisions:
    """The handlers people answer through; what they take is judged by the desk."""

    _desk: ApprovalDesk
    _proof: bool | None  # decisions must carry a token (None: the run has not reached its start yet)
    _starter: Verified | None
    _patches: patches.Patches
    _screened: dict[str, Verified]  # token -> who the update's validator proved, until its handler takes it

    def _who(self, decision: Decision, now: datetime | None) -> Verified | None:
        """Who decides, as their token proves at `now`; IdentityRefused says why it proves nobody who may.

        `now` None: all but the token's times, which are judged elsewhere (see `_decider`).
        None for runs started before proof was asked (they take `by`).
        """
        if self._proof is None:
            raise IdentityRefused("the run has not loaded its policy yet: decide once it asks")
        if not self._proof:
            return None
        trusted: TrustedIssuer | None = self._policy.identity
        if trusted is None:
            raise IdentityRefused("this worker has no [identity] issuer: no decision can be verified")
        who = verify(decision.token, trusted, now)
        if decision.by is not None and decision.by != who.subject:
            raise IdentityRefused(f"--by {decision.by!r} is not the token's subject {who.subject!r}")
        starter = self._starter
        if starter is not None and (starter.subject, starter.issuer) == (who.subject, who.issuer):
            raise IdentityRefused(f"{who.subject!r} started this run and may not decide its requests")
        return who

    # The payload is taken raw (a Decision as JSON, normally), so that a malformed one
    # reaches the handler and the ledger instead of being dropped by the SDK unseen.
    @workflow.signal
    @_one_payload
    async def approve(self, payload: RawValue = None, *extra: Any) -> None:  # type: ignore[assignment]  # no payload at all
        await self._decide_by_signal(payload, approved=True, extra=len(extra))

    @workflow.signal
    @_one_payload
    async def reject(self, payload: RawValue = None, *extra: Any) -> None:  # type: ignore[assignment]
        await self._decide_by_signal(payload, approved=False, extra=len(extra))

    @workflow.update
    async def decide(self, verdict: Verdict) -> Verdict:
        """Decide and answer: what can never apply is refused by the validator, before history."""
        judged = self._proof is not None  # the validator, run in this activation, judged the token's times
        screened = self._screened.pop(verdict.token, None) if verdict.token else None
        await self._settle(verdict.request_id)
        try:
            return self._desk.take(verdict, await self._decider(verdict, times_judged=judged, screened=screened))
        except ValueError as refused:  # a request the run did not reach in this task after all
            raise ApplicationError(str(refused), type="DecisionRefused", non_retryable=True) from None

    @decide.validator
    def _validate_decide(self, verdict: Verdict) -> None:
        """Refuse before history what can never apply; each refusal is a line in the worker's log.

        A refused update leaves no trace in the run (so no flood of them can grow its
        history): the log line is where a security team sees failed attempts to decide.
        """
        if self._proof is None:  # no keys yet: judged by the handler once the run has them (see _settle)
            return
        try:
            who = self._who(verdict, workflow.now())  # this verdict is final: replay never runs a validator
            self._desk.screen(verdict.model_copy(update={"by": who.subject}) if who else verdict, who)
            if who is not None and verdict.token:
                self._screened[verdict.token] = who  # for the handler, which runs next in this activation
        except ValueError as refused:
            workflow.logger.warning("decision for %s refused: %s", verdict.request_id or "the open request", refused)
            raise

    async def _settle(self, request_id: str | None) -> None:
        """Let the run take in the rest of this workflow task before a decision is judged.

        Temporal runs validators and signal handlers before the workflow code sees the
        other events of the same task, so the request such an event leads to (a step
        completed, a deadline passed) is not open yet. Wait for it; if the run does not
        reach it in this task, a short timer ends the wait and the decision is judged
        (refused) then. A timer cancelled in the task that started it never reaches
        history. At most MAX_SETTLING decisions wait at once (the validator refuses more),
        so a flood of decisions for requests that never open cannot flood history with timers.
        """
        if self._desk.can_judge(request_id) or self._desk.settling >= MAX_SETTLING:
            return
        self._desk.settling += 1
        try:
            await workflow.wait_condition(
                lambda: self._desk.can_judge(request_id), timeout=SETTLE, timeout_summary=SETTLE_SUMMARY
            )
        except asyncio.TimeoutError:
            pass
        finally:
            self._desk.settling -= 1

    async def _decide_by_signal(self, payload: RawValue | None, approved: bool, extra: int = 0) -> None:
        """A signal cannot be refused to its sender: a bad one is recorded in the ledger and ignored."""
        raw = _payload_text(payload)
        try:
            if extra:
                raise ValueError(f"the signal carried {extra + 1} payloads; a decision is one JSON object")
            decision = _decision(payload)
            await self._settle(decision.request_id)
            verdict = Verdict(**decision.model_dump(), approved=approved)
            self._desk.take(verdict, await self._decider(verdict, times_judged=False))
        except (ValueError, ValidationError, TypeError) as refused:
            self._refuse_signal(raw, approved, refused)

    async def _decider(self, verdict: Verdict, times_judged: bool, screened: Verified | None = None) -> Verified | None:
        """Who decides, as their token proves, its times judged where the clock can be trusted.

        On `workflow.now()`, a task whose code ran on the previous task's clock (a query
        racing the event that woke it) could refuse a token replay takes, or the other way
        round: the run is stuck. So, for runs holding TOKEN_TIMES, the times are the
        validator's verdict (`times_judged`) or an activity's answer, recorded. All that
        needs no clock is judged here first: a decision refused for it costs no activity.

        `screened`: what the update's validator proved of the same token in this activation.
        Its check was this one and the times besides, so its answer is this one's: the
        signature is not verified twice. Replay runs no validator and verifies here, to the
        same answer.
        """
        who = screened if screened is not None else self._who(verdict, None)
        if who is None:
            return None  # a run started before proof: it takes `by`
        if not self._patches.holds(patches.TOKEN_TIMES):  # asked once: the SDK keeps the answer
            return self._who(verdict, workflow.now())  # runs started before it, as they ran
        if times_judged:
            return who
        request_id = self._desk.resolve(verdict.model_copy(update={"by": who.subject}), who)
        if request_id in self._desk.verdicts:
            return who  # the same decision again: taking it changes nothing, and needs no clock
        return await self._judged(verdict.token or "")

    async def _judged(self, token: str) -> Verified:
        """The token's identity if its times hold by Temporal's clock (activities/token_times.py).

        Only a token the issuer signed for someone who may decide an open request gets
        here. Still bounded: MAX_SETTLING judged at once, and once MAX_UNTIMELY were refused
        on their times (an old token sent again and again), a signal's are not judged.
        """
        desk = self._desk
        if desk.judging >= MAX_SETTLING:
            raise IdentityRefused(f"{desk.judging} decisions are being judged already: send it again")
        if desk.untimely + desk.judging >= MAX_UNTIMELY:  # those in flight may all be refused too
            raise IdentityRefused(f"{desk.untimely} tokens were refused on their times already: decide by update")
        desk.judging += 1
        try:
            judged = await workflow.execute_activity(
                judge_token, TokenCheck(token=token, trusted=self._policy.identity), start_to_close_timeout=JUDGE,
                retry_policy=RetryPolicy(maximum_attempts=3), summary=JUDGE_SUMMARY,
            )
        except ActivityError as err:
            raise IdentityRefused(f"the token's times could not be judged ({err.cause or err})") from None
        finally:
            desk.judging -= 1
        if judged.verified is None:
            desk.untimely += 1
            raise IdentityRefused(judged.refused or "the token's times do not hold")
        return judged.verified

    def _refuse_signal(self, raw: Any, approved: bool, refused: Exception) -> None:
        """Record a refused signal; past MAX_REFUSALS_RECORDED, only count it (the status query says how many).

        A flood of signals must not grow the ledger without bound: where the
        server takes thousands a run, the ledger would outgrow what a query can answer.
        """
        self._desk.refused_signals += 1
        if self._desk.refused_signals > MAX_REFUSALS_RECORDED:
            return
        detail = f"{'approve' if approved else 'reject'} signal refused: {_first_line(refused)}"
        if self._desk.refused_signals == MAX_REFUSALS_RECORDED:
            detail += f" (further refused signals are counted, not recorded: {MAX_REFUSALS_RECORDED} kept)"
        self._record(
            step=_field(raw, "request_id") or "?", kind=StepKind.APPROVAL, name="signal",
            started_at=workflow.now(), outcome="refused", by=None if self._proof else _field(raw, "by"), detail=detail,
        )


def _decision(payload: RawValue | None) -> Decision:
    """A signal's payload as a Decision; ValueError (or ValidationError) says why it is not one."""
    if payload is None:
        raise ValueError("the signal carried no payload")
    try:
        decision = workflow.payload_converter().from_payload(payload.payload, Decision)
    except ValidationError:
        raise
    except ApplicationError as err:  # Baton's converter names the fields a payload gets wrong, never their values
        raise ValueError(err.message) from None
    except Exception as err:  # noqa: BLE001 (a client can send any bytes with any encoding: none may crash the task)
        raise ValueError(f"the payload cannot be read as a decision ({type(err).__name__})") from None
    if not isinstance(decision, Decision):  # e.g. a null payload, which converts without looking at the type
        raise ValueError(f"the payload is {type(decision).__name__}, not a decision")
    return decision


def _payload_text(payload: RawValue | None) -> Any:
    if payload is None:
        return None
    if not isinstance(payload, RawValue):
        return payload  # decoded already: the SDK decodes every payload of a signal that carried several
    try:
        return workflow.payload_converter().from_payload(payload.payload, Any)
    except Exception:  # noqa: BLE001 (whatever arrived, the ledger only wants a readable hint)
        return None


def _field(raw: Any, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return str(value)[:80] if value is not None else None


def _first_line(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in err.errors())
    return str(err).splitlines()[0][:300]
