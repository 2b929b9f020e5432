"""Model steps: one `llm` call per step, its answer validated, its failures billed and typed.

A mixin of the engine's `Process`, sharing the run's budget, ledger and
bookkeeping; the model activity does the calling, fallover and repairs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

from workflows import patches
from workflows.ledger import StepKind
from workflows.outcome import BudgetExceeded, ModelOutputInvalid, PersonalDataRefused, RunState, StopRun
from workflows.retry_policies import LLM_RETRY, bounded
from workflows.spend_cap import CapRefused, SpendCapSteps
from workflows.visibility import Shown

with workflow.unsafe.imports_passed_through():
    from activities.llm.activity import CALLS as MODEL_CALLS
    from activities.llm.activity import ModelActivities
    from activities.llm.contracts import NOT_SENT, LlmRequest, LlmResult
    from activities.llm.output_type import UnknownOutputType, type_name
    from activities.spend import SpendRefusal

M = TypeVar("M", bound=BaseModel)


class ModelSteps(SpendCapSteps):
    _patches: patches.Patches

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
        personal: bool = False,
    ) -> M:
        """One model call; returns the validated `output` model.

        Raises ModelOutputInvalid (a StopRun a process may catch) when the model
        never gave a valid answer; a budget the call could overrun ends the run.
        `personal=True` says the prompt carries personal data: only models allowed
        to receive it are asked, and with none the run ends PersonalDataRefused. A
        prompt carrying a value of a field marked personal must say so, or the run
        ends the same way before anything is sent (workflows/personal.py).
        """
        self._undeclared_personal(step, system + "\n" + prompt, personal, output.__name__)
        try:
            output_type = type_name(output, self.name)
        except UnknownOutputType as err:
            raise StopRun(RunState.FAILED, f"step {step}: {err}") from None
        request = LlmRequest(
            step=step,
            tier=tier,
            model=model,
            system=system,
            prompt=prompt,
            output_type=output_type,
            max_output_tokens=max_output_tokens,
            personal=personal,
        )
        res, entry = await self._ask_model(request, output.__name__, retry, timeout)
        try:
            value = output.model_validate(res.output)
        except ValidationError as err:
            self._fail(entry, res.attempt, err)
        self._record(**entry, attempts=res.attempt, outcome="ok", decision=value.model_dump(mode="json"))
        return value

    def _undeclared_personal(self, step: str, text: str, personal: bool, name: str) -> None:
        """End the run, naming the fields, if `text` carries personal values the step did not declare."""
        fields = [] if personal else self._personal.mentioned(text)
        if not fields or not self._patches.holds(patches.PERSONAL):
            return
        problem = (
            f"its prompt carries {', '.join(fields)}, marked personal, and the step does not say personal=True "
            "(so that only models allowed personal data are asked); nothing was sent"
        )
        self._record(step=step, kind=StepKind.LLM, name=name, started_at=workflow.now(), outcome="refused",
                     detail=problem)
        raise PersonalDataRefused(step, problem)

    async def _ask_model(
        self, request: LlmRequest, name: str, retry: RetryPolicy, timeout: timedelta | None
    ) -> tuple[LlmResult, dict]:
        """Check the caps, call the model activity, bill what it cost; returns it and its ledger fields.

        A request the process's cap across runs refuses is waited for, asked about or
        ends the run (workflows/spend_cap.py); then the step starts over.
        """
        request = request.model_copy(update={"process": self.name.partition("/")[0]})  # an agent's: its process's
        while True:
            started = await self._before_step(request.step, llm=True)
            entry = dict(step=request.step, kind=StepKind.LLM, name=name, tier=request.tier, started_at=started,
                         input=request.model_dump(mode="json", include={"system", "prompt", "history", "output_type"}))
            try:
                return await self._model_call(request, entry, retry, timeout), entry
            except CapRefused as refused:
                over = await self._over_cap(request.step, refused.refusal)
                request = request.model_copy(update={"over_cap": over})

    async def _model_call(
        self, request: LlmRequest, entry: dict, retry: RetryPolicy, timeout: timedelta | None
    ) -> LlmResult:
        bounded(request.step, retry)
        planned = request.model or " | ".join(self._policy.tiers.get(request.tier, ["?"]))
        request = request.model_copy(update={"budget_remaining_usd": round(self._budget.max_cost_usd - self._cost, 9)})
        try:
            res = await workflow.execute_activity_method(
                ModelActivities.call_model,
                request,
                start_to_close_timeout=timeout or timedelta(seconds=self._policy.llm_timeout_s),
                schedule_to_close_timeout=self._time_left(),
                retry_policy=retry,
                summary=Shown(f"{request.step} · {request.tier}→{planned}"),
            )
        except ActivityError as err:
            self._model_failure(entry, retry, err)
        self._cost += res.cost_usd
        self._llm_calls += _sent(res.calls)
        entry.update(
            provider=res.provider,
            model=res.model,
            requested_model=res.requested_model,
            reported_model=res.reported_model,
            tokens_in=res.tokens_in,
            tokens_out=res.tokens_out,
            cached_tokens=res.cached_tokens,
            cost_usd=res.cost_usd,
            calls=res.calls,
        )
        return res

    def _model_failure(self, entry: dict, retry: RetryPolicy, err: ActivityError) -> None:
        """Bill the calls a failed model step made, then end or route the run by the failure's type."""
        cause = err.cause if isinstance(err.cause, ApplicationError) else None
        # A step that timed out has no failure details: its last heartbeat says what went out.
        calls = MODEL_CALLS.validate_python(cause.details[0]) if cause and cause.details else _cut_off(err)
        if not calls:
            self._llm_calls += 1  # it crashed before saying anything: assume the request went out
            self._fail(entry, retry.maximum_attempts, err)
        cost = sum(c.cost_usd for c in calls)
        self._cost += cost
        self._llm_calls += _sent(calls)
        entry = {
            **entry,
            "provider": calls[-1].provider,
            "model": calls[-1].model,
            "requested_model": calls[-1].requested_model,
            "reported_model": calls[-1].reported_model,
            "tokens_in": sum(c.tokens_in for c in calls),
            "tokens_out": sum(c.tokens_out for c in calls),
            "cached_tokens": sum(c.cached_tokens for c in calls),
            "cost_usd": cost,
            "calls": calls,
        }
        attempts = max(c.attempt for c in calls)
        kind = cause.type if cause else None
        if kind == "BudgetWouldOverrun":
            self._record(**entry, attempts=attempts, outcome="over_budget", detail=cause.message)
            raise BudgetExceeded("max_cost_usd", f"{cause.message}; stopped at {entry['step']}")
        if kind == "SpendCapReached":
            refusal = SpendRefusal.model_validate(cause.details[1])  # not sent: no step spent
            self._record(**entry, attempts=attempts, outcome="refused", detail=cause.message,
                         decision=refusal.model_dump(mode="json"))
            raise CapRefused(refusal)
        if kind == "PersonalDataRefused":
            self._record(**entry, attempts=attempts, outcome="refused", detail=cause.message)
            raise PersonalDataRefused(entry["step"], cause.message)
        if kind == "InvalidModelOutput":
            self._record(**entry, attempts=attempts, outcome="invalid", detail=cause.message)
            raise ModelOutputInvalid(entry["step"], cause.message)
        self._fail(entry, attempts, err, counted=True)


def _cut_off(err: ActivityError) -> list:
    """The calls a timed-out step's last heartbeat recorded (each request in flight billed at its worst case)."""
    if not isinstance(err.cause, TimeoutError) or not err.cause.last_heartbeat_details:
        return []
    return MODEL_CALLS.validate_python(err.cause.last_heartbeat_details[0])


def _sent(calls: list) -> int:
    """Model requests that went out (one the budget refused, or withheld from a model, never was)."""
    return sum(1 for c in calls if c.outcome not in NOT_SENT)
