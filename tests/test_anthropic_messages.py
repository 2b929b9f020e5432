"""`AnthropicMessages` over real HTTP against the fake provider.

Proves the exact request (path, `x-api-key` and `anthropic-version` headers and
no Authorization, top-level `system`, `max_tokens`, the answer as a forced tool
named after the output model with its `input_schema`, `tool_choice: any` with
the answer tool appended when agent tools are offered), how the answer is read
(output from the answer tool's input, text, agent tool uses, usage counting
cache reads and writes into input), and how a repair turn is encoded (the
previous answer as an assistant `tool_use`, the error as a `tool_result` with
`is_error: true` in a user turn).
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel, Field

from activities.llm.anthropic_messages import AnthropicMessages
from activities.llm.catalog import ModelSpec, Price, ProviderSpec
from activities.llm.conversation import Conversation, Message, ToolSchema, ToolUse
from tests.fake_provider import FakeProvider, Reply, anthropic_answer

KEY = "sk-ant-test-0123456789"
MODEL = ModelSpec(provider="anthropic", name="claude-sonnet-4-5", price=Price(input=3.0, output=15.0))


class Verdict(BaseModel):
    decision: str
    score: int = Field(ge=0, le=100)


LOOKUP = ToolSchema(
    name="lookup_customer",
    description="Fetch a customer record by id",
    parameters={"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
)
VALID = {"decision": "approve", "score": 91}


def conversation(**extra) -> Conversation:
    return Conversation(
        system=extra.pop("system", "You review applications."),
        messages=extra.pop("messages", [Message(role="user", content="Review application 42")]),
        output_name="Verdict",
        output_schema=Verdict.model_json_schema(),
        **extra,
    )


def provider(fake: FakeProvider, client: httpx.AsyncClient, monkeypatch, **spec) -> AnthropicMessages:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", KEY)
    return AnthropicMessages(
        ProviderSpec(protocol="anthropic", base_url=fake.url, api_key_env="TEST_ANTHROPIC_KEY", **spec), client
    )


async def test_typed_request_is_sent_exactly(fake, client, monkeypatch) -> None:
    fake.script(anthropic_answer("Verdict", VALID))
    await provider(fake, client, monkeypatch).complete(conversation(max_output_tokens=555), MODEL)

    [sent] = fake.requests
    assert sent.method == "POST"
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = sent.body
    assert body["model"] == "claude-sonnet-4-5"
    assert body["max_tokens"] == 555
    assert body["system"] == "You review applications."
    assert body["messages"] == [{"role": "user", "content": "Review application 42"}]
    assert all(m["role"] != "system" for m in body["messages"])
    assert body["tools"] == [{
        "name": "Verdict",
        "description": "Give your final answer by calling this tool with it.",
        "input_schema": Verdict.model_json_schema(),
    }]
    assert body["tool_choice"] == {"type": "tool", "name": "Verdict"}


async def test_version_and_extra_headers_come_from_the_spec(fake, client, monkeypatch) -> None:
    fake.script(anthropic_answer("Verdict", VALID))
    chat = provider(
        fake, client, monkeypatch,
        anthropic_version="2024-01-01", headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    await chat.complete(conversation(system=""), MODEL)
    sent = fake.requests[0]
    assert sent.headers["anthropic-version"] == "2024-01-01"
    assert sent.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "system" not in sent.body


async def test_without_a_key_no_key_header_is_sent(fake, client, monkeypatch) -> None:
    fake.script(anthropic_answer("Verdict", VALID))
    keyless = AnthropicMessages(ProviderSpec(protocol="anthropic", base_url=fake.url + "/"), client)
    await keyless.complete(conversation(), MODEL)
    sent = fake.requests[0]
    assert sent.path == "/v1/messages"
    assert "x-api-key" not in sent.headers and "authorization" not in sent.headers


async def test_agent_tools_choose_any_and_the_answer_tool_is_appended(fake, client, monkeypatch) -> None:
    fake.script(anthropic_answer("Verdict", VALID))
    await provider(fake, client, monkeypatch).complete(conversation(tools=[LOOKUP]), MODEL)
    body = fake.requests[0].body
    assert body["tool_choice"] == {"type": "any"}
    assert [t["name"] for t in body["tools"]] == ["lookup_customer", "Verdict"]
    assert body["tools"][0] == {
        "name": "lookup_customer",
        "description": "Fetch a customer record by id",
        "input_schema": LOOKUP.parameters,
    }
    assert body["tools"][1]["input_schema"] == Verdict.model_json_schema()


async def test_output_comes_from_the_answer_tools_input(fake, client, monkeypatch) -> None:
    fake.script(anthropic_answer("Verdict", VALID, text="Here is my verdict.", tool_id="toolu_9"))
    done = await provider(fake, client, monkeypatch).complete(conversation(), MODEL)
    assert done.output == VALID
    assert done.message.role == "assistant"
    assert done.message.content == "Here is my verdict."
    assert done.message.tool_uses == [ToolUse(id="toolu_9", name="Verdict", arguments=VALID)]


async def test_an_agent_tool_use_is_no_output(fake, client, monkeypatch) -> None:
    fake.script(anthropic_answer("lookup_customer", {"id": "C-7"}, tool_id="toolu_2"))
    done = await provider(fake, client, monkeypatch).complete(conversation(tools=[LOOKUP]), MODEL)
    assert done.output is None
    assert done.message.tool_uses == [ToolUse(id="toolu_2", name="lookup_customer", arguments={"id": "C-7"})]


async def test_text_only_answer_has_no_output(fake, client, monkeypatch) -> None:
    fake.script(Reply(200, {
        "id": "msg_t", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": "I cannot decide."}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 20, "output_tokens": 5},
    }))
    done = await provider(fake, client, monkeypatch).complete(conversation(), MODEL)
    assert done.output is None
    assert done.message.content == "I cannot decide."
    assert (done.usage.input, done.usage.output, done.usage.cached_input, done.usage.cache_write) == (20, 5, 0, 0)


async def test_usage_input_counts_fresh_cache_read_and_cache_written(fake, client, monkeypatch) -> None:
    fake.script(anthropic_answer("Verdict", VALID, input_tokens=50, output_tokens=70, cache_read=2000, cache_write=300))
    done = await provider(fake, client, monkeypatch).complete(conversation(), MODEL)
    assert done.usage.input == 50 + 2000 + 300
    assert done.usage.output == 70
    assert done.usage.cached_input == 2000
    assert done.usage.cache_write == 300


async def test_repair_turn_encodes_answer_as_tool_use_and_error_as_tool_result(fake, client, monkeypatch) -> None:
    first = Message(
        role="assistant", content="Draft:",
        tool_uses=[ToolUse(id="toolu_1", name="Verdict", arguments={"decision": "approve"})],
    )
    repair = conversation().answered(first, "score: Field required")
    fake.script(anthropic_answer("Verdict", VALID))

    await provider(fake, client, monkeypatch).complete(repair, MODEL)

    assert fake.requests[0].body["messages"] == [
        {"role": "user", "content": "Review application 42"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Draft:"},
            {"type": "tool_use", "id": "toolu_1", "name": "Verdict", "input": {"decision": "approve"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "score: Field required", "is_error": True},
        ]},
    ]


async def test_consecutive_tool_results_share_one_user_turn(fake, client, monkeypatch) -> None:
    messages = [
        Message(role="user", content="Review application 42"),
        Message(role="assistant", tool_uses=[
            ToolUse(id="toolu_a", name="lookup_customer", arguments={"id": "C-7"}),
            ToolUse(id="toolu_b", name="lookup_customer", arguments={"id": "C-8"}),
        ]),
        Message(role="tool", tool_use_id="toolu_a", content="active"),
        Message(role="tool", tool_use_id="toolu_b", content="closed"),
    ]
    fake.script(anthropic_answer("Verdict", VALID))
    await provider(fake, client, monkeypatch).complete(conversation(messages=messages, tools=[LOOKUP]), MODEL)
    wire = fake.requests[0].body["messages"]
    assert [m["role"] for m in wire] == ["user", "assistant", "user"]
    assert wire[1]["content"] == [  # no empty text block
        {"type": "tool_use", "id": "toolu_a", "name": "lookup_customer", "input": {"id": "C-7"}},
        {"type": "tool_use", "id": "toolu_b", "name": "lookup_customer", "input": {"id": "C-8"}},
    ]
    assert wire[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "active"},
        {"type": "tool_result", "tool_use_id": "toolu_b", "content": "closed"},
    ]
