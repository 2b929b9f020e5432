"""Anthropic Messages: `x-api-key`, `anthropic-version`, `system`, `messages`, `max_tokens`.

A typed step asks in the model's structured-output mode: `tool` (the default)
forces a tool named after the output model (`tool_choice: {type: tool}`; with
agent tools offered, the model must call one of them or the answer tool,
`tool_choice: {type: any}`); `json_schema` sends `output_config.format` with
the step's schema and reads the JSON text answer; `prompt` puts the schema in
the system prompt. A JSON text answer counts in every mode, as the answer
tool's input does. Usage counts `input_tokens` plus cache reads and cache
writes, each priced on its own; counts that are missing or not counts leave it
unknown (provider.read_usage).
"""

from __future__ import annotations

import httpx

from activities.llm.catalog import ModelSpec, ProviderSpec
from activities.llm.conversation import ANSWER_TOOL, Conversation, Message, ToolUse
from activities.llm.provider import Completion, read_usage, reported_model
from activities.llm.strict_schema import strict_schema
from activities.llm.transport import Endpoint


class AnthropicMessages:
    def __init__(self, spec: ProviderSpec, client: httpx.AsyncClient) -> None:
        self._spec = spec
        self._endpoint = Endpoint(spec, client, "/v1/messages")
        self._key = self._endpoint.key

    def headers(self) -> dict[str, str]:
        headers = {**self._spec.headers, "anthropic-version": self._spec.anthropic_version}
        if self._key:
            headers[self._spec.api_key_header or "x-api-key"] = self._key
        return headers

    def body(self, conversation: Conversation, model: ModelSpec) -> dict:
        mode = model.output_mode("anthropic")
        tools = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in conversation.tools
        ]
        system = conversation.system_with_schema() if mode == "prompt" else conversation.system
        body: dict = {
            "model": model.name,
            "max_tokens": conversation.max_output_tokens,
            "messages": _messages(conversation.messages),
        }
        if mode == "tool":
            answer = {"name": conversation.output_name, "description": ANSWER_TOOL,
                      "input_schema": conversation.output_schema}
            body["tool_choice"] = {"type": "any"} if tools else {"type": "tool", "name": conversation.output_name}
            tools.append(answer)
        elif mode == "json_schema":  # the strict subset: every object closed, as structured outputs require
            body["output_config"] = {"format": {"type": "json_schema", "schema": strict_schema(conversation.output_schema)}}
        if tools:
            body["tools"] = tools
        if system:
            body["system"] = system
        return body

    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        data = await self._endpoint.post(self.headers(), self.body(conversation, model))
        try:
            blocks = data["content"]
            text = "".join(b["text"] for b in blocks if b["type"] == "text")
            uses = [
                ToolUse(id=b["id"], name=b["name"], arguments=b.get("input") or {})
                for b in blocks
                if b["type"] == "tool_use"
            ]
            usage = data["usage"]
            cached = usage.get("cache_read_input_tokens") or 0
            written = usage.get("cache_creation_input_tokens") or 0
            reported, unknown = read_usage(
                usage.get("input_tokens"), usage.get("output_tokens"), cached, written, input_is_fresh=True,
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise self._endpoint.malformed(err, data) from None
        return Completion(
            message=Message(role="assistant", content=text, tool_uses=uses),
            output=conversation.typed_output(text, uses),
            usage=reported,
            unknown_usage=unknown,
            model=reported_model(data),
        )


def _messages(messages: list[Message]) -> list[dict]:
    """Neutral turns as Anthropic blocks; consecutive tool results share one user turn."""
    wire: list[dict] = []
    for m in messages:
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_use_id, "content": m.content}
            if m.is_error:
                block["is_error"] = True
            if wire and wire[-1]["role"] == "user" and isinstance(wire[-1]["content"], list):
                wire[-1]["content"].append(block)
            else:
                wire.append({"role": "user", "content": [block]})
        elif m.role == "assistant":
            blocks = [{"type": "text", "text": m.content}] if m.content or not m.tool_uses else []
            blocks += [{"type": "tool_use", "id": u.id, "name": u.name, "input": u.arguments} for u in m.tool_uses]
            if blocks[0].get("text") == "":
                blocks[0]["text"] = "(no answer)"  # the API refuses empty text blocks
            wire.append({"role": "assistant", "content": blocks})
        else:
            wire.append({"role": "user", "content": m.content})
    return wire
