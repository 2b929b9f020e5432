"""The process engine: the steps a process is written in, and the run around them.

A process subclasses `Process` and writes its graph in `run` as plain Python:
each `llm`, `tool`, `rule` or `approval` call is one step, and the next step is
chosen from the previous step's typed result. The engine checks the budget
before every step, keeps the ledger, answers the `status`/`ledger` queries,
takes approvals by signal or update, and keeps search attributes and the Web
UI's current details truthful.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from workflows import search_attributes as sa
from workflows.approval_desk import ApprovalDesk
from workflows.approvals import ApprovalStatus, AskPolicy
from workflows.human_steps import HumanSteps, NotApproved
from workflows.ledger import LedgerEntry, StepKind
from workflows.outcome import ModelOutputInvalid, RunOutcome, RunState, StopRun
from workflows.status import RunStatus
from workflows.visibility import SearchAttributeMirror, approval_markdown

with workflow.unsafe.imports_passed_through():
    from activities.llm.activity import CALLS as MODEL_CALLS
    from activities.llm.activity import ModelActivities
    from activities.llm.contracts import LlmRequest
    from activities.llm.output_type import type_path
    from activities.policy import Budget, BudgetOverride, PolicyActivities, RunPolicy
    from activities.tools.activity import ToolActivities
    from activities.tools.catalog import TOOLS, Effect
    from activities.tools.contracts import ToolCall

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=4,
)
TOOL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)


def _bounded(step: str, retry: RetryPolicy) -> None:
    """Every step's attempts are bounded: Temporal's default (0) would retry forever."""
    if retry.maximum_attempts < 1:
        raise StopRun(
            RunState.FAILED, f"step {step}: its retry policy must set maximum_attempts (>= 1), not unlimited"
        )


class Process(HumanSteps):
    """Base of every Baton process. Subclasses set `name` and define `@workflow.run`."""

    name: ClassVar[str]
    roles: ClassVar[tuple[str, ...]] = ()  # roles the process may ask; the worker checks baton.toml has them

    def __init__(self) -> None:
        self._ledger: list[LedgerEntry] = []
        self._state = RunState.RUNNING
        self._reason: str | None = None
        self._policy: RunPolicy | None = None
        self._budget: Budget | None = None
        self._cost = 0.0
        self._current_step: str | None = None
        self._desk = ApprovalDesk()
        self._kept: BaseModel | None = None
        self._mirror = SearchAttributeMirror()

    # ----- the run -------------------------------------------------------------------

    async def execute(
        self, body: Callable[[], Awaitable[RunOutcome]], budget: BudgetOverride | None
    ) -> RunOutcome:
        """Run `body` under the worker's policy; budget breaches and failed steps end typed."""
        self._publish()
        self._policy = await workflow.execute_local_activity_method(
            PolicyActivities.run_policy,
            self.name,
            start_to_close_timeout=timedelta(seconds=10),
            summary="load run policy (budget, tiers)",
        )
        self._budget = self._policy.budget.tightened(budget)
        try:
            outcome = await body()
        except StopRun as stop:
            outcome = self.end(stop.state, stop.reason, self._kept)
        self._state, self._reason, self._current_step = outcome.state, outcome.reason, None
        self._publish()
        return outcome

    def keep(self, result: R) -> R:
        """The process's result object, returned as it stands if the run is stopped early."""
        self._kept = result
        return result

    def end(self, state: RunState, reason: str, result: BaseModel | None = None) -> RunOutcome:
        """The typed outcome a process returns to finish its run."""
        return RunOutcome(
            process=self.name,
            state=state,
            reason=reason,
            result=result,
            cost_usd=round(self._cost, 6),
            steps=self._steps_taken(),
        )

    # ----- steps ---------------------------------------------------------------------

    async def llm(
        self,
        step: str,
        prompt: str,
        output: type[M],
        *,
        tier: str = "fast",
        system: str = "",
        model: str | None = None,
        max_output_tokens: int = 1024,
        retry: RetryPolicy = LLM_RETRY,
        timeout: timedelta | None = None,
    ) -> M:
        """One model call; returns the validated `output` model.

        Raises ModelOutputInvalid (a StopRun a process may catch) when the model
        never gave a valid answer; a budget the call could overrun ends the run.
        """
        started = self._before_step(step)
        _bounded(step, retry)
        planned = model or " | ".join(self._policy.tiers.get(tier, ["?"]))
        request = LlmRequest(
            step=step,
            tier=tier,
            model=model,
            system=system,
            prompt=prompt,
            output_type=type_path(output),
            max_output_tokens=max_output_tokens,
            budget_remaining_usd=round(self._budget.max_cost_usd - self._cost, 9),
        )
        entry = dict(step=step, kind=StepKind.LLM, name=output.__name__, tier=tier, started_at=started)
        try:
            res = await workflow.execute_activity_method(
                ModelActivities.call_model,
                request,
                start_to_close_timeout=timeout or timedelta(seconds=self._policy.llm_timeout_s),
                retry_policy=retry,
                summary=f"{step} · {tier}→{planned}",
            )
        except ActivityError as err:
            self._model_failure(entry, retry, err)
        self._cost += res.cost_usd
        fields = dict(
            provider=res.provider,
            model=res.model,
            tokens_in=res.tokens_in,
            tokens_out=res.tokens_out,
            cached_tokens=res.cached_tokens,
            cost_usd=res.cost_usd,
            calls=res.calls,
        )
        try:
            value = output.model_validate(res.output)
        except ValidationError as err:
            self._fail({**entry, **fields}, res.attempt, err)
        self._record(**entry, **fields, attempts=res.attempt, outcome="ok")
        return value

    def _model_failure(self, entry: dict, retry: RetryPolicy, err: ActivityError) -> None:
        """Bill the calls a failed model step made, then end or route the run by the failure's type."""
        cause = err.cause if isinstance(err.cause, ApplicationError) else None
        calls = MODEL_CALLS.validate_python(cause.details[0]) if cause and cause.details else []
        if not calls:
            self._fail(entry, retry.maximum_attempts, err)
        cost = sum(c.cost_usd for c in calls)
        self._cost += cost
        entry = {
            **entry,
            "provider": calls[-1].provider,
            "model": calls[-1].model,
            "tokens_in": sum(c.tokens_in for c in calls),
            "tokens_out": sum(c.tokens_out for c in calls),
            "cached_tokens": sum(c.cached_tokens for c in calls),
            "cost_usd": cost,
            "calls": calls,
        }
        attempts = max(c.attempt for c in calls)
        if cause.type == "BudgetWouldOverrun":
            self._record(**entry, attempts=attempts, outcome="over_budget", detail=cause.message)
            raise StopRun(RunState.BUDGET_EXCEEDED, f"{cause.message}; stopped at {entry['step']}")
        if cause.type == "InvalidModelOutput":
            self._record(**entry, attempts=attempts, outcome="invalid", detail=cause.message)
            raise ModelOutputInvalid(entry["step"], cause.message)
        self._fail(entry, attempts, err, counted=True)

    async def tool(
        self,
        step: str,
        name: str,
        args: BaseModel,
        *,
        approval: AskPolicy | None = None,
        facts: BaseModel | None = None,
        retry: RetryPolicy = TOOL_RETRY,
        timeout: timedelta = timedelta(seconds=30),
    ) -> Any:
        """One tool call; writes carry an idempotency key from the workflow id and step.

        An irreversible tool always asks first, under `approval` (whose threshold
        rule sees `facts`, or the arguments); NotApproved ends or reroutes the run.
        """
        spec = TOOLS[name]
        if spec.effect is Effect.IRREVERSIBLE:
            await self._approve_irreversible(step, name, args, approval, facts)
        started = self._before_step(step)
        _bounded(step, retry)
        key = f"{workflow.info().workflow_id}/{step}" if spec.needs_idempotency_key else None
        entry = dict(
            step=step, kind=StepKind.TOOL, name=name, effect=spec.effect.value,
            idempotency_key=key, started_at=started,
        )
        try:
            res = await workflow.execute_activity_method(
                ToolActivities.run_tool,
                ToolCall(step=step, tool=name, args=args.model_dump(mode="json"), idempotency_key=key),
                start_to_close_timeout=timeout,
                retry_policy=retry,
                summary=f"{step} · {name} ({spec.effect.value})",
            )
        except ActivityError as err:
            self._fail(entry, retry.maximum_attempts, err)
        value = spec.result.model_validate(res.output)
        self._record(**entry, attempts=res.attempt, outcome="ok", decision=res.output)
        return value

    async def _approve_irreversible(
        self, step: str, name: str, args: BaseModel, policy: AskPolicy | None, facts: BaseModel | None
    ) -> None:
        if policy is None:
            raise StopRun(
                RunState.FAILED,
                f"step {step}: {name} is irreversible and may only run under an approval policy (approval=...)",
            )
        result = await self.approval(
            f"{step}.approval",
            ask=f"Allow {name} for step {step}?",
            proposed=f"{name} {args.model_dump_json()}",
            context=facts or args,
            policy=policy,
        )
        if result.status is not ApprovalStatus.APPROVED:
            raise NotApproved(step, result)

    def rule(self, step: str, decide: Callable[..., R], *inputs: BaseModel) -> R:
        """A deterministic decision in code (no model); its typed result is recorded."""
        started = self._before_step(step)
        result = decide(*inputs)
        self._record(
            step=step, kind=StepKind.RULE, name=decide.__name__, started_at=started,
            outcome="ok", decision=result.model_dump(mode="json"),
        )
        return result

    # ----- queries -------------------------------------------------------------------

    @workflow.query
    def ledger(self) -> list[LedgerEntry]:
        return self._ledger

    @workflow.query
    def status(self) -> RunStatus:
        return RunStatus(
            process=self.name,
            state=self._state,
            current_step=self._current_step,
            steps=self._steps_taken(),
            cost_usd=round(self._cost, 6),
            budget=self._budget,
            open_requests=list(self._desk.open.values()),
            reason=self._reason,
        )

    # ----- bookkeeping ---------------------------------------------------------------

    def _steps_taken(self) -> int:
        return sum(1 for e in self._ledger if e.counts_as_step)

    def _before_step(self, step: str) -> datetime:
        """Check every cap before a step starts; returns the step's start time."""
        budget = self._budget
        if self._steps_taken() >= budget.max_steps:
            raise StopRun(
                RunState.BUDGET_EXCEEDED,
                f"max_steps: {self._steps_taken()} steps taken, limit {budget.max_steps}; "
                f"stopped before {step}",
            )
        if self._cost >= budget.max_cost_usd:
            raise StopRun(
                RunState.BUDGET_EXCEEDED,
                f"max_cost_usd: ${self._cost:.6f} spent, limit ${budget.max_cost_usd}; "
                f"stopped before {step}",
            )
        self._current_step = step
        self._publish()
        return workflow.now()

    def _record(self, **fields: Any) -> None:
        started = fields["started_at"]
        fields.setdefault("latency_ms", (workflow.now() - started).total_seconds() * 1000)
        self._ledger.append(LedgerEntry(seq=len(self._ledger) + 1, **fields))
        self._publish()

    def _fail(self, entry: dict, attempts: int | None, err: Exception, counted: bool = False) -> None:
        """Record a failed step and end the run typed, naming the step and the cause.

        `counted` says `attempts` was counted by the step itself; otherwise it is
        the policy's maximum, true only when the retries ran out.
        """
        message = str(err.cause) if isinstance(err, ActivityError) and err.cause else str(err)
        if isinstance(err, ActivityError):
            exhausted = err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
            attempts = attempts if exhausted or counted else None
            message += f" ({err.retry_state.name.lower() if err.retry_state else 'failed'})"
        self._record(**entry, attempts=attempts or 1, outcome="error", detail=message)
        raise StopRun(RunState.FAILED, f"step {entry['step']} failed: {message}")

    def _publish(self) -> None:
        """Keep search attributes and the Web UI's current details truthful."""
        self._mirror.publish(
            [
                (sa.PROCESS, self.name),
                (sa.STATUS, self._state.value),
                (sa.COST_USD, round(self._cost, 6)),
                (sa.AWAITING_APPROVAL, bool(self._desk.open)),
                (sa.APPROVAL_ROLES, sorted({role for r in self._desk.open.values() for role in r.roles})),
            ]
        )
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        head = f"**{self.name}** · {self._state.value} · ${self._cost:.6f}"
        if self._budget:
            head += f" of ${self._budget.max_cost_usd} · step {self._steps_taken()} of {self._budget.max_steps}"
        if self._state.is_final:
            return f"{head}\n\n{self._reason}"
        if not self._desk.open:
            return f"{head}\n\nRunning step `{self._current_step}`"
        run_id = workflow.info().workflow_id
        return "\n\n".join([head, *(approval_markdown(run_id, r) for r in self._desk.open.values())])
