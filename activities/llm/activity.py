"""The one activity through which every model call passes.

It resolves the step's tier to candidate models, asks the first healthy one,
sends validation errors back for up to `repair_turns` repairs, falls over to
the next candidate when a provider is unavailable or its answers never
validate, names the structured-output modes to try when a server refuses the
request's shape, withholds a prompt carrying personal data from models not
allowed to receive it, refuses a call whose worst case would overrun the
run's budget, reserves each request's worst case under its process's cap
across runs (activities/spend.py) and settles what it cost, and prices
every call it made. Temporal's retry policy owns
retries of the whole step: calls made by earlier attempts travel in heartbeat
details, so the ledger still lists every one of them. Each provider request
is a `chat {model}` span and each attempt a step on Baton's meters
(activities/llm/telemetry.py).
"""

from __future__ import annotations

import asyncio
import functools
import time
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm.catalog import Catalog, ModelSpec
from activities.llm.contracts import LlmRequest, LlmResult, ModelCall
from activities.llm.conversation import PAYLOAD_SLOT, Conversation, Message
from activities.llm.health import HealthBoard
from activities.llm.offline import OfflineProvider
from activities.llm.output_type import (
    UnknownOutputType,
    problems,
    repair_request,
    resolve,
)
from activities.llm.provider import (
    Completion,
    Provider,
    ProviderRejected,
    ProviderUnavailable,
)
from activities.llm.telemetry import StepTelemetry
from activities.payloads import LegacyPayloads
from activities.spend import SpendCapUnavailable, SpendCaps, Ticket

CALLS = TypeAdapter(list[ModelCall])
CUT_OFF = "timed out before an answer"


class NeverValid(Exception):
    """A candidate's answers failed validation through every repair turn: the next candidate is asked."""


class LlmSettings(BaseModel):
    """`[llm]` in baton.toml."""

    model_config = ConfigDict(extra="forbid")

    repair_turns: int = Field(default=2, ge=0, le=5, description="re-asks after a schema-invalid answer")
    max_retry_after_s: float = Field(default=300.0, gt=0, description="cap on a provider's Retry-After")
    cooldown_s: float = Field(default=30.0, ge=0, description="how long a failed model ranks last")


