"""The process engine: the steps a process is written in, and the run around them.

A process subclasses `Process` and writes its graph in `run` as plain Python:
each `llm`, `tool`, `rule` or `approval` call is one step, and the next step is
chosen from the previous step's typed result. The engine checks the budget
before every step, keeps the ledger, answers the `status`/`ledger` queries,
takes approvals by signal or update, and keeps search attributes and the Web
UI's current details truthful.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar, NoReturn, ParamSpec, TypeVar, overload

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from workflows.agent_steps import AgentSteps
from workflows.agents import Agent
from workflows.approval_desk import ApprovalDesk
from workflows.approvals import ApprovalStatus, AskPolicy
from workflows.budget import BudgetSteps, calls_and_clock, span
from workflows.decisions import Decisions
from workflows.human_steps import HumanSteps, NotApproved
from workflows.ledger import LedgerEntry, StepKind
from workflows.model_steps import ModelSteps
from workflows import patches
from workflows.outcome import BudgetExceeded, RunOutcome, RunState, StopRun, ToolRefused
from workflows.personal import Redactor, masked
from workflows.personal import values as values_of
from workflows.plan import PlannedStep
from workflows.retry_policies import TOOL_RETRY, bounded
from workflows.status import RunStatus
from workflows.unknown_outcomes import UnknownOutcomes, attempts_for, unknown_because, who_settles
from workflows import visibility
from workflows.visibility import Shown, SearchAttributeMirror, run_attributes, utc_text

with workflow.unsafe.imports_passed_through():
    from activities.identity import IdentityRefused, Verified, verify
    from activities.policy import Budget, BudgetOverride, PolicyActivities, RunPolicy
    from activities.tools.activity import ToolActivities
    from activities.tools.registry import Effect, ToolSpec, declared
    from activities.tools.contracts import ToolCall, ToolResult
    from activities.tools.grants import Grant

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
P = ParamSpec("P")

START_REFUSED = "StartRefused"


class Process(BudgetSteps, ModelSteps, HumanSteps, Decisions, AgentSteps, UnknownOutcomes):
    """Base of every Baton process. Subclasses set `name` and define `@workflow.run`."""

    name: ClassVar[str]
    roles: ClassVar[tuple[str, ...]] = ()  # roles the process may ask; the worker checks baton.toml has them
    agents: ClassVar[tuple[Agent, ...]] = ()  # agents it delegates to; baton.toml grants them tools
    outputs: ClassVar[tuple[type[BaseModel], ...]] = ()  # what its `llm` steps answer: named `<name>.<Class>` in history
    plan: ClassVar[tuple[PlannedStep, ...]] = ()  # its steps, declared for `baton tools` (workflows/plan.py)
    ends_in_temporal: ClassVar[bool] = True  # its failed ends fail the workflow (False: its caller reads them)
    inherits_starter: ClassVar[bool] = False  # started by a parent run, whose starter it takes (agents)

    def __init__(self) -> None:
        self._ledger: list[LedgerEntry] = []
        self._steps = 0  # ledger entries that count as steps, kept as they are recorded: no rescans per step
        self._state = RunState.RUNNING
        self._reason: str | None = None
        self._policy: RunPolicy | None = None
        self._budget: Budget | None = None
        self._cost = 0.0
        self._llm_calls = 0
        self._tool_calls = 0
        self._longest_wait_s = 0.0
        self._started: datetime | None = None
        self._current_step: str | None = None
        self._desk = ApprovalDesk()
        self._kept: BaseModel | None = None
        self._mirror = SearchAttributeMirror(workflow.info().typed_search_attributes)
        self._patches = patches.Patches()
        self._subject_digest: str | None = None  # whom the run is about, keyed (activities/subject.py)
        self._proof: bool | None = None
        self._starter: Verified | None = None
        self._starter_token: str | None = None  # from the start's header (worker/run_input.py), until verified
        self._screened: dict[str, Verified] = {}  # tokens the update validator proved, for its handler (decisions.py)
        self._personal = Redactor()  # the personal values seen, kept out of what Temporal shows undecoded

    def take_starter_token(self, token: str | None) -> None:
        """The token the start carried in its header, handed over by the inbound interceptor."""
        self._starter_token = token

    def learn_personal(self, *values: object) -> None:
        """Values whose personal fields (workflows/personal.py) no readable surface may show: the run's input, by the interceptor."""
        self._personal.learn(*values)
        self._personal.subject = next(values_of(values, "subject"), None)

    # ----- the run -------------------------------------------------------------------

    async def execute(
        self, body: Callable[[], Awaitable[RunOutcome]], budget: BudgetOverride | None,
        policy: RunPolicy | None = None,
    ) -> RunOutcome:
        """Run `body` under the worker's policy (or one handed down); breaches and failed steps end typed."""
        self._publish()
        # Asked before the policy's local activity, as the first command: asked after it, in the
        # task its result completes, Core's replay met the marker before the call (nondeterminism).
        self._patches.start()
        proof = self._patches.holds(patches.PROOF)
        self._mirror.batch_cost = self._patches.holds(patches.COST_BATCH)
        by_timer = self._patches.holds(patches.WALL_CLOCK)
        self._caps_by_timer = self._patches.holds(patches.APPROVAL_CAPS)  # an agent asked it before its local activity
        # Asked before the local activity too, and only by runs about someone (agents are not).
        subject = self._personal.subject if self._personal.subject and self._patches.holds(patches.SUBJECT) else None
        # Since the baseline, the digest of whom the run is about comes with the policy: one local activity.
        with_policy = subject is not None and policy is None and self._patches.holds(patches.SUBJECT_WITH_POLICY)
        self._policy = policy or await workflow.execute_local_activity_method(
            PolicyActivities.run_policy,
            args=[self.name, subject] if with_policy else [self.name],
            start_to_close_timeout=timedelta(seconds=10),
            summary=Shown("load run policy (budget, tiers" + (", whom the run is about, keyed)" if with_policy else ")")),
        )
        self._proof = proof  # only now: a decision is verified with the keys the policy carries
        if self._proof and not self.inherits_starter:
            self._starter = self._verified_starter()
        self._start_budget(self._policy.budget, budget, by_timer=by_timer)
        if with_policy:
            self._subject_digest = self._policy.subject_digest  # upserted with the run's next change of attributes
        elif subject is not None:
            await self._mark_subject(subject)
        try:
            outcome = await body()
        except StopRun as stop:
            outcome = self.end(stop.state, stop.reason, self._kept, cap=stop.cap)
        self._state, self._reason, self._current_step = outcome.state, outcome.reason, None
        self._desk.open.clear()  # a run that ended asks nobody anything
        self._publish(settle=True)
        if outcome.state.fails_in_temporal and self.ends_in_temporal and self._patches.holds(patches.FAILED_ENDS):
            self._fail_in_temporal(outcome)
        return outcome

    async def _mark_subject(self, subject: str) -> None:
        """Give the run its BatonSubject search attribute: a keyed digest of whom it is about (activities/subject.py)."""
        digest = await workflow.execute_local_activity(
            "subject_digest", subject, result_type=str, start_to_close_timeout=timedelta(seconds=10),
            summary=Shown("whom the run is about, as a keyed digest (for access and erasure requests)"),
        )
        self._subject_digest = digest  # upserted with the run's next change of attributes, not as an event of its own

    def _verified_starter(self) -> Verified | None:
        """Who started the run, as the token on the start proves; with [identity], a start without one is refused.

        The refusal is a non-retryable failure naming the reason (never the token);
        Baton's status says `failed` before it, as Temporal will.
        """
        token, self._starter_token = self._starter_token, None
        trusted = self._policy.identity
        if trusted is None:
            return None  # no identity provider configured: starts are not attributed (and nobody can decide)
        try:
            return verify(token, trusted, workflow.now())
        except IdentityRefused as refused:
            reason = f"start refused: {refused}"
            self._state, self._reason = RunState.FAILED, reason
            self._publish()
            raise ApplicationError(reason, type=START_REFUSED, non_retryable=True) from None

    def _fail_in_temporal(self, outcome: RunOutcome) -> NoReturn:
        """Close the run as Failed, so Temporal's status (the Web UI's Failures filter) tells Baton's end.

        The failure's type is the state, its message the reason, its details the
        RunOutcome, which `Baton.result()` and `baton audit` read back typed.
        Search attributes and current details were published first.
        """
        raise ApplicationError(
            self._personal.text(outcome.reason), outcome, type=outcome.state.value, non_retryable=True
        )  # the message is shown undecoded; the outcome (encrypted) keeps the reason whole

    def keep(self, result: R) -> R:
        """The process's result object, returned as it stands if the run is stopped early."""
        self._kept = result
        return result

    def end(self, state: RunState, reason: str, result: BaseModel | None = None, cap: str | None = None) -> RunOutcome:
        """The typed outcome a process returns to finish its run (`cap`: the budget cap that stopped it)."""
        return RunOutcome(
            process=self.name,
            state=state,
            reason=reason,
            result=result,
            cost_usd=round(self._cost, 6),
            steps=self._steps_taken(),
            cap=cap,
        )

    # ----- steps (model steps: workflows/model_steps.py; people: workflows/human_steps.py) --

    @overload
    async def tool(
        self, step: str, tool: ToolSpec[A, R] | Callable[[Any, A, Any], R], args: A, *,
        approval: AskPolicy | None = None, facts: BaseModel | None = None, retry: RetryPolicy = TOOL_RETRY,
        timeout: timedelta = timedelta(seconds=30), if_unknown: AskPolicy | None = None,
    ) -> R: ...

    @overload
    async def tool(
        self, step: str, tool: str, args: BaseModel, *, approval: AskPolicy | None = None,
        facts: BaseModel | None = None, retry: RetryPolicy = TOOL_RETRY, timeout: timedelta = timedelta(seconds=30),
        if_unknown: AskPolicy | None = None,
    ) -> Any: ...

    async def tool(
        self,
        step: str,
        tool: str | ToolSpec | Callable[..., BaseModel],
        args: BaseModel,
        *,
        approval: AskPolicy | None = None,
        facts: BaseModel | None = None,
        retry: RetryPolicy = TOOL_RETRY,
        timeout: timedelta = timedelta(seconds=30),
        if_unknown: AskPolicy | None = None,
    ) -> Any:
        """One tool call, if granted; writes carry an idempotency key (per step, or per business object).

        `tool` is the tool's declaration (its `@tool` method, `Systems.NAME`, or its
        spec): the step then takes that tool's argument type and returns its result
        type, as a type checker sees it. A name (a string) works too, untyped.

        An irreversible tool always asks first, under `approval` (whose threshold
        rule sees `facts`, or the arguments); any other tool asks first when given
        one. NotApproved ends or reroutes the run.
        A tool that runs at most once gets one attempt; if its outcome is
        unknown, a person is asked under `if_unknown` (else `approval`) whether
        to send it again (workflows/unknown_outcomes.py).
        A tool not granted to the process, or an argument out of its bounds, is
        recorded as refused and raises ToolRefused before anything is sent.
        """
        spec = declared(tool)
        name = spec.name
        problem = self._grant_refusal(name, args.model_dump(mode="json"))
        if problem:
            self._record(step=step, kind=StepKind.TOOL, name=name, effect=spec.effect.value,
                         started_at=workflow.now(), outcome="refused", detail=problem, input=args.model_dump(mode="json"))
            raise ToolRefused(step, problem)
        settles = who_settles(step, spec, if_unknown, approval)
        if spec.effect is Effect.IRREVERSIBLE or approval is not None:  # an approval given is never ignored
            await self._approve_first(step, name, args, approval, facts)
        for nth in itertools.count(1):
            entry = self._tool_entry(step, spec, args, await self._before_step(step, tool=True))
            bounded(step, retry)
            retry = attempts_for(spec, retry)
            try:
                res = await self._run_tool(entry, spec, args, retry=retry, timeout=timeout)
                break
            except ActivityError as err:
                why = unknown_because(spec, err)
                if why is None or settles is None:
                    self._fail(entry, retry.maximum_attempts, err)
                await self._settle_unknown(entry, spec, args, why, settles, nth)
        value = spec.result.model_validate(res.output)
        self._personal.learn(args, value)
        self._record(**entry, attempts=res.attempt, outcome="ok", decision=res.output)
        return value

    def _grant_refusal(self, name: str, args: dict) -> str | None:
        grant = self._grant()
        return None if grant is None else grant.refusal(self.name, name, args)

    def _grant(self) -> Grant | None:
        """This process's (or agent's) grant; None for runs started before grants existed."""
        grants = self._policy.grants
        return None if grants is None else grants.get(self.name, Grant())

    def _tool_entry(self, step: str, spec: ToolSpec, args: BaseModel, started: datetime) -> dict:
        return dict(
            step=step, kind=StepKind.TOOL, name=spec.name, effect=spec.effect.value,
            idempotency_key=self._idempotency_key(step, spec), started_at=started,
            input=args.model_dump(mode="json"),
        )

    def _idempotency_key(self, step: str, spec: ToolSpec) -> str | None:
        return spec.idempotency_key(f"{workflow.info().workflow_id}/{step}")

    async def _run_tool(
        self, entry: dict, spec: ToolSpec, args: BaseModel, *, retry: RetryPolicy, timeout: timedelta,
        offload: bool = False,
    ) -> ToolResult:
        """Schedule the tool activity for the step `entry` (see `_tool_entry`); it checks the grant again, from config."""
        step = entry["step"]
        self._tool_calls += 1
        call = ToolCall(
            step=step, tool=spec.name, args=args.model_dump(mode="json"), idempotency_key=entry["idempotency_key"],
            grantee=self.name, offload=offload,
        )
        return await workflow.execute_activity_method(
            ToolActivities.run_tool, call, start_to_close_timeout=timeout, retry_policy=attempts_for(spec, retry),
            schedule_to_close_timeout=self._time_left(), summary=Shown(f"{step} · {spec.name} ({spec.effect.value})"),
        )

    async def _approve_first(
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
            proposed=f"{name} {json.dumps(masked(args))}",
            context=facts or args,
            policy=policy,
        )
        if result.status is not ApprovalStatus.APPROVED:
            raise NotApproved(step, result)

    async def rule(self, step: str, decide: Callable[P, R], *inputs: P.args, **named: P.kwargs) -> R:
        """A deterministic decision in code (no model); its typed result is recorded, with what it was given.

        Typed as `decide` is: the inputs its parameters take, the result it returns.
        """
        started = await self._before_step(step)
        result = decide(*inputs, **named)
        given: dict[str, Any] = {"inputs": [_as_json(i) for i in inputs]}
        if named:
            given["named"] = {k: _as_json(v) for k, v in named.items()}
        self._record(
            step=step, kind=StepKind.RULE, name=decide.__name__, started_at=started,
            outcome="ok", decision=result.model_dump(mode="json"), input=given,
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
            usage=self.usage() if self._budget else None,
            open_requests=list(self._desk.open.values()),
            reason=self._reason,
            started_by=self._starter,
            refused_signals=self._desk.refused_signals,
        )

    # ----- bookkeeping ---------------------------------------------------------------

    def _steps_taken(self) -> int:
        return self._steps

    def _adopt_ledger(self, ledger: list[LedgerEntry]) -> None:
        """Continue `ledger` (a run carried across continue-as-new), counting its steps once."""
        self._ledger = ledger
        self._steps = sum(1 for e in ledger if e.counts_as_step)

    def _record(self, **fields: Any) -> None:
        """Append a ledger entry with the step's `input`.

        The ledger (a query's answer, encrypted by the codec) keeps values; `baton audit`
        exports what the run's `[audit] values` allows, its digests keyed with the audit
        key (client/audit.py), which no workflow ever holds. Runs before this kept
        unkeyed digests here, which a dictionary of likely inputs reverses.
        """
        _mark_estimated(fields)
        started = fields["started_at"]
        fields.setdefault("latency_ms", (workflow.now() - started).total_seconds() * 1000)
        entry = LedgerEntry(seq=len(self._ledger) + 1, **fields)
        self._ledger.append(entry)
        self._steps += entry.counts_as_step
        self._publish()

    def _fail(self, entry: dict, attempts: int | None, err: Exception, counted: bool = False) -> None:
        """Record a failed step and end the run typed, naming the step and the cause.

        `counted` says `attempts` was counted by the step itself; otherwise it is
        the policy's maximum, true only when the retries ran out.
        """
        message = str(err.cause) if isinstance(err, ActivityError) and err.cause else str(err)
        if self._wall_clock_spent() or (
            isinstance(err, ActivityError) and err.retry_state == RetryState.TIMEOUT and self._time_left() is not None
        ):  # the activity's schedule-to-close is the wall clock's remainder: its timeout is the cap's
            self._record(**entry, attempts=attempts or 1, outcome="over_budget",
                         detail=f"no time left in max_wall_clock for another attempt; last: {message}")
            raise BudgetExceeded("max_wall_clock", f"max_wall_clock: {span(self._elapsed())} since the run started, "
                                                   f"limit {span(self._budget.max_wall_clock)}; "
                                                   f"{entry['step']} could not finish in the time left")
        if isinstance(err, ActivityError):
            exhausted = err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
            attempts = attempts if exhausted or counted else None
            message += f" ({err.retry_state.name.lower() if err.retry_state else 'failed'})"
        self._record(**entry, attempts=attempts or 1, outcome="error", detail=message)
        raise StopRun(RunState.FAILED, f"step {entry['step']} failed: {message}")

    def _publish(self, *, settle: bool = False) -> None:
        """Keep search attributes truthful (`settle`: the run is about to wait or end).

        A change of cost alone may wait for a few more (workflows/visibility.py SearchAttributeMirror).
        The Web UI's current details are rendered when asked (`current_details`).
        """
        self._mirror.publish(
            run_attributes(self.name, self._state, self._cost, self._desk.open.values(), subject=self._subject_digest),
            settle=settle,
        )

    def _budget_line(self) -> str:
        """What each cap has used, of what it allows: the kill switches at a glance."""
        b = self._budget
        if b is None:
            return f"${self._cost:.6f}"
        parts = [f"${self._cost:.6f} of ${b.max_cost_usd}", f"step {self._steps_taken()} of {b.max_steps}"]
        line = " · ".join([*parts, *calls_and_clock(b, self.usage())])
        # The details change only when the run does: while it waits, say when its clock was read.
        return line if self._state.is_final else f"{line} as of {utc_text(workflow.now())} UTC"

    def current_details(self) -> str:
        """The Web UI's current details of the run as it is now: rendered on the metadata query's answer
        (worker/current_details.py), so a step costs no markdown nobody reads."""
        return self._personal.text(visibility.current_details(
            self.name, self._state, self._budget_line(), step=self._current_step, reason=self._reason,
            run_id=workflow.info().workflow_id, asked=self._desk.open.values(),
        ))


def _as_json(value: object) -> Any:
    """A rule's input as the ledger keeps it: a model as its own dump, anything else as pydantic serializes it."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else to_jsonable_python(value, by_alias=False)


def _mark_estimated(fields: dict[str, Any]) -> None:
    """An entry billing a model request whose usage was unknown says so: its cost is an estimate, not a bill."""
    estimated = sum(1 for c in fields.get("calls") or [] if c.cost_estimate)
    if not estimated:
        return
    note = f"cost estimated: {estimated} request(s) with unknown usage billed at their worst case"
    fields["cost_estimated"] = True
    fields["detail"] = f"{fields['detail']}; {note}" if fields.get("detail") else note
