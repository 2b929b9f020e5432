"""Model servers with a dialect: each takes only some structured-output features, as real ones do.

OpenAI-compatible servers differ: some take `response_format: json_schema`,
some only `json_object`, some only forced tool calls, some neither. Each
dialect here is a responder for tests/fake_provider.py that

- refuses a body that is not a request the provider publishes: it is checked
  against the request types of the provider's own SDK (`openai`, `anthropic`),
  which are generated from the published API specification, unknown keys
  included, so Baton's request shapes are checked rather than guessed;
- refuses a feature it lacks the way such servers do (HTTP 400 or 422), and
  OpenAI's documented rule that JSON mode needs the word "JSON" in the messages;
- answers the next scripted output in the shape the request asked for: a call
  of the forced tool, JSON content, or prose around a fenced JSON block when
  nothing structured was asked for (as a chatty model does);
- reports its own name for the model (`served`), not the one it was asked for.
"""

from __future__ import annotations

import functools
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from tests.fake_provider import Recorded, Reply, error_reply, openai_answer

OPENAI_FEATURES = frozenset({"json_schema", "json_object", "tools"})
ANTHROPIC_FEATURES = frozenset({"tools", "output_config"})


@functools.cache
def _openai_request() -> TypeAdapter:
    from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming

    return TypeAdapter(CompletionCreateParamsNonStreaming)


@functools.cache
def _anthropic_request() -> TypeAdapter:
    from anthropic.types.message_create_params import MessageCreateParamsNonStreaming

    return TypeAdapter(MessageCreateParamsNonStreaming)


def shape_problem(adapter: TypeAdapter, body: dict) -> str | None:
    """Why `body` is not a request of the published type; None when it is.

    Validation ignores unknown keys, so the validated value, read back, must
    equal the body: a key the type does not know anywhere makes them differ.
    """
    try:
        read_back = _plain(adapter.validate_python(body))
    except ValidationError as err:
        first = err.errors()[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return None if read_back == body else f"unknown parameters in {json.dumps(body)[:300]}"


def _plain(value: Any) -> Any:
    """A validated request as plain JSON data (the SDK types keep iterables lazy)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Iterable):
        return [_plain(v) for v in value]
    return value


def chatty(answer: dict) -> str:
    """How a model answers when nothing holds it to JSON: prose around a fenced block."""
    return f"Sure! Here is the answer:\n```json\n{json.dumps(answer, indent=2)}\n```\nLet me know if you need more."


@dataclass
class OpenAIDialect:
    """An OpenAI-compatible server taking only `features` (of json_schema, json_object, tools).

    `refusal` is how it refuses a feature it lacks: "openai" (400, OpenAI's
    error envelope) or "fastapi" (422, a pydantic validation error list).
    """

    features: frozenset[str]
    answers: deque = field(default_factory=deque)
    served: str = "served-model-2025-01"
    refusal: str = "openai"

    def script(self, *answers: dict | str) -> None:
        self.answers.extend(answers)

    def __call__(self, request: Recorded) -> Reply:
        problem = shape_problem(_openai_request(), request.body) or self._unsupported(request.body)
        if problem:
            return self._refuse(problem)
        if not self.answers:
            return error_reply(500, "the dialect server has no scripted answer left")
        return self._answer(request.body, self.answers.popleft())

    def _unsupported(self, body: dict) -> str | None:
        kind = (body.get("response_format") or {}).get("type")
        if kind in ("json_schema", "json_object") and kind not in self.features:
            return f"response_format type {kind!r} is not supported by this server"
        if body.get("tools") and "tools" not in self.features:
            return "tools are not supported by this server"
        if kind == "json_object" and "json" not in json.dumps(body["messages"]).lower():
            return "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."
        return None

    def _refuse(self, problem: str) -> Reply:
        if self.refusal == "fastapi":
            return Reply(422, {"detail": [{"loc": ["body"], "msg": problem, "type": "value_error"}]})
        return error_reply(400, problem, kind="invalid_request_error")

    def _answer(self, body: dict, answer: dict | str) -> Reply:
        forced = body.get("tool_choice")
        if isinstance(forced, dict) and isinstance(answer, dict):
            call = {"id": "call_answer", "name": forced["function"]["name"], "arguments": answer}
            return openai_answer(None, model=self.served, tool_calls=[call])
        if isinstance(answer, dict):
            answer = json.dumps(answer) if body.get("response_format") else chatty(answer)
        return openai_answer(answer, model=self.served)


@dataclass
class AnthropicDialect:
    """An Anthropic Messages server taking only `features` (of tools, output_config).

    With `ignores_tool_choice` it answers a forced tool with JSON text instead,
    as some Anthropic-compatible servers do.
    """

    features: frozenset[str] = ANTHROPIC_FEATURES
    answers: deque = field(default_factory=deque)
    served: str = "claude-served-20250101"
    ignores_tool_choice: bool = False

    def script(self, *answers: dict | str) -> None:
        self.answers.extend(answers)

    def __call__(self, request: Recorded) -> Reply:
        body = request.body
        problem = shape_problem(_anthropic_request(), body) or next(
            (f"{key}: not supported by this server" for key in ("tools", "output_config")
             if body.get(key) and key not in self.features),
            None,
        )
        if problem:
            return error_reply(400, problem, kind="invalid_request_error")
        if not self.answers:
            return error_reply(500, "the dialect server has no scripted answer left", kind="api_error")
        return self._answer(body, self.answers.popleft())

    def _answer(self, body: dict, answer: dict | str) -> Reply:
        forced = body.get("tool_choice") or {}
        if forced.get("type") == "tool" and isinstance(answer, dict) and not self.ignores_tool_choice:
            block = {"type": "tool_use", "id": "toolu_answer", "name": forced["name"], "input": answer}
        elif isinstance(answer, dict):
            text = json.dumps(answer) if body.get("output_config") or self.ignores_tool_choice else chatty(answer)
            block = {"type": "text", "text": text}
        else:
            block = {"type": "text", "text": answer}
        return Reply(200, {
            "id": "msg_dialect", "type": "message", "role": "assistant", "model": self.served,
            "content": [block], "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 100, "output_tokens": 40},
        })