class ModelActivities:
    def __init__(
        self,
        catalog: Catalog,
        providers: dict[str, Provider] | None = None,
        settings: LlmSettings | None = None,
        payloads: LegacyPayloads | None = None,
        telemetry: StepTelemetry | None = None,
        spend: SpendCaps | None = None,
    ) -> None:
        self._spend = spend or SpendCaps()
        self._payloads = payloads
        self._telemetry = telemetry or StepTelemetry()
        self._catalog = catalog
        self._providers: dict[str, Provider] = providers or {"offline": OfflineProvider()}
        self._settings = settings or LlmSettings()
        self._health = HealthBoard(self._settings.cooldown_s)

    @activity.defn(name="call_model")
    async def call_model(self, request: LlmRequest) -> LlmResult:
        calls = _earlier_calls()
        with self._telemetry.step({"baton.step": request.step}) as labels:
            try:
                return await self._call(request, calls)
            finally:
                mine = [c for c in calls if c.attempt == activity.info().attempt]
                if mine:
                    labels["baton.model"] = mine[-1].model

    async def _call(self, request: LlmRequest, calls: list[ModelCall]) -> LlmResult:
        output_type = _output_type(request)
        conversation = Conversation(
            step=request.step,
            output_type=request.output_type,
            system=request.system,
            messages=[Message(role="user", content=request.prompt), *map(self._filled, request.history)],
            output_name=output_type.__name__,
            output_schema=_schema(output_type),
            tools=request.tools,
            max_output_tokens=request.max_output_tokens,
        )
        waits: list[float | None] = []
        never_valid: list[str] = []
        for label, spec in self._health.order(self._allowed(request, calls)):
            try:
                return await self._converse(request, label, spec, conversation, output_type, calls)
            except ProviderUnavailable as err:
                self._health.down(label, err.retry_after)
                waits.append(err.retry_after)
            except NeverValid as err:
                never_valid.append(str(err))
        if never_valid:  # a retry would pay for the same repairs again
            unavailable = [f"{c.model}: {c.error}" for c in calls
                           if c.attempt == activity.info().attempt and c.outcome == "unavailable"]
            raise _failure("; ".join([*never_valid, *unavailable]), "InvalidModelOutput", calls)
        raise _failure(
            f"no model of tier {request.tier!r} answered: "
            + "; ".join(f"{c.model}: {c.error}" for c in calls if c.attempt == activity.info().attempt),
            "AllModelsUnavailable", calls, retryable=True, next_retry_delay=self._next_delay(waits),
        )

    async def _converse(
        self, request: LlmRequest, label: str, spec: ModelSpec, conversation: Conversation,
        output_type: type[BaseModel], calls: list[ModelCall],
    ) -> LlmResult:
        """Ask one model, then repair its answer until it validates or the turns run out (NeverValid)."""
        provider = self._provider(label, spec)
        for turn in range(self._settings.repair_turns + 1):
            self._check_budget(request, label, spec, conversation, calls, turn)
            ticket = await self._reserve(request, label, spec, conversation, calls, turn)
            try:
                done = await self._send(request, provider, label, spec, conversation, calls, turn)
            finally:
                if ticket is not None:  # what it cost: reported, its worst case when unknown, 0 when never billed
                    await self._spend.settle(ticket, calls[-1].cost_usd)
            proposals = [u for u in done.message.tool_uses if u.name != conversation.output_name]
            if proposals and request.tools:
                calls[-1].outcome = "tool_use"
                return _result(request, label, spec, calls, done, proposals)
            problem = problems(done.output, output_type)
            if problem is None:  # the answer as its model reads it: no field the model added survives
                answer = output_type.model_validate(done.output).model_dump(mode="json")
                return _result(request, label, spec, calls, done.model_copy(update={"output": answer}), [])
            calls[-1].outcome, calls[-1].error = "invalid", problem
            activity.heartbeat(CALLS.dump_python(calls, mode="json"))
            conversation = conversation.answered(done.message, repair_request(output_type, problem))
        raise NeverValid(
            f"{label} gave no valid {output_type.__name__} after {self._settings.repair_turns} "
            f"repair turns: {calls[-1].error}"
        )

    async def _send(
        self, request: LlmRequest, provider: Provider, label: str, spec: ModelSpec, conversation: Conversation,
        calls: list[ModelCall], turn: int,
    ) -> Completion:
        """One request, and its span; every outcome, paid or not, becomes a ModelCall."""
        call = ModelCall(
            model=label, provider=spec.provider, requested_model=spec.name, attempt=activity.info().attempt,
            turn=turn, outcome="ok",
        )
        calls.append(call)
        protocol = self._catalog.providers[spec.provider].protocol
        activity.heartbeat(CALLS.dump_python([*calls[:-1], _in_flight(call, spec, conversation)], mode="json"))
        started = time.perf_counter()
        try:
            with self._telemetry.model_call(request, label, spec, protocol, conversation) as span:
                done = await provider.complete(conversation, spec)
                call.reported_model = done.model
                _price(call, spec, done, conversation)
                span.answered(call, done)
        except asyncio.CancelledError:  # the step's timeout (or the run) cut it off: sent, maybe billed
            call.outcome, call.error = "unavailable", "cut off before an answer (the step timed out or was cancelled)"
            _bill_worst_case(call, spec, conversation, CUT_OFF)
            raise
        except ProviderUnavailable as err:
            call.outcome, call.status, call.error = "unavailable", err.status, str(err)
            if err.billable:
                _bill_worst_case(call, spec, conversation, "the answer could not be read")
            raise
        except ProviderRejected as err:
            call.outcome, call.status, call.error = "rejected", err.status, str(err)
            hint = _mode_hint(label, spec, protocol) if err.malformed else ""
            raise _failure(f"{label} refused the request: {err}{hint}", "ModelRejected", calls) from None
        except Exception as err:  # reading the answer broke (JSON nested too deep, ...): it was sent, maybe billed
            call.outcome, call.error = "unavailable", f"unreadable answer: {type(err).__name__}: {_unreadable(err)}"[:300]
            _bill_worst_case(call, spec, conversation, "the answer could not be read")
            raise ProviderUnavailable(call.error, billable=True) from None
        finally:
            call.latency_ms = (time.perf_counter() - started) * 1000
            if call.outcome != "ok":
                activity.heartbeat(CALLS.dump_python(calls, mode="json"))
        activity.heartbeat(CALLS.dump_python(calls, mode="json"))  # priced, so a crash now still bills it
        self._health.up(label)
        return done

    def _check_budget(
        self, request: LlmRequest, label: str, spec: ModelSpec, conversation: Conversation,
        calls: list[ModelCall], turn: int,
    ) -> None:
        """Refuse, before sending, a call that could take the run past its cost cap."""
        if request.budget_remaining_usd is None:
            return
        left = request.budget_remaining_usd - sum(c.cost_usd for c in calls)
        worst = worst_case(spec, conversation)
        if worst <= left:
            return
        reason = (
            f"max_cost_usd: the next call to {label} could cost ${worst:.6f} "
            f"(~{conversation.estimated_input_tokens()} tokens in, up to {conversation.max_output_tokens} out) "
            f"and the run has ${max(left, 0):.6f} left; not sent"
        )
        calls.append(ModelCall(
            model=label, provider=spec.provider, attempt=activity.info().attempt, turn=turn,
            outcome="over_budget", error=reason,
        ))
        raise _failure(reason, "BudgetWouldOverrun", calls)

    async def _reserve(
        self, request: LlmRequest, label: str, spec: ModelSpec, conversation: Conversation,
        calls: list[ModelCall], turn: int,
    ) -> Ticket | None:
        """Hold the request's worst case under its process's cross-run cap; refused, it is not sent.

        The key names this request of this attempt of this step of this run, so the
        same update retried is the same reservation (activities/spend.py).
        """
        if self._spend.cap(request.process) is None:
            return None
        info = activity.info()
        key = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}/{info.attempt}/{len(calls)}"
        try:
            got = await self._spend.reserve(request.process, key, worst_case(spec, conversation), force=request.over_cap)
        except SpendCapUnavailable as err:
            raise _failure(str(err), "SpendCapUnavailable", calls) from None
        if isinstance(got, Ticket):
            return got
        calls.append(ModelCall(
            model=label, provider=spec.provider, attempt=info.attempt, turn=turn, outcome="over_budget",
            error=got.reason(),
        ))
        raise ApplicationError(
            got.reason(), CALLS.dump_python(calls, mode="json"), got.model_dump(mode="json"),
            type="SpendCapReached", non_retryable=True,
        )

    def _allowed(self, request: LlmRequest, calls: list[ModelCall]) -> list[tuple[str, ModelSpec]]:
        """The step's candidates that may read its prompt; each one withheld is a ModelCall never sent.

        A prompt carrying personal data goes only to models whose `personal_data`
        is on. With none left, the step fails typed before any request, naming
        the tier and the models, never the data (the engine names the step).
        """
        candidates = self._candidates(request)
        if not request.personal:
            return candidates
        withheld = [label for label, spec in candidates if not spec.personal_data]
        for label in withheld:
            calls.append(ModelCall(
                model=label, provider=self._catalog.models[label].provider, attempt=activity.info().attempt,
                outcome="withheld", error="the prompt carries personal data and personal_data is off for this model",
            ))
        allowed = [(label, spec) for label, spec in candidates if spec.personal_data]
        if not allowed:
            raise _failure(
                f"the prompt carries personal data and no model of tier {request.tier!r} may receive it "
                f"({', '.join(withheld)}: personal_data is off); nothing was sent",
                "PersonalDataRefused", calls,
            )
        return allowed

    def _filled(self, message: Message) -> Message:
        """A message whose content was kept out of history, with its content back."""
        if message.payload_ref is None:
            return message
        if self._payloads is None:
            raise ApplicationError("this worker has no payload store", type="PayloadMissing", non_retryable=True)
        try:
            body = self._payloads.get(message.payload_ref)
        except KeyError as err:
            raise ApplicationError(str(err.args[0]), type="PayloadMissing", non_retryable=True) from None
        return message.model_copy(update={"content": message.content.replace(PAYLOAD_SLOT, body), "payload_ref": None})

    def _candidates(self, request: LlmRequest) -> list[tuple[str, ModelSpec]]:
        try:
            return self._catalog.candidates(request.tier, request.model)
        except KeyError as err:
            raise ApplicationError(str(err.args[0]), type="UnknownModel", non_retryable=True) from None

    def _provider(self, label: str, spec: ModelSpec) -> Provider:
        provider = self._providers.get(spec.provider)
        if provider is None:
            raise ApplicationError(
                f"model {label!r} needs provider {spec.provider!r}, which this worker lacks",
                type="UnknownProvider", non_retryable=True,
            )
        return provider

    def _next_delay(self, waits: list[float | None]) -> timedelta | None:
        """The server's word on when to come back, if every candidate gave one."""
        if not waits or None in waits:
            return None
        return timedelta(seconds=min(min(w for w in waits if w is not None), self._settings.max_retry_after_s))


