"""People as designed steps: approvals with roles, escalation and deadlines.

A mixin of the engine's `Process`: it shares the run's ledger, desk and
publishing, and holds everything about asking people, so the engine module
stays about steps and budgets. How people's answers come in (signals, the
`decide` update) is workflows/decisions.py.
"""

from __future__ import annotations

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
                    timeout_summary=Shown(f"{request.id} · {cut[1] if cut else 'deadline for ' + '/'.join(stage.roles)}"),
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
            verdict, signer = self._desk.verdicts[request.id], self._desk.signers.get(request.id)
            return ApprovalResult(
                request_id=request.id,
                status=ApprovalStatus.APPROVED if verdict.approved else ApprovalStatus.REJECTED,
                by=verdict.by, comment=verdict.comment, decided_at=workflow.now(),
                issuer=signer.issuer if signer else None, kid=signer.kid if signer else None,
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
