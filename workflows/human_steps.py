"""People as designed steps: approvals with roles, escalation and deadlines, decided by signal or update.

A mixin of the engine's `Process`: it shares the run's ledger, desk and
publishing, and holds everything about asking people, so the engine module
stays about steps and budgets.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from workflows.approval_desk import MAX_SETTLING, ApprovalDesk
from workflows.approvals import (
    ApprovalRequest,
    ApprovalResult,
    ApprovalStatus,
    AskPolicy,
    AtDeadline,
    Decision,
    Verdict,
)
from workflows.budget import span
from workflows.ledger import StepKind
from workflows.outcome import BudgetExceeded, RunState, StopRun
from workflows.thresholds import Rule, RuleError


SETTLE = timedelta(seconds=1)  # how long a decision waits for a request the run has not reached
SETTLE_SUMMARY = "a decision before its request"


class NotApproved(StopRun):
    """An irreversible action was not approved; a process may catch it, else the run ends rejected."""

    def __init__(self, step: str, result: ApprovalResult) -> None:
        who = f" by {result.by}" if result.by else ""
        super().__init__(RunState.REJECTED, f"{step} was not approved ({result.status.value}{who})")
        self.result = result


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


class HumanSteps:
    """Approval steps and the handlers people answer them through."""

    name: str
    _desk: ApprovalDesk
    _state: RunState
    _cost: float

    async def approval(
        self, step: str, *, ask: str, context: BaseModel, policy: AskPolicy, proposed: str = ""
    ) -> ApprovalResult:
        """Ask people (or let a threshold rule decide); park until a decision or the last deadline."""
        started = await self._before_step(step)
        if policy.auto_approve:
            allowed = self._approved_by_rule(step, started, policy.auto_approve, context)
            if allowed:
                return allowed
        request = ApprovalRequest(
            id=step, step=step, ask=ask, proposed=proposed, roles=policy.roles,
            context=context.model_dump(mode="json"), cost_so_far_usd=round(self._cost, 6),
            requested_at=started, deadline=started + policy.timeout, at_deadline=policy.at_deadline,
        )
        self._desk.ask(request, self._eligible(policy))
        result = await self._wait_through_stages(request, policy)
        self._close_request(request.id)
        self._record(
            step=step, kind=StepKind.APPROVAL, name=",".join(request.roles), started_at=started,
            outcome=result.status.value, by=result.by, comment=result.comment,
            decision=result.model_dump(mode="json"), input={"ask": ask, "proposed": proposed, "context": request.context},
        )
        if result.status is ApprovalStatus.TIMED_OUT:
            raise StopRun(
                policy.end_state,
                f"{step}: no decision from {' then '.join('/'.join(s.roles) for s in policy.stages())} "
                f"by {request.deadline:%Y-%m-%d %H:%M} UTC",
            )
        return result

    async def _wait_through_stages(
        self, request: ApprovalRequest, policy: AskPolicy, capped: bool = True
    ) -> ApprovalResult:
        """Wait stage by stage; `capped` waits also end when a time cap of the budget runs out (see budget.py)."""
        stages = policy.stages()
        for index, stage in enumerate(stages):
            stage_started = workflow.now()
            limit = self._wait_cap(request.requested_at) if capped else None
            cut = limit if limit is not None and limit[0] < stage.timeout else None
            request.roles, request.stage = stage.roles, index
            request.people = self._people(stage.roles)
            request.deadline = stage_started + (cut[0] if cut else stage.timeout)
            request.stops_run = cut[1] if cut else None
            request.escalates_to = stages[index + 1].roles if index + 1 < len(stages) else []
            self._state = RunState.AWAITING_APPROVAL
            self._publish()
            try:
                if cut and cut[0] <= timedelta(0):
                    raise TimeoutError
                await workflow.wait_condition(
                    lambda: request.id in self._desk.verdicts, timeout=cut[0] if cut else stage.timeout,
                    timeout_summary=f"{request.id} · {cut[1] if cut else 'deadline for ' + '/'.join(stage.roles)}",
                )
            except TimeoutError:
                if cut:
                    self._out_of_time(request, cut[1])
                if request.escalates_to:
                    self._record(
                        step=request.step, kind=StepKind.APPROVAL, name=",".join(stage.roles),
                        started_at=stage_started, outcome="escalated",
                        detail=f"no decision from {'/'.join(stage.roles)} within {stage.timeout}; "
                        f"escalated to {'/'.join(request.escalates_to)}",
                    )
                continue
            verdict = self._desk.verdicts[request.id]
            return ApprovalResult(
                request_id=request.id,
                status=ApprovalStatus.APPROVED if verdict.approved else ApprovalStatus.REJECTED,
                by=verdict.by, comment=verdict.comment, decided_at=workflow.now(),
            )
        if policy.at_deadline is AtDeadline.REJECT:
            return ApprovalResult(
                request_id=request.id, status=ApprovalStatus.REJECTED, by="deadline",
                comment=f"nobody decided by {request.deadline:%Y-%m-%d %H:%M} UTC", decided_at=workflow.now(),
            )
        return ApprovalResult(request_id=request.id, status=ApprovalStatus.TIMED_OUT, decided_at=workflow.now())

    def _close_request(self, request_id: str) -> None:
        """The request is answered (or given up): off the desk, its wait counted against the idle cap."""
        request = self._desk.close(request_id)
        waited = (workflow.now() - request.requested_at).total_seconds()
        self._longest_wait_s = max(self._longest_wait_s, round(waited, 3))
        self._state = RunState.AWAITING_APPROVAL if self._desk.open else RunState.RUNNING

    def _out_of_time(self, request: ApprovalRequest, cap: str) -> None:
        """A time cap of the budget ran out while people were asked: record it and stop the run."""
        self._close_request(request.id)
        waited, limit = span(workflow.now() - request.requested_at), span(getattr(self._budget, cap))
        self._record(
            step=request.step, kind=StepKind.APPROVAL, name=",".join(request.roles), started_at=request.requested_at,
            outcome="timed_out", detail=f"{cap} ran out after {waited} waiting for {'/'.join(request.roles)}",
        )
        who = "/".join(request.roles)
        if cap == "max_wall_clock":
            raise BudgetExceeded(cap, f"{cap}: {span(self._elapsed())} since the run started, limit {limit}; "
                                      f"{request.id} was waiting for {who}")
        raise BudgetExceeded(cap, f"{cap}: {request.id} waited {waited} for {who}, limit {limit}")

    def _approved_by_rule(
        self, step: str, started: datetime, text: str, subject: BaseModel
    ) -> ApprovalResult | None:
        """Evaluate the step's threshold rule; when it holds, record why and skip the person."""
        try:
            allowed, seen = Rule.parse(text).evaluate(subject)
        except RuleError as err:
            raise StopRun(RunState.FAILED, f"step {step}: {err}") from None
        if not allowed:
            return None
        result = ApprovalResult(
            request_id=step, status=ApprovalStatus.APPROVED, by="rule", rule=text, decided_at=workflow.now()
        )
        shown = ", ".join(f"{k}={v!r}" for k, v in seen.items())
        self._record(
            step=step, kind=StepKind.APPROVAL, name="rule", started_at=started, outcome="approved",
            by="rule", detail=f"approved by rule `{text}` with {shown}", decision=seen,
            input=subject.model_dump(mode="json"),
        )
        return result

    def _eligible(self, policy: AskPolicy) -> set[str] | None:
        """Everyone any stage of the policy asks: a decision from anyone else can never apply."""
        people = [self._people(stage.roles) for stage in policy.stages()]
        return None if None in people else {p for stage in people for p in stage}

    def _people(self, roles: list[str]) -> list[str] | None:
        """Who may decide for these roles, as the run's policy said at its start."""
        members = self._policy.roles
        if members is None:
            return None  # a run started before roles were enforced
        return list(dict.fromkeys(p for role in roles for p in members.get(role, [])))

    # ----- decisions by signal and update ---------------------------------------------

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
        await self._settle(verdict.request_id)
        try:
            return self._desk.take(verdict)
        except ValueError as refused:  # a request the run did not reach in this task after all
            raise ApplicationError(str(refused), type="DecisionRefused", non_retryable=True) from None

    @decide.validator
    def _validate_decide(self, verdict: Verdict) -> None:
        self._desk.screen(verdict)

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
            self._desk.take(Verdict(**decision.model_dump(), approved=approved))
        except (ValueError, ValidationError, TypeError) as refused:
            self._record(
                step=_field(raw, "request_id") or "?", kind=StepKind.APPROVAL, name="signal",
                started_at=workflow.now(), outcome="refused", by=_field(raw, "by"),
                detail=f"{'approve' if approved else 'reject'} signal refused: {_first_line(refused)}",
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