@functools.lru_cache(maxsize=256)
def _schema(output_type: type[BaseModel]) -> dict:
    """An output model's JSON schema, built once per model (pydantic takes milliseconds to build it)."""
    return output_type.model_json_schema()


def _mode_hint(label: str, spec: ModelSpec, protocol: str) -> str:
    """For a request refused as malformed: the structured-output mode it was sent in, and the ones to try."""
    others = [f'"{m}"' for m in spec.other_modes(protocol)]
    listed = others[0] if len(others) == 1 else f"{', '.join(others[:-1])} or {others[-1]}"
    return (
        f'. It was sent with structured_output = "{spec.output_mode(protocol)}": if the server does not take that, '
        f"set structured_output in [models.{label}] to one it does: {listed}"
    )


def _output_type(request: LlmRequest) -> type[BaseModel]:
    try:
        return resolve(request.output_type)
    except UnknownOutputType as err:
        raise ApplicationError(str(err), type="UnknownOutputType", non_retryable=True) from None


def worst_case(spec: ModelSpec, conversation: Conversation) -> float:
    """The most one request can cost: what the budget check refuses to send, and what unknown usage bills."""
    return spec.price.worst_case(conversation.estimated_input_tokens(), conversation.max_output_tokens)


def _price(call: ModelCall, spec: ModelSpec, done: Completion, conversation: Conversation) -> None:
    """The reported usage at the model's prices; no valid usage reported, the request's worst case."""
    u = done.usage
    if u is None:
        _bill_worst_case(call, spec, conversation, f"usage unknown: {done.unknown_usage}")
        return
    call.tokens_in, call.tokens_out = u.input, u.output
    call.cached_tokens, call.cache_write_tokens = u.cached_input, u.cache_write
    call.cost_usd = spec.price.cost(u.input, u.output, u.cached_input, u.cache_write)


