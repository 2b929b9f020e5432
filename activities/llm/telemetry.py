"""What Baton's steps tell OpenTelemetry: a span per model request, and step metrics.

Spans follow the GenAI semantic conventions (`chat {model}`, `gen_ai.*`) so a
GenAI-aware backend reads them as it reads any model client; `baton.*`
attributes tie each request to its run's process, step, tier and cost. Prompts
and answers are often personal data, so they reach a span only when the
conventions' opt-in, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true,
is set; error descriptions carry a type and an HTTP status, never a message
(a provider's error can quote the request).

Metrics are recorded here, in activities, never in workflow code: workflows
replay, so a workflow-side counter would count a step again on every replay.
Tracer and meter come from the providers the caller passes (tests pass their
own) or from OpenTelemetry's global ones, which do nothing until
worker/telemetry.py installs real ones from the OTEL_* variables.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm.catalog import ModelSpec
from activities.llm.contracts import LlmRequest, ModelCall
from activities.llm.conversation import Conversation, Message
from activities.llm.provider import Completion

CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]


class StepTelemetry:
    """Baton's tracer and instruments, made once per worker and shared by its activities."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None,
                 meter_provider: metrics.MeterProvider | None = None) -> None:
        self._tracer = trace.get_tracer("baton", tracer_provider=tracer_provider)
        meter = metrics.get_meter("baton", meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "baton.step.duration", unit="s", description="one attempt of a model or tool step")
        self.cost = meter.create_counter(
            "baton.step.cost", unit="USD", description="model calls, priced as the ledger prices them")
        self.errors = meter.create_counter(
            "baton.step.errors", unit="{error}", description="attempts of a model or tool step that failed")
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="tokens per model request",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS)

    @contextmanager
    def step(self, labels: dict[str, str]) -> Iterator[dict[str, str]]:
        """Time one attempt of a step; count it as an error if it raises.

        The caller may add labels (the model that answered) to the dict it gets.
        """
        labels = {"baton.process": _process(), **labels}
        started = time.perf_counter()
        try:
            yield labels
        except Exception as err:
            self.errors.add(1, {**labels, "error.type": error_type(err)})
            raise
        finally:
            self.duration.record(time.perf_counter() - started, labels)

    @contextmanager
    def model_call(
        self, request: LlmRequest, label: str, spec: ModelSpec, system: str, conversation: Conversation,
    ) -> Iterator[ModelCallSpan]:
        """The span of one provider request, a child of Temporal's RunActivity span."""
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,
            "gen_ai.provider.name": system,
            "gen_ai.request.model": spec.name,
            "gen_ai.request.max_tokens": conversation.max_output_tokens,
            "gen_ai.output.type": "json",
            "baton.process": _process(),
            "baton.step": request.step,
            "baton.tier": request.tier,
            "baton.model": label,
            "baton.attempt": activity.info().attempt,
        }
        with self._tracer.start_as_current_span(
            f"chat {spec.name}", kind=SpanKind.CLIENT, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            if capturing_content():
                span.set_attributes(_input_messages(conversation))
            try:
                yield ModelCallSpan(self, span, attributes)
            except Exception as err:
                kind = error_type(err)
                status = getattr(err, "status", None)
                span.set_attribute("error.type", kind)
                if status:
                    span.set_attribute("http.response.status_code", status)
                span.set_status(Status(StatusCode.ERROR, f"{kind} (HTTP {status})" if status else kind))
                raise


class ModelCallSpan:
    """A request in flight: `answered` puts its usage and cost on the span and the meters."""

    def __init__(self, telemetry: StepTelemetry, span: Span, attributes: dict) -> None:
        self._telemetry, self._span, self._attributes = telemetry, span, attributes

    def answered(self, call: ModelCall, done: Completion) -> None:
        a = self._attributes
        answered_by = done.model or a["gen_ai.request.model"]
        self._span.set_attributes({
            "gen_ai.response.model": answered_by,
            "gen_ai.usage.input_tokens": call.tokens_in,
            "gen_ai.usage.output_tokens": call.tokens_out,
            "gen_ai.usage.cache_read.input_tokens": call.cached_tokens,
            "baton.cost_usd": call.cost_usd,
        })
        if capturing_content():
            self._span.set_attribute("gen_ai.output.messages", json.dumps([
                {**_message(done.message), "finish_reason": "tool_call" if done.message.tool_uses else "stop"}
            ]))
        step = {k: a[k] for k in ("baton.process", "baton.step", "baton.model")}
        self._telemetry.cost.add(call.cost_usd, step)
        gen_ai = {k: a[k] for k in ("gen_ai.operation.name", "gen_ai.system", "gen_ai.request.model")}
        gen_ai["gen_ai.response.model"] = answered_by
        self._telemetry.tokens.record(call.tokens_in, {**gen_ai, "gen_ai.token.type": "input"})
        self._telemetry.tokens.record(call.tokens_out, {**gen_ai, "gen_ai.token.type": "output"})


def capturing_content() -> bool:
    """The GenAI conventions' opt-in for prompts and answers on spans; read per call."""
    return os.environ.get(CAPTURE_CONTENT, "").strip().lower() == "true"


def error_type(err: BaseException) -> str:
    """A low-cardinality name for a failure: an ApplicationError's type, else the exception's class."""
    if isinstance(err, ApplicationError) and err.type:
        return err.type
    return type(err).__name__


def _process() -> str:
    """The workflow type the activity serves: a process, or `baton-agent` for an agent child."""
    return activity.info().workflow_type or "?"


def _input_messages(conversation: Conversation) -> dict[str, str]:
    captured = {"gen_ai.input.messages": json.dumps([_message(m) for m in conversation.messages])}
    if conversation.system:
        captured["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": conversation.system}])
    return captured


def _message(message: Message) -> dict:
    """A message in the conventions' shape: a role and its parts."""
    if message.role == "tool":
        return {"role": "tool", "parts": [
            {"type": "tool_call_response", "id": message.tool_use_id, "response": message.content}]}
    parts: list[dict] = [{"type": "text", "content": message.content}] if message.content else []
    parts += [{"type": "tool_call", "id": u.id, "name": u.name, "arguments": u.arguments} for u in message.tool_uses]
    return {"role": message.role, "parts": parts}
