"""OpenAI-compatible Chat Completions: OpenAI, Azure, vLLM, Ollama, llama.cpp, LM Studio, LiteLLM.

A typed step asks in the model's structured-output mode: `json_schema` sends
`response_format: {type: json_schema}` with the step's schema (strict unless
the provider says otherwise); `tool` offers the schema as a function and forces
it with `tool_choice`; `json_object` sends `response_format: {type:
json_object}` and the schema in the system prompt; `prompt` puts the schema in
the system prompt only. Agent steps send their `tools` too. Usage comes from
`prompt_tokens`, `completion_tokens` and `prompt_tokens_details.cached_tokens`;
counts that are missing or not counts leave it unknown (provider.read_usage).
"""

from __future__ import annotations

import json

import httpx

from activities.llm.catalog import ModelSpec, ProviderSpec
from activities.llm.conversation import ANSWER_TOOL, Conversation, Message, ToolUse, parse_json_object
from activities.llm.provider import Completion, read_usage, reported_model
from activities.llm.strict_schema import strict_schema
from activities.llm.transport import Endpoint


class OpenAIChat:
    def __init__(self, spec: ProviderSpec, client: httpx.AsyncClient) -> None:
        self._spec = spec
        self._endpoint = Endpoint(spec, client, "/chat/completions")
        self._key = self._endpoint.key

    def headers(self) -> dict[str, str]:
        headers = dict(self._spec.headers)
        if self._key and self._spec.api_key_header:
            headers[self._spec.api_key_header] = self._key
        elif self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def body(self, conversation: Conversation, model: ModelSpec) -> dict:
        mode = model.output_mode("openai")
        system = conversation.system_with_schema() if mode in ("json_object", "prompt") else conversation.system
        body: dict = {
            "model": model.name,
            "messages": _messages(system, conversation.messages),
            self._spec.max_tokens_field: conversation.max_output_tokens,
        }
        tools = [_function(t.name, t.description, t.parameters) for t in conversation.tools]
        if mode == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": conversation.output_name, "schema": self._schema(conversation), "strict": self._spec.strict,
            }}
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif mode == "tool":
            answer = _function(conversation.output_name, ANSWER_TOOL, self._schema(conversation), self._spec.strict)
            chosen = {"type": "function", "function": {"name": conversation.output_name}}
            body["tool_choice"] = "required" if tools else chosen
            tools.append(answer)
        if tools:
            body["tools"] = tools
        return body

    def _schema(self, conversation: Conversation) -> dict:
        return strict_schema(conversation.output_schema) if self._spec.strict else conversation.output_schema

    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        data = await self._endpoint.post(self.headers(), self.body(conversation, model))
        try:
            message = data["choices"][0]["message"]
            usage = data.get("usage") or {}
            content = message.get("content") or message.get("refusal") or ""
            uses = [
                ToolUse(
                    id=call["id"],
                    name=call["function"]["name"],
                    arguments=parse_json_object(call["function"].get("arguments") or "{}") or {},
                )
                for call in message.get("tool_calls") or []
            ]
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            reported, unknown = read_usage(usage.get("prompt_tokens"), usage.get("completion_tokens"), cached)
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise self._endpoint.malformed(err, data) from None
        answer = Message(role="assistant", content=content, tool_uses=uses)
        output = conversation.typed_output(message.get("content") or "", uses)
        return Completion(
            message=answer, output=output, usage=reported, unknown_usage=unknown, model=reported_model(data),
        )


def _function(name: str, description: str, parameters: dict, strict: bool = False) -> dict:
    """A tool in Chat Completions' function shape; `strict` only when asked (not every server takes it)."""
    function: dict = {"name": name, "description": description, "parameters": parameters}
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _messages(system: str, messages: list[Message]) -> list[dict]:
    wire: list[dict] = [{"role": "system", "content": system}] if system else []
    for m in messages:
        if m.role == "tool":
            wire.append({"role": "tool", "tool_call_id": m.tool_use_id, "content": m.content})
        elif m.role == "assistant" and m.tool_uses:
            wire.append({
                "role": "assistant",
                "content": m.content or None,
                "tool_calls": [
                    {"id": u.id, "type": "function",
                     "function": {"name": u.name, "arguments": json.dumps(u.arguments)}}
                    for u in m.tool_uses
                ],
            })
        else:
            wire.append({"role": m.role, "content": m.content})
    return wire