def _bill_worst_case(call: ModelCall, spec: ModelSpec, conversation: Conversation, why: str) -> None:
    """A request that went out but whose usage is unknown costs what it could have: never $0, never less."""
    call.tokens_in, call.tokens_out = conversation.estimated_input_tokens(), conversation.max_output_tokens
    call.cached_tokens = call.cache_write_tokens = 0
    call.cost_usd = worst_case(spec, conversation)
    call.cost_estimate = f"{why}: billed its worst case (~{call.tokens_in} tokens in, {call.tokens_out} out)"


def _in_flight(call: ModelCall, spec: ModelSpec, conversation: Conversation) -> ModelCall:
    """The request about to go out as the heartbeat records it: billed at its worst case until it answers.

    If the attempt then times out or its worker dies, this is the last word
    Temporal keeps (the next attempt's heartbeat details, the timeout's last
    heartbeat details): the request is billed, never free. Its answer, when
    it comes, replaces this with what was reported.
    """
    pending = call.model_copy(update={"outcome": "unavailable", "error": "no answer before the attempt ended"})
    _bill_worst_case(pending, spec, conversation, CUT_OFF)
    return pending


def _earlier_calls() -> list[ModelCall]:
    """Calls made by this step's earlier attempts (Temporal keeps the last heartbeat)."""
    details = activity.info().heartbeat_details
    return CALLS.validate_python(details[0]) if details else []


def _result(
    request: LlmRequest, label: str, spec: ModelSpec, calls: list[ModelCall], done: Completion, proposals: list
) -> LlmResult:
    mine = [c for c in calls if c.attempt == activity.info().attempt]
    return LlmResult(
        output=None if proposals else done.output,
        tool_uses=proposals,
        tier=request.tier,
        model=label,
        provider=spec.provider,
        requested_model=spec.name,
        reported_model=done.model,
        tokens_in=sum(c.tokens_in for c in calls),
        tokens_out=sum(c.tokens_out for c in calls),
        cached_tokens=sum(c.cached_tokens for c in calls),
        cost_usd=sum(c.cost_usd for c in calls),
        latency_ms=sum(c.latency_ms for c in mine),
        attempt=activity.info().attempt,
        calls=calls,
    )


def _failure(
    message: str, kind: str, calls: list[ModelCall], *, retryable: bool = False,
    next_retry_delay: timedelta | None = None,
) -> ApplicationError:
    """A typed failure carrying every call so far, so the engine can bill and explain it."""
    return ApplicationError(
        message, CALLS.dump_python(calls, mode="json"), type=kind,
        non_retryable=not retryable, next_retry_delay=next_retry_delay,
    )


def _unreadable(err: Exception) -> str:
    """What broke reading an answer, never the answer itself.

    pydantic's own text quotes the value it refused (`input_value=...`): in a failure
    message that value would reach the worker's log, the ledger and the run's history,
    none of them encrypted. Its fields and what is wrong with them are enough.
    """
    if isinstance(err, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(answer)'}: {e['msg']}" for e in err.errors())
    return str(err)
