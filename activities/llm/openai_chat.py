"""OpenAI-compatible Chat Completions: OpenAI, Azure, vLLM, Ollama, llama.cpp, LM Studio, LiteLLM.

Typed steps send `response_format` with the step's schema (strict unless the
provider says otherwise); agent steps send `tools`. Usage comes from
`prompt_tokens`, `completion_tokens` and `prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

import json

import httpx

from activities.llm.catalog import ModelSpec, ProviderSpec
from activities.llm.conversation import Conversation, Message, ToolUse, parse_json_object
from activities.llm.provider import Completion, Usage
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
        spec = self._spec
        schema = strict_schema(conversation.output_schema) if spec.strict else conversation.output_schema
        body: dict = {
            "model": model.name,
            "messages": _messages(conversation),
            spec.max_tokens_field: conversation.max_output_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": conversation.output_name, "schema": schema, "strict": spec.strict},
            },
        }
        if conversation.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in conversation.tools
            ]
        return body

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
            reported = Usage(
                input=usage.get("prompt_tokens") or 0, output=usage.get("completion_tokens") or 0,
                cached_input=cached,
            )
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise self._endpoint.malformed(err, data) from None
        answer = Message(role="assistant", content=content, tool_uses=uses)
        output = None if uses or not message.get("content") else parse_json_object(content)
        return Completion(message=answer, output=output, usage=reported)


def _messages(conversation: Conversation) -> list[dict]:
    wire: list[dict] = [{"role": "system", "content": conversation.system}] if conversation.system else []
    for m in conversation.messages:
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
