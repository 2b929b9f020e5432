"""People as designed steps: approvals with roles, escalation and deadlines.

A mixin of the engine's `Process`: it shares the run's ledger, desk and
publishing, and holds everything about asking people, so the engine module
stays about steps and budgets. How people's answers come in (signals, the
`decide` update) is workflows/decisions.py.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow

from workflows.approval_desk import ApprovalDesk
from workflows.approvals import (
    ApprovalRequest,
    ApprovalResult,
    ApprovalStatus,
    AskPolicy,
    AtDeadline,
    Stage,
)
from workflows.budget import span
from workflows.ledger import StepKind
from workflows.outcome import BudgetExceeded, RunState, StopRun
from workflows.thresholds import Rule, RuleError
from workflows.visibility import Shown


class NotApproved(StopRun):
    """An irreversible action was not approved; a process may catch it, else the run ends rejected."""

    def __init__(self, step: str, result: ApprovalResult) -> None:
        who = f" by {result.by}" if result.by else ""
        super().__init__(RunState.REJECTED, f"{step} was not approved ({result.status.value}{who})")
        self.result = result


class HumanSteps:
    """Approval steps: who is asked, stage by stage, until a decision or the last deadline."""

    name: str
    _desk: ApprovalDesk
    _state: RunState
    _cost: float
    _caps_by_timer = False  # time caps end a wait for a person by their timers (workflows/patches.py APPROVAL_CAPS)

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
        self._desk.ask(request, self._eligible(policy), policy.roles_asked())
        result = await self._wait_through_stages(request, policy)
        self._close_request(request.id)
        self._record(
            step=step, kind=StepKind.APPROVAL, name=",".join(request.roles), started_at=started,
            outcome=result.status.value, by=result.by, comment=result.comment, issuer=result.issuer, kid=result.kid,
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
        """Wait stage by stage; `capped` waits also end when a time cap of the budget runs out (see budget.py).

        Runs since workflows/patches.py APPROVAL_CAPS wait on timers (`_wait_on_timers`); before it, a stage was cut by
        comparing the clock with the caps, which a task run on a stale clock could decide otherwise.
        """
        if capped and self._caps_by_timer:
            return await self._wait_on_timers(request, policy)
        stages = policy.stages()
        for index, stage in enumerate(stages):
            stage_started = workflow.now()
            cut = self._show_stage(request, stages, index, capped)
            try:
                if cut and cut[0] <= timedelta(0):
                    raise TimeoutError
                await workflow.wait_condition(
                    lambda: request.id in self._desk.verdicts, timeout=cut[0] if cut else stage.timeout,
                    timeout_summary=Shown(f"{request.id} · {cut[1] if cut else 'deadline for ' + '/'.join(stage.roles)}"),
                )
            except TimeoutError:
                if cut:
                    self._out_of_time(request, cut[1])
                self._escalated(request, stage, stage_started)
                continue
            return self._decided(request)
        return self._at_deadline(request, policy)

    async def _wait_on_timers(self, request: ApprovalRequest, policy: AskPolicy) -> ApprovalResult:
        """Each stage waits for a decision, its deadline, or a time cap's timer; which one came is read from
        the verdicts and the caps' flags, set by events, so every clock a task may read gives the same commands."""
        idle = asyncio.Event()
        stages = policy.stages()
        idle_timer = self._start_idle_timer(request, stages, idle)
        try:
            for index, stage in enumerate(stages):
                stage_started = workflow.now()
                self._show_stage(request, stages, index, capped=True)
                await self._stage_ends(request, stage, idle)
                if request.id in self._desk.verdicts:
                    return self._decided(request)  # a decision that arrived wins over any cap
                if cap := self._cap_out(idle):
                    self._out_of_time(request, cap)
                self._escalated(request, stage, stage_started)
            return self._at_deadline(request, policy)
        finally:
            if idle_timer is not None:
                idle_timer.cancel()  # the request is closed: its idle cap no longer runs

    def _start_idle_timer(
        self, request: ApprovalRequest, stages: list[Stage], idle: asyncio.Event
    ) -> asyncio.Task[None] | None:
        """A timer for the whole max_approval_idle from the ask: its duration never depends on a clock.

        None when the stages' deadlines together come no later (a tie goes to the stages): the last
        deadline ends the wait first, and the timer would only be started and cancelled, two events
        in every approval's history. Decided by the budget and the policy alone, never by a clock.
        """
        cap = self._budget.max_approval_idle
        if cap is None or cap >= sum((s.timeout for s in stages), timedelta(0)):
            return None
        return asyncio.create_task(self._idle_runs_out(request, cap, idle))

    async def _idle_runs_out(self, request: ApprovalRequest, cap: timedelta, idle: asyncio.Event) -> None:
        await workflow.sleep(cap, summary=Shown(f"{request.id} · max_approval_idle: {span(cap)} from the ask"))
        idle.set()

    async def _stage_ends(self, request: ApprovalRequest, stage: Stage, idle: asyncio.Event) -> None:
        """Wait until a decision, a time cap's timer, or the stage's own deadline, whichever comes first."""
        try:
            await workflow.wait_condition(
                lambda: request.id in self._desk.verdicts or idle.is_set() or self._wall_clock_spent(),
                timeout=stage.timeout, timeout_summary=Shown(f"{request.id} · deadline for {'/'.join(stage.roles)}"),
            )
        except TimeoutError:
            pass  # the stage's deadline: the caller reads what else ended the wait from the flags

    def _cap_out(self, idle: asyncio.Event) -> str | None:
        """The time cap whose timer has fired, if any (the wall clock's is `_wall_clock_out`, budget.py)."""
        if idle.is_set():
            return "max_approval_idle"
        return "max_wall_clock" if self._wall_clock_spent() else None

    def _show_stage(
        self, request: ApprovalRequest, stages: list[Stage], index: int, capped: bool
    ) -> tuple[timedelta, str] | None:
        """Publish who is asked now and until when: the stage's deadline, or a time cap's if it comes first.

        Returns that cap and what it leaves, by the clock: runs before workflows/patches.py APPROVAL_CAPS cut the wait by
        it; since, it is only shown (the deadline a person reads), never decides a command.
        """
        stage = stages[index]
        limit = self._wait_cap(request.requested_at) if capped else None
        cut = limit if limit is not None and limit[0] < stage.timeout else None
        request.roles, request.stage = stage.roles, index
        request.people = self._people(stage.roles)
        request.deadline = workflow.now() + (cut[0] if cut else stage.timeout)
        request.stops_run = cut[1] if cut else None
        request.escalates_to = stages[index + 1].roles if index + 1 < len(stages) else []
        self._state = RunState.AWAITING_APPROVAL
        self._publish()
        return cut

    def _escalated(self, request: ApprovalRequest, stage: Stage, stage_started: datetime) -> None:
        """A stage's deadline passed with no decision: the ledger says who takes over (nothing after the last)."""
        if request.escalates_to:
            self._record(
                step=request.step, kind=StepKind.APPROVAL, name=",".join(stage.roles),
                started_at=stage_started, outcome="escalated",
                detail=f"no decision from {'/'.join(stage.roles)} within {stage.timeout}; "
                f"escalated to {'/'.join(request.escalates_to)}",
            )

    def _decided(self, request: ApprovalRequest) -> ApprovalResult:
        verdict, signer = self._desk.verdicts[request.id], self._desk.signers.get(request.id)
        return ApprovalResult(
            request_id=request.id,
            status=ApprovalStatus.APPROVED if verdict.approved else ApprovalStatus.REJECTED,
            by=verdict.by, comment=verdict.comment, decided_at=workflow.now(),
            issuer=signer.issuer if signer else None, kid=signer.kid if signer else None,
        )

    def _at_deadline(self, request: ApprovalRequest, policy: AskPolicy) -> ApprovalResult:
        """The last stage passed with no decision: rejected or timed out, as the policy says."""
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

    def _eligible(self, policy: AskPolicy) -> set[str] | None:  # runs before patches.PROOF: by name
        """Everyone any stage of the policy asks: a decision from anyone else can never apply."""
        people = [self._people(stage.roles) for stage in policy.stages()]
        return None if None in people else {p for stage in people for p in stage}

    def _people(self, roles: list[str]) -> list[str] | None:
        """Who may decide for these roles, as the run's policy said at its start."""
        members = self._policy.roles
        if members is None:
            return None  # a run started before roles were enforced
        return list(dict.fromkeys(p for role in roles for p in members.get(role, [])))
