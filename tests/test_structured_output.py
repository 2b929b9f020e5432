"""Structured output on every server: each model's mode, end to end over real HTTP.

The servers are dialects (tests/provider_dialects.py): an OpenAI-compatible
one that takes only `json_object`, one that takes only tools, one that takes
neither, one that takes everything, and an Anthropic one. Every request they
get is checked against the provider's published request type. Proves: each
mode (json_schema, tool, json_object, prompt) asks in its own way and reads
the answer back, repairs included; a server that refuses a mode as malformed
(400 or 422) ends the step at once, non-retryable, naming the mode sent and
the modes to try; a candidate whose answers never validate falls over to the
next one; an Anthropic JSON text answer counts as well as a tool use; and
every call records the provider's model name asked for and the one that answered.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm.activity import LlmSettings, ModelActivities
from activities.llm.catalog import Catalog, ModelSpec, Price, ProviderSpec
from activities.llm.contracts import LlmRequest, LlmResult, ModelCall
from activities.llm.conversation import ToolSchema
from activities.llm.output_type import register
from activities.llm.providers import build_providers
from activities.llm.transport import HttpSettings
from tests.fake_provider import FakeProvider, error_reply
from tests.provider_dialects import ANTHROPIC_FEATURES, OPENAI_FEATURES, AnthropicDialect, OpenAIDialect

PRICE = Price(input=1.0, output=2.0)


class Decision(BaseModel):
    approved: bool
    reason: str = Field(min_length=3)


VALID = {"approved": True, "reason": "documents check out"}
INVALID = {"approved": True, "reason": "ok"}  # reason too short

DIALECTS = {
    "everything": lambda: OpenAIDialect(OPENAI_FEATURES),
    "json-object-only": lambda: OpenAIDialect(frozenset({"json_object"}), refusal="fastapi"),
    "tools-only": lambda: OpenAIDialect(frozenset({"tools"})),
    "neither": lambda: OpenAIDialect(frozenset()),
    "claude": lambda: AnthropicDialect(ANTHROPIC_FEATURES),
}


class Servers:
    """One dialect server per name, started once per module, its dialect fresh for each test."""

    def __init__(self) -> None:
        self.dialects = {name: make() for name, make in DIALECTS.items()}
        self.fakes = {name: FakeProvider(responder=self._responder(name)) for name in DIALECTS}

    def _responder(self, name: str):
        return lambda request: self.dialects[name](request)

    def fresh(self, **dialects) -> None:
        self.dialects = {name: make() for name, make in DIALECTS.items()} | dialects
        for fake in self.fakes.values():
            fake.reset()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    s = Servers()
    for fake in s.fakes.values():
        fake.__enter__()
    yield s
    for fake in s.fakes.values():
        fake.__exit__()


@pytest.fixture
def dialects(servers: Servers) -> Iterator[Servers]:
    servers.fresh()
    yield servers
    servers.fresh()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with HttpSettings(timeout_s=5).client() as c:
        yield c


def activities(servers: Servers, client: httpx.AsyncClient, tiers: dict[str, list[str]],
               modes: dict[str, str | None], **settings) -> ModelActivities:
    """Model `NAME` is served by dialect server `NAME`, asked for as `NAME-model` in mode `modes[NAME]`."""
    providers = {
        name: ProviderSpec(protocol="anthropic" if name == "claude" else "openai",
                           base_url=fake.url if name == "claude" else fake.url + "/v1")
        for name, fake in servers.fakes.items()
    }
    models = {
        name: ModelSpec(provider=name, name=f"{name}-model", price=PRICE, **({"structured_output": mode} if mode else {}))
        for name, mode in modes.items()
    }
    catalog = Catalog(providers=providers, models=models, tiers=tiers)
    return ModelActivities(catalog, build_providers(catalog, client), LlmSettings(**settings))


def one(servers: Servers, client: httpx.AsyncClient, name: str, mode: str | None, **settings) -> ModelActivities:
    return activities(servers, client, {"t": [name]}, {name: mode}, **settings)


def request(**extra) -> LlmRequest:
    return LlmRequest(step="decide", tier="t", system="You decide applications.",
                      prompt="Decide on application 42", output_type=register(Decision, f"{Decision.__module__}.{Decision.__qualname__}"), **extra)


async def run(acts: ModelActivities, req: LlmRequest | None = None) -> LlmResult:
    return await ActivityEnvironment().run(acts.call_model, req or request())


async def failure(acts: ModelActivities) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await run(acts)
    return caught.value


def calls_of(err: ApplicationError) -> list[ModelCall]:
    return [ModelCall.model_validate(c) for c in err.details[0]]


def system_text(body: dict) -> str:
    """The system prompt as sent, in either protocol."""
    if "system" in body:
        return body["system"]
    return next((m["content"] for m in body["messages"] if m["role"] == "system"), "")


def assert_schema_in_the_prompt(body: dict) -> None:
    text = system_text(body)
    assert text.startswith("You decide applications.")
    assert "JSON" in text
    assert json.dumps(Decision.model_json_schema()) in text


# ----- each mode asks in its own way, and reads its answer back ------------------------------


async def test_json_object_mode_on_a_server_that_takes_only_json_object(dialects, client) -> None:
    dialects.dialects["json-object-only"].script(VALID)

    result = await run(one(dialects, client, "json-object-only", "json_object"))

    assert result.output == VALID
    [sent] = dialects.fakes["json-object-only"].requests
    assert sent.body["response_format"] == {"type": "json_object"}
    assert "tools" not in sent.body and "tool_choice" not in sent.body
    assert_schema_in_the_prompt(sent.body)


async def test_tool_mode_on_a_tools_only_server_with_a_repair(dialects, client) -> None:
    dialects.dialects["tools-only"].script(INVALID, VALID)

    result = await run(one(dialects, client, "tools-only", "tool"))

    assert result.output == VALID
    assert [(c.turn, c.outcome) for c in result.calls] == [(0, "invalid"), (1, "ok")]
    first, repair = (r.body for r in dialects.fakes["tools-only"].requests)
    assert "response_format" not in first
    [answer_tool] = first["tools"]
    assert answer_tool["type"] == "function"
    assert answer_tool["function"]["name"] == "Decision"
    assert answer_tool["function"]["strict"] is True
    assert set(answer_tool["function"]["parameters"]["required"]) == {"approved", "reason"}
    assert first["tool_choice"] == {"type": "function", "function": {"name": "Decision"}}
    # the repair answers the forced call with the validation error, as a tool result
    *_, asked, told = repair["messages"]
    assert asked["role"] == "assistant" and asked["tool_calls"][0]["function"]["name"] == "Decision"
    assert json.loads(asked["tool_calls"][0]["function"]["arguments"]) == INVALID
    assert (told["role"], told["tool_call_id"]) == ("tool", asked["tool_calls"][0]["id"])
    assert result.calls[0].error in told["content"]


async def test_prompt_mode_on_a_server_with_neither_reads_json_out_of_prose(dialects, client) -> None:
    dialects.dialects["neither"].script(INVALID, VALID)

    result = await run(one(dialects, client, "neither", "prompt"))

    assert result.output == VALID
    assert [c.outcome for c in result.calls] == ["invalid", "ok"]
    first, repair = (r.body for r in dialects.fakes["neither"].requests)
    for body in (first, repair):
        assert not {"response_format", "tools", "tool_choice"} & set(body)
        assert_schema_in_the_prompt(body)
    assert repair["messages"][-1]["role"] == "user" and "reason" in repair["messages"][-1]["content"]


@pytest.mark.parametrize("mode", ["json_schema", "tool", "json_object", "prompt"])
async def test_every_openai_mode_is_a_published_request_and_answers(dialects, client, mode) -> None:
    dialects.dialects["everything"].script(VALID)
    result = await run(one(dialects, client, "everything", mode))
    assert result.output == VALID  # the dialect refuses (400) any body its SDK type does not take
    [sent] = dialects.fakes["everything"].requests
    asked = {"json_schema": "response_format", "tool": "tool_choice", "json_object": "response_format", "prompt": None}
    assert {"response_format", "tool_choice"} & set(sent.body) == ({asked[mode]} if asked[mode] else set())


@pytest.mark.parametrize("mode", [None, "tool", "json_schema", "prompt"])
async def test_every_anthropic_mode_is_a_published_request_and_answers(dialects, client, mode) -> None:
    dialects.dialects["claude"].script(VALID)

    result = await run(one(dialects, client, "claude", mode))

    assert result.output == VALID
    [sent] = dialects.fakes["claude"].requests
    body = sent.body
    if mode in (None, "tool"):  # the default: a forced tool
        assert body["tool_choice"] == {"type": "tool", "name": "Decision"}
        assert "output_config" not in body
    elif mode == "json_schema":
        fmt = body["output_config"]["format"]
        assert fmt["type"] == "json_schema"
        assert fmt["schema"]["additionalProperties"] is False
        assert "tools" not in body and "tool_choice" not in body
    else:
        assert not {"output_config", "tools", "tool_choice"} & set(body)
        assert_schema_in_the_prompt(body)


async def test_an_anthropic_json_text_answer_counts_as_well_as_a_tool_use(dialects, client) -> None:
    dialects.fresh(claude=AnthropicDialect(ignores_tool_choice=True))
    dialects.dialects["claude"].script(VALID)

    result = await run(one(dialects, client, "claude", "tool"))

    assert result.output == VALID
    assert dialects.fakes["claude"].requests[0].body["tool_choice"]["type"] == "tool"


LOOKUP = ToolSchema(name="lookup_order", description="An order by id",
                    parameters={"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]})


@pytest.mark.parametrize(("server", "mode", "choice"), [
    ("everything", "tool", "required"),  # an agent tool or the answer tool
    ("everything", "json_schema", None), ("everything", "json_object", None), ("everything", "prompt", None),
    ("claude", "tool", {"type": "any"}), ("claude", "json_schema", None), ("claude", "prompt", None),
])
async def test_an_agent_turn_offers_its_tools_in_every_mode(dialects, client, server, mode, choice) -> None:
    """With agent tools the model may call one or answer; only the tool mode makes it call something."""
    dialects.dialects[server].script(VALID)

    result = await run(one(dialects, client, server, mode), request(tools=[LOOKUP]))

    assert result.output == VALID and result.tool_uses == []
    body = dialects.fakes[server].requests[0].body
    names = [t["function"]["name"] if "function" in t else t["name"] for t in body["tools"]]
    assert names == (["lookup_order", "Decision"] if mode == "tool" else ["lookup_order"])
    assert body.get("tool_choice") == choice


# ----- a mode the server refuses -------------------------------------------------------------


@pytest.mark.parametrize(("server", "mode", "status"), [
    ("json-object-only", None, 422),  # the default, json_schema
    ("tools-only", "json_schema", 400),
    ("tools-only", "json_object", 400),
    ("neither", "tool", 400),
])
async def test_a_mode_the_server_refuses_is_not_retried_and_names_the_modes_to_try(
    dialects, client, server, mode, status
) -> None:
    dialects.dialects[server].script(VALID)

    err = await failure(one(dialects, client, server, mode))

    sent = mode or "json_schema"
    assert err.type == "ModelRejected"
    assert err.non_retryable is True
    assert len(dialects.fakes[server].requests) == 1
    [call] = calls_of(err)
    assert (call.outcome, call.status) == ("rejected", status)
    assert "not supported by this server" in err.message  # the server's own words
    assert f'structured_output = "{sent}"' in err.message
    assert f"[models.{server}]" in err.message
    others = [m for m in ("json_schema", "json_object", "tool", "prompt") if m != sent]
    assert all(f'"{m}"' in err.message for m in others)


async def test_a_bad_key_is_no_mode_problem(dialects, client) -> None:
    dialects.fakes["everything"].script(error_reply(401, "Incorrect API key provided"))
    err = await failure(one(dialects, client, "everything", None))
    assert err.type == "ModelRejected" and err.non_retryable
    assert "structured_output" not in err.message


# ----- answers that never validate fall over ----------------------------------------------------


async def test_a_candidate_that_never_validates_falls_over_to_the_next(dialects, client) -> None:
    dialects.dialects["everything"].script(INVALID, INVALID, INVALID, VALID)  # the last is never asked for
    dialects.dialects["claude"].script(VALID)
    acts = activities(dialects, client, {"t": ["everything", "claude"]}, {"everything": None, "claude": None})

    result = await run(acts)

    assert result.output == VALID
    assert (result.model, result.provider) == ("claude", "claude")
    assert [(c.model, c.turn, c.outcome) for c in result.calls] == [
        ("everything", 0, "invalid"), ("everything", 1, "invalid"), ("everything", 2, "invalid"), ("claude", 0, "ok"),
    ]
    assert (len(dialects.fakes["everything"].requests), len(dialects.fakes["claude"].requests)) == (3, 1)
    assert result.cost_usd == pytest.approx(sum(c.cost_usd for c in result.calls))


async def test_when_no_candidate_validates_the_step_is_invalid_naming_each(dialects, client) -> None:
    dialects.dialects["everything"].script(INVALID, INVALID)
    dialects.dialects["claude"].script(INVALID, INVALID)
    acts = activities(dialects, client, {"t": ["everything", "claude"]}, {"everything": None, "claude": None},
                      repair_turns=1)

    err = await failure(acts)

    assert err.type == "InvalidModelOutput" and err.non_retryable
    assert "everything gave no valid Decision" in err.message and "claude gave no valid Decision" in err.message
    assert [(c.model, c.outcome) for c in calls_of(err)] == [
        ("everything", "invalid"), ("everything", "invalid"), ("claude", "invalid"), ("claude", "invalid"),
    ]


async def test_an_invalid_candidate_and_an_unavailable_one_is_not_retried(dialects, client) -> None:
    """A retry would pay for the same repairs again: the step ends invalid, naming both."""
    dialects.dialects["everything"].script(INVALID)
    dialects.fakes["claude"].script(error_reply(529, "overloaded", kind="overloaded_error"))
    acts = activities(dialects, client, {"t": ["everything", "claude"]}, {"everything": None, "claude": None},
                      repair_turns=0)

    err = await failure(acts)

    assert err.type == "InvalidModelOutput" and err.non_retryable
    assert "overloaded" in err.message
    assert [(c.model, c.outcome) for c in calls_of(err)] == [("everything", "invalid"), ("claude", "unavailable")]


# ----- which model answered ------------------------------------------------------------------


async def test_each_call_records_the_model_name_asked_for_and_the_one_that_answered(dialects, client) -> None:
    dialects.fresh(everything=OpenAIDialect(OPENAI_FEATURES, served="everything-model-2025-06-01"))
    dialects.dialects["everything"].script(INVALID, VALID)

    result = await run(one(dialects, client, "everything", None))

    assert dialects.fakes["everything"].requests[0].body["model"] == "everything-model"
    assert (result.model, result.requested_model, result.reported_model) == (
        "everything", "everything-model", "everything-model-2025-06-01")
    assert [(c.requested_model, c.reported_model) for c in result.calls] == [
        ("everything-model", "everything-model-2025-06-01")] * 2


async def test_a_refused_call_records_the_name_asked_for_and_no_answerer(dialects, client) -> None:
    err = await failure(one(dialects, client, "neither", None))
    [call] = calls_of(err)
    assert (call.requested_model, call.reported_model) == ("neither-model", None)


@pytest.mark.parametrize(("server", "body"), [
    ("everything", {"tool_choice": {"type": "tool", "name": "Decision"}}),  # Anthropic's shape on Chat Completions
    ("everything", {"response_format": {"type": "json_schema", "schema": {}}}),  # the schema outside json_schema
    ("everything", {"max_output_tokens": 5}),  # not a Chat Completions parameter
    ("claude", {"tool_choice": {"type": "function", "function": {"name": "Decision"}}}),  # OpenAI's shape
    ("claude", {"output_format": {"type": "json_schema", "schema": {}}}),  # the beta's name, not the published one
])
async def test_the_dialect_servers_refuse_what_the_published_request_types_do_not_take(
    dialects, client, server, body
) -> None:
    """The shape check can fail: a request off the providers' published types is a 400."""
    base = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    path = "/v1/messages" if server == "claude" else "/v1/chat/completions"
    dialects.dialects[server].script(VALID)
    response = await client.post(dialects.fakes[server].url + path, json={**base, **body})
    assert response.status_code == 400, response.text
