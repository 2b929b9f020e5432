"""`OpenAIChat` over real HTTP against the fake provider.

Proves the exact request it sends (path, auth header, model, messages with the
system prompt, the max-tokens field, a strict `response_format`, `tools` in the
function shape), the Azure and keyless variants, and how it reads answers back:
typed output, usage with cached tokens, tool calls, fenced JSON, non-JSON
content, and a tool-result / repair conversation on the wire.
"""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import BaseModel, Field

from activities.llm.catalog import ModelSpec, Price, ProviderSpec
from activities.llm.conversation import Conversation, Message, ToolSchema, ToolUse
from activities.llm.openai_chat import OpenAIChat
from activities.llm.strict_schema import strict_schema
from tests.fake_provider import FakeProvider, openai_answer

KEY = "sk-test-openai-0123456789"
MODEL = ModelSpec(provider="openai", name="gpt-4o-mini-2024-07-18", price=Price(input=0.15, output=0.6))


class Reason(BaseModel):
    code: str
    weight: float = Field(ge=0, le=1)


class Verdict(BaseModel):
    decision: str
    score: int = Field(ge=0, le=100)
    reasons: list[Reason]
    note: str | None = None


LOOKUP = ToolSchema(
    name="lookup_customer",
    description="Fetch a customer record by id",
    parameters={"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
)

VALID = {"decision": "approve", "score": 91, "reasons": [{"code": "kyc_ok", "weight": 0.8}], "note": None}


def conversation(**extra) -> Conversation:
    return Conversation(
        system=extra.pop("system", "You review applications."),
        messages=extra.pop("messages", [Message(role="user", content="Review application 42")]),
        output_name="Verdict",
        output_schema=Verdict.model_json_schema(),
        **extra,
    )


def provider(fake: FakeProvider, client: httpx.AsyncClient, monkeypatch, **spec) -> OpenAIChat:
    monkeypatch.setenv("TEST_OPENAI_KEY", KEY)
    spec.setdefault("api_key_env", "TEST_OPENAI_KEY")
    return OpenAIChat(ProviderSpec(protocol="openai", base_url=fake.url + "/v1", **spec), client)


def all_objects(node: object) -> list[dict]:
    found: list[dict] = []
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            found.append(node)
        for key, value in node.items():
            subs = value.values() if key in ("properties", "$defs") else [value]
            for sub in subs:
                found += all_objects(sub)
    elif isinstance(node, list):
        for item in node:
            found += all_objects(item)
    return found


async def test_typed_request_is_sent_exactly(fake, client, monkeypatch) -> None:
    fake.script(openai_answer(VALID))
    chat = provider(fake, client, monkeypatch)

    await chat.complete(conversation(max_output_tokens=321), MODEL)

    [sent] = fake.requests
    assert sent.method == "POST"
    assert sent.path == "/v1/chat/completions"
    assert sent.query == {}
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    body = sent.body
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert body["messages"] == [
        {"role": "system", "content": "You review applications."},
        {"role": "user", "content": "Review application 42"},
    ]
    assert body["max_tokens"] == 321
    assert "max_completion_tokens" not in body
    assert "tools" not in body

    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Verdict"
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema == strict_schema(Verdict.model_json_schema())
    objects = all_objects(schema)
    assert len(objects) >= 2  # Verdict and Reason
    for node in objects:
        assert node["additionalProperties"] is False
        assert sorted(node["required"]) == sorted(node["properties"])
    assert schema["required"] == ["decision", "score", "reasons", "note"]


async def test_no_system_prompt_sends_no_system_message(fake, client, monkeypatch) -> None:
    fake.script(openai_answer(VALID))
    await provider(fake, client, monkeypatch).complete(conversation(system=""), MODEL)
    assert [m["role"] for m in fake.requests[0].body["messages"]] == ["user"]


async def test_max_completion_tokens_field_when_configured(fake, client, monkeypatch) -> None:
    fake.script(openai_answer(VALID))
    chat = provider(fake, client, monkeypatch, max_tokens_field="max_completion_tokens")
    await chat.complete(conversation(max_output_tokens=777), MODEL)
    body = fake.requests[0].body
    assert body["max_completion_tokens"] == 777
    assert "max_tokens" not in body


async def test_non_strict_provider_sends_the_schema_unchanged(fake, client, monkeypatch) -> None:
    fake.script(openai_answer(VALID))
    await provider(fake, client, monkeypatch, strict=False).complete(conversation(), MODEL)
    spec = fake.requests[0].body["response_format"]["json_schema"]
    assert spec["strict"] is False
    assert spec["schema"] == Verdict.model_json_schema()


async def test_azure_style_key_header_and_api_version_query(fake, client, monkeypatch) -> None:
    fake.script(openai_answer(VALID))
    chat = provider(
        fake, client, monkeypatch,
        api_key_header="api-key", query={"api-version": "2024-10-21"}, headers={"x-ms-client": "baton"},
    )
    await chat.complete(conversation(), MODEL)
    [sent] = fake.requests
    assert sent.headers["api-key"] == KEY
    assert "authorization" not in sent.headers
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["x-ms-client"] == "baton"


async def test_local_server_without_key_sends_no_auth_header(fake, client, monkeypatch) -> None:
    fake.script(openai_answer(VALID))
    monkeypatch.delenv("NO_SUCH_KEY_ENV", raising=False)
    local = OpenAIChat(ProviderSpec(protocol="openai", base_url=fake.url + "/v1/"), client)
    keyed_but_unset = OpenAIChat(
        ProviderSpec(protocol="openai", base_url=fake.url + "/v1", api_key_env="NO_SUCH_KEY_ENV"), client
    )
    fake.script(openai_answer(VALID))
    await local.complete(conversation(), MODEL)
    await keyed_but_unset.complete(conversation(), MODEL)
    for sent in fake.requests:
        assert sent.path == "/v1/chat/completions"  # trailing slash of base_url handled
        assert "authorization" not in sent.headers
        assert "api-key" not in sent.headers


async def test_success_parses_output_and_usage_with_cached_tokens(fake, client, monkeypatch) -> None:
    fake.script(openai_answer(VALID, prompt_tokens=1234, completion_tokens=56, cached_tokens=1024))
    done = await provider(fake, client, monkeypatch).complete(conversation(), MODEL)
    assert done.output == VALID
    assert done.message.role == "assistant"
    assert json.loads(done.message.content) == VALID
    assert done.message.tool_uses == []
    assert (done.usage.input, done.usage.output, done.usage.cached_input, done.usage.cache_write) == (
        1234, 56, 1024, 0,
    )


async def test_usage_without_details_counts_no_cached_tokens(fake, client, monkeypatch) -> None:
    fake.script(openai_answer(VALID, prompt_tokens=99, completion_tokens=11))
    done = await provider(fake, client, monkeypatch).complete(conversation(), MODEL)
    assert (done.usage.input, done.usage.output, done.usage.cached_input) == (99, 11, 0)


async def test_tool_call_parsed_into_tool_uses_and_tools_sent_as_functions(fake, client, monkeypatch) -> None:
    fake.script(openai_answer(
        None, tool_calls=[
            {"id": "call_a1", "name": "lookup_customer", "arguments": {"id": "C-7"}},
            {"id": "call_b2", "name": "lookup_customer", "arguments": {"id": "C-8"}},
        ],
    ))
    done = await provider(fake, client, monkeypatch).complete(conversation(tools=[LOOKUP]), MODEL)

    assert done.output is None
    assert done.message.tool_uses == [
        ToolUse(id="call_a1", name="lookup_customer", arguments={"id": "C-7"}),
        ToolUse(id="call_b2", name="lookup_customer", arguments={"id": "C-8"}),
    ]
    assert fake.requests[0].body["tools"] == [{
        "type": "function",
        "function": {
            "name": "lookup_customer",
            "description": "Fetch a customer record by id",
            "parameters": LOOKUP.parameters,
        },
    }]


async def test_fenced_json_content_still_parses(fake, client, monkeypatch) -> None:
    fenced = "```json\n" + json.dumps(VALID, indent=2) + "\n```"
    fake.script(openai_answer(fenced))
    done = await provider(fake, client, monkeypatch).complete(conversation(), MODEL)
    assert done.output == VALID


@pytest.mark.parametrize("content", ["I would approve this one.", "[1, 2, 3]", "", None])
async def test_non_json_content_gives_no_output(fake, client, monkeypatch, content) -> None:
    fake.script(openai_answer(content, prompt_tokens=10, completion_tokens=3))
    done = await provider(fake, client, monkeypatch).complete(conversation(), MODEL)
    assert done.output is None
    assert done.message.content == (content or "")
    assert (done.usage.input, done.usage.output) == (10, 3)  # still billed


async def test_refusal_becomes_content_without_output(fake, client, monkeypatch) -> None:
    reply = openai_answer(None)
    reply.body["choices"][0]["message"]["refusal"] = "I can't help with that."
    fake.script(reply)
    done = await provider(fake, client, monkeypatch).complete(conversation(), MODEL)
    assert done.output is None
    assert done.message.content == "I can't help with that."


async def test_tool_result_and_repair_conversation_encoded(fake, client, monkeypatch) -> None:
    asked = conversation(tools=[LOOKUP])
    proposal = Message(
        role="assistant", content="",
        tool_uses=[ToolUse(id="call_a1", name="lookup_customer", arguments={"id": "C-7"})],
    )
    with_result = asked.answered(proposal, '{"id": "C-7", "status": "active"}')
    bad_answer = Message(role="assistant", content='{"decision": "approve"}')
    repair = with_result.answered(bad_answer, "score: Field required")
    fake.script(openai_answer(VALID))

    await provider(fake, client, monkeypatch).complete(repair, MODEL)

    assert fake.requests[0].body["messages"] == [
        {"role": "system", "content": "You review applications."},
        {"role": "user", "content": "Review application 42"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{
                "id": "call_a1", "type": "function",
                "function": {"name": "lookup_customer", "arguments": json.dumps({"id": "C-7"})},
            }],
        },
        {"role": "tool", "tool_call_id": "call_a1", "content": '{"id": "C-7", "status": "active"}'},
        {"role": "assistant", "content": '{"decision": "approve"}'},
        {"role": "user", "content": "score: Field required"},
    ]
