"""`ModelActivities.call_model` with the real HTTP providers against fake servers.

Proves, end to end through OpenAIChat / AnthropicMessages over real HTTP:
cost is the reported tokens times the configured prices (cached and
cache-written input at their own rates); an unavailable candidate falls over to
the next and is listed in `calls`; when every candidate is down the failure is
retryable with the server's Retry-After as the next delay, and a failed
candidate ranks last on the next call; a schema-invalid answer is repaired in a
second turn that carries the first answer and the validation error; answers
that never validate (of the only candidate: fallover is in
tests/test_structured_output.py), a rejected request and a call over budget
end in typed non-retryable errors listing every call; calls of earlier attempts (from
heartbeat details) are kept and billed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm.activity import LlmSettings, ModelActivities
from activities.llm.catalog import Catalog, ModelSpec, Price, ProviderSpec
from activities.llm.contracts import LlmRequest, LlmResult, ModelCall
from activities.llm.output_type import problems, register
from activities.llm.providers import build_providers
from activities.llm.transport import HttpSettings
from tests.fake_provider import (
    FakeProvider,
    Reply,
    anthropic_answer,
    error_reply,
    openai_answer,
)

KEY = "sk-activity-test-key"
GPT_PRICE = Price(input=2.5, output=10.0, cached_input=1.25)
CLAUDE_PRICE = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)


class Decision(BaseModel):
    approved: bool
    reason: str = Field(min_length=3)


VALID = {"approved": True, "reason": "documents check out"}
INVALID = {"approved": True, "reason": "ok"}  # reason too short


# ----- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def primary_server() -> Iterator[FakeProvider]:
    with FakeProvider() as f:  # one server per module: stopping one takes half a second
        yield f


@pytest.fixture(scope="module")
def backup_server() -> Iterator[FakeProvider]:
    with FakeProvider() as f:
        yield f


def _fresh(server: FakeProvider) -> Iterator[FakeProvider]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def primary(primary_server: FakeProvider) -> Iterator[FakeProvider]:
    """An OpenAI-compatible endpoint; nothing recorded, nothing left over from another test."""
    yield from _fresh(primary_server)


@pytest.fixture
def backup(backup_server: FakeProvider) -> Iterator[FakeProvider]:
    """An Anthropic endpoint; nothing recorded, nothing left over from another test."""
    yield from _fresh(backup_server)


@pytest.fixture
async def client(monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("TEST_KEY", KEY)
    async with HttpSettings(timeout_s=5).client() as c:
        yield c


def catalog(primary: FakeProvider, backup: FakeProvider) -> Catalog:
    return Catalog(
        providers={
            "primary": ProviderSpec(protocol="openai", base_url=primary.url + "/v1", api_key_env="TEST_KEY"),
            "backup": ProviderSpec(protocol="anthropic", base_url=backup.url, api_key_env="TEST_KEY"),
        },
        models={
            "gpt-a": ModelSpec(provider="primary", name="gpt-a-2025-01", price=GPT_PRICE),
            "claude-b": ModelSpec(provider="backup", name="claude-b-4", price=CLAUDE_PRICE),
        },
        tiers={"fast": ["gpt-a"], "careful": ["claude-b"], "both": ["gpt-a", "claude-b"]},
    )


def model_activities(
    primary: FakeProvider, backup: FakeProvider, client: httpx.AsyncClient, **settings
) -> ModelActivities:
    cat = catalog(primary, backup)
    return ModelActivities(cat, build_providers(cat, client), LlmSettings(**settings))


def request(tier: str = "fast", **extra) -> LlmRequest:
    return LlmRequest(
        step="decide", tier=tier, system="You decide applications.", prompt="Decide on application 42",
        output_type=register(Decision, f"{Decision.__module__}.{Decision.__qualname__}"), **extra,
    )


async def run(acts: ModelActivities, req: LlmRequest, env: ActivityEnvironment | None = None) -> LlmResult:
    return await (env or ActivityEnvironment()).run(acts.call_model, req)


async def failure(acts: ModelActivities, req: LlmRequest, env: ActivityEnvironment | None = None) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await run(acts, req, env)
    return caught.value


def calls_of(err: ApplicationError) -> list[ModelCall]:
    return [ModelCall.model_validate(c) for c in err.details[0]]


def gpt_cost(tokens_in: int, tokens_out: int, cached: int = 0) -> float:
    """By hand, from GPT_PRICE: fresh input, cached input and output at their own rates."""
    return ((tokens_in - cached) * 2.5 + cached * 1.25 + tokens_out * 10.0) / 1_000_000


# ----- pricing -------------------------------------------------------------------------


async def test_success_is_priced_from_tokens_with_cached_input_at_its_rate(primary, backup, client) -> None:
    primary.script(openai_answer(VALID, prompt_tokens=2000, completion_tokens=300, cached_tokens=1536))

    result = await run(model_activities(primary, backup, client), request())

    assert result.output == VALID
    assert (result.model, result.provider, result.tier, result.attempt) == ("gpt-a", "primary", "fast", 1)
    assert (result.tokens_in, result.tokens_out, result.cached_tokens) == (2000, 300, 1536)
    # 464 fresh × $2.50 + 1536 cached × $1.25 + 300 out × $10 per million
    assert result.cost_usd == pytest.approx(0.00608, rel=1e-12)
    assert result.cost_usd == pytest.approx(gpt_cost(2000, 300, cached=1536), rel=1e-12)
    [call] = result.calls
    assert (call.model, call.provider, call.outcome, call.turn, call.attempt) == ("gpt-a", "primary", "ok", 0, 1)
    assert call.cost_usd == pytest.approx(result.cost_usd, rel=1e-12)
    assert result.failed == []

    [sent] = primary.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "gpt-a-2025-01"
    assert sent.body["messages"][0] == {"role": "system", "content": "You decide applications."}
    assert sent.body["response_format"]["json_schema"]["name"] == "Decision"
    assert backup.requests == []


async def test_anthropic_cache_reads_and_writes_are_priced_at_their_own_rates(primary, backup, client) -> None:
    backup.script(anthropic_answer(
        "Decision", VALID, input_tokens=100, output_tokens=200, cache_read=4000, cache_write=1000,
    ))

    result = await run(model_activities(primary, backup, client), request("careful"))

    assert result.output == VALID
    assert (result.model, result.provider) == ("claude-b", "backup")
    assert (result.tokens_in, result.tokens_out, result.cached_tokens) == (5100, 200, 4000)
    assert result.calls[0].cache_write_tokens == 1000
    # 100 fresh × $3 + 4000 read × $0.30 + 1000 written × $3.75 + 200 out × $15 per million
    assert result.cost_usd == pytest.approx(0.00825, rel=1e-12)
    assert backup.requests[0].body["tool_choice"] == {"type": "tool", "name": "Decision"}


# ----- fallover, Retry-After, health ------------------------------------------------------


async def test_unavailable_first_candidate_falls_over_to_the_second(primary, backup, client) -> None:
    primary.script(error_reply(500, "internal error"))
    backup.script(anthropic_answer("Decision", VALID, input_tokens=300, output_tokens=50))

    result = await run(model_activities(primary, backup, client), request("both"))

    assert (result.model, result.provider) == ("claude-b", "backup")
    assert result.output == VALID
    failed, answered = result.calls
    assert (failed.model, failed.outcome, failed.status, failed.cost_usd) == ("gpt-a", "unavailable", 500, 0.0)
    assert "internal error" in failed.error
    assert (answered.model, answered.outcome) == ("claude-b", "ok")
    assert result.failed == [failed]
    assert result.cost_usd == pytest.approx((300 * 3.0 + 50 * 15.0) / 1_000_000, rel=1e-12)
    assert (len(primary.requests), len(backup.requests)) == (1, 1)


async def test_429_with_retry_after_is_retryable_with_that_delay(primary, backup, client) -> None:
    primary.script(error_reply(429, "Rate limit reached", headers={"Retry-After": "2"}))

    err = await failure(model_activities(primary, backup, client), request("fast"))

    assert err.type == "AllModelsUnavailable"
    assert err.non_retryable is False
    assert err.next_retry_delay == timedelta(seconds=2)
    assert "Rate limit reached" in err.message
    [call] = calls_of(err)
    assert (call.model, call.outcome, call.status) == ("gpt-a", "unavailable", 429)
    assert len(primary.requests) == 1


async def test_retry_after_is_capped_and_the_soonest_candidate_wins(primary, backup, client) -> None:
    primary.script(error_reply(429, "slow down", headers={"Retry-After": "9000"}))
    backup.script(error_reply(529, "overloaded", headers={"Retry-After": "7000"}))

    err = await failure(model_activities(primary, backup, client, max_retry_after_s=60), request("both"))

    assert err.type == "AllModelsUnavailable" and not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=60)
    assert [(c.model, c.status) for c in calls_of(err)] == [("gpt-a", 429), ("claude-b", 529)]


async def test_no_retry_delay_unless_every_candidate_gave_one(primary, backup, client) -> None:
    primary.script(error_reply(429, "slow down", headers={"Retry-After": "5"}))
    backup.script(Reply(reset=True))

    err = await failure(model_activities(primary, backup, client), request("both"))

    assert err.type == "AllModelsUnavailable" and not err.non_retryable
    assert err.next_retry_delay is None
    assert [c.outcome for c in calls_of(err)] == ["unavailable", "unavailable"]


async def test_a_failed_candidate_ranks_after_a_healthy_one_on_the_next_call(primary, backup, client) -> None:
    acts = model_activities(primary, backup, client)
    primary.script(error_reply(503, "down for maintenance"))
    backup.script(
        anthropic_answer("Decision", VALID, tool_id="toolu_1"),
        anthropic_answer("Decision", VALID, tool_id="toolu_2"),
    )

    first = await run(acts, request("both"))
    second = await run(acts, request("both"))

    assert [c.model for c in first.calls] == ["gpt-a", "claude-b"]
    assert [c.model for c in second.calls] == ["claude-b"]  # the failed one was not asked first
    assert second.model == "claude-b"
    assert (len(primary.requests), len(backup.requests)) == (1, 2)


# ----- repair turns ----------------------------------------------------------------------


async def test_invalid_answer_is_repaired_on_the_second_turn(primary, backup, client) -> None:
    primary.script(
        openai_answer(INVALID, prompt_tokens=500, completion_tokens=40),
        openai_answer(VALID, prompt_tokens=700, completion_tokens=35),
    )

    result = await run(model_activities(primary, backup, client), request())

    assert result.output == VALID
    first, second = result.calls
    assert (first.turn, first.outcome, second.turn, second.outcome) == (0, "invalid", 1, "ok")
    assert first.error == problems(INVALID, Decision)
    assert "reason" in first.error
    assert first.cost_usd == pytest.approx(gpt_cost(500, 40), rel=1e-12)
    assert result.cost_usd == pytest.approx(gpt_cost(500, 40) + gpt_cost(700, 35), rel=1e-12)
    assert (result.tokens_in, result.tokens_out) == (1200, 75)

    assert len(primary.requests) == 2
    *asked, answer, feedback = primary.requests[1].body["messages"]
    assert asked == primary.requests[0].body["messages"]
    assert answer["role"] == "assistant"
    assert json.loads(answer["content"]) == INVALID
    assert feedback["role"] == "user"
    assert first.error in feedback["content"]
    assert "Decision" in feedback["content"]


async def test_anthropic_repair_turn_answers_the_tool_use_with_an_error(primary, backup, client) -> None:
    backup.script(
        anthropic_answer("Decision", INVALID, tool_id="toolu_bad"),
        anthropic_answer("Decision", VALID, tool_id="toolu_good"),
    )

    result = await run(model_activities(primary, backup, client), request("careful"))

    assert result.output == VALID
    assert [c.outcome for c in result.calls] == ["invalid", "ok"]
    _, answer, feedback = backup.requests[1].body["messages"]
    assert answer == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_bad", "name": "Decision", "input": INVALID},
    ]}
    [block] = feedback["content"]
    assert feedback["role"] == "user"
    assert (block["type"], block["tool_use_id"], block["is_error"]) == ("tool_result", "toolu_bad", True)
    assert result.calls[0].error in block["content"]


@pytest.mark.parametrize("repair_turns", [0, 2])
async def test_never_valid_ends_in_invalid_model_output(primary, backup, client, repair_turns) -> None:
    primary.script(*[
        openai_answer(INVALID, prompt_tokens=400 + 100 * turn, completion_tokens=20 + turn)
        for turn in range(repair_turns + 2)  # one spare: it must not be asked for
    ])

    err = await failure(model_activities(primary, backup, client, repair_turns=repair_turns), request("fast"))

    assert err.type == "InvalidModelOutput"
    assert err.non_retryable is True  # a retry would pay for the same repairs again
    assert len(primary.requests) == repair_turns + 1
    calls = calls_of(err)
    assert [(c.turn, c.outcome) for c in calls] == [(t, "invalid") for t in range(repair_turns + 1)]
    for turn, call in enumerate(calls):
        assert call.cost_usd == pytest.approx(gpt_cost(400 + 100 * turn, 20 + turn), rel=1e-12)
        assert call.error == problems(INVALID, Decision)


# ----- non-retryable refusals --------------------------------------------------------------


async def test_rejected_request_is_model_rejected_without_fallover(primary, backup, client) -> None:
    primary.script(error_reply(401, "Incorrect API key provided", kind="invalid_request_error"))
    backup.script(anthropic_answer("Decision", VALID))

    err = await failure(model_activities(primary, backup, client), request("both"))

    assert err.type == "ModelRejected"
    assert err.non_retryable is True
    assert "Incorrect API key provided" in err.message
    [call] = calls_of(err)
    assert (call.model, call.outcome, call.status) == ("gpt-a", "rejected", 401)
    assert backup.requests == []


async def test_budget_smaller_than_worst_case_is_refused_before_sending(primary, backup, client) -> None:
    primary.script(openai_answer(VALID))
    # the worst case is at least max_output_tokens × the output price
    worst_floor = 1024 * GPT_PRICE.output / 1_000_000
    err = await failure(
        model_activities(primary, backup, client), request(budget_remaining_usd=worst_floor * 0.99)
    )

    assert err.type == "BudgetWouldOverrun"
    assert err.non_retryable is True
    assert primary.requests == []
    [call] = calls_of(err)
    assert (call.model, call.outcome, call.cost_usd) == ("gpt-a", "over_budget", 0.0)


async def test_budget_covering_the_worst_case_sends(primary, backup, client) -> None:
    primary.script(openai_answer(VALID, prompt_tokens=100, completion_tokens=10))
    result = await run(model_activities(primary, backup, client), request(budget_remaining_usd=1.0))
    assert result.output == VALID
    assert len(primary.requests) == 1


async def test_repair_turn_is_refused_once_spent_calls_use_up_the_budget(primary, backup, client) -> None:
    # the first answer is invalid and costs $5 (2M prompt tokens × $2.50): nothing is left for a repair
    primary.script(
        openai_answer(INVALID, prompt_tokens=2_000_000, completion_tokens=10),
        openai_answer(VALID),
    )
    err = await failure(model_activities(primary, backup, client), request(budget_remaining_usd=4.0))

    assert err.type == "BudgetWouldOverrun"
    assert len(primary.requests) == 1
    invalid, refused = calls_of(err)
    assert invalid.outcome == "invalid"
    assert invalid.cost_usd == pytest.approx(gpt_cost(2_000_000, 10), rel=1e-12)
    assert (refused.turn, refused.outcome) == (1, "over_budget")


# ----- earlier attempts -----------------------------------------------------------------------


def retry_env(earlier: list[ModelCall], attempt: int = 2) -> tuple[ActivityEnvironment, list]:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, attempt=attempt, heartbeat_details=[[c.model_dump(mode="json") for c in earlier]],
    )
    beats: list = []
    env.on_heartbeat = lambda *details: beats.append(details)
    return env, beats


EARLIER = [
    ModelCall(model="gpt-a", provider="primary", attempt=1, turn=0, outcome="invalid", error="approved: missing",
              tokens_in=900, tokens_out=60, cost_usd=gpt_cost(900, 60), latency_ms=1000.0),
    ModelCall(model="gpt-a", provider="primary", attempt=1, turn=1, outcome="unavailable", status=503,
              error="HTTP 503: overloaded", latency_ms=2000.0),
]


async def test_calls_of_earlier_attempts_are_kept_and_billed(primary, backup, client) -> None:
    primary.script(openai_answer(VALID, prompt_tokens=800, completion_tokens=50))
    env, beats = retry_env(EARLIER)

    result = await run(model_activities(primary, backup, client), request(), env)

    assert result.attempt == 2
    assert result.calls[:2] == EARLIER
    [new] = result.calls[2:]
    assert (new.attempt, new.outcome, new.turn) == (2, "ok", 0)
    assert result.cost_usd == pytest.approx(gpt_cost(900, 60) + gpt_cost(800, 50), rel=1e-12)
    assert (result.tokens_in, result.tokens_out) == (1700, 110)
    assert result.latency_ms < 1000.0  # this attempt's time only
    # the heartbeat the next attempt would read lists every call, the earlier ones first
    assert [c["attempt"] for c in beats[-1][0]] == [1, 1, 2]


async def test_earlier_attempts_spend_counts_against_the_budget(primary, backup, client) -> None:
    primary.script(openai_answer(VALID))
    spent = ModelCall(model="gpt-a", provider="primary", attempt=1, outcome="invalid", cost_usd=0.5)
    env, _ = retry_env([spent])

    err = await failure(model_activities(primary, backup, client), request(budget_remaining_usd=0.505), env)

    assert err.type == "BudgetWouldOverrun"
    assert primary.requests == []
    assert [c.attempt for c in calls_of(err)] == [1, 2]


async def test_all_unavailable_names_only_this_attempts_calls(primary, backup, client) -> None:
    primary.script(error_reply(502, "bad gateway now"))
    env, _ = retry_env(EARLIER, attempt=3)

    err = await failure(model_activities(primary, backup, client), request(), env)

    assert err.type == "AllModelsUnavailable"
    assert "bad gateway now" in err.message
    assert "overloaded" not in err.message  # that was attempt 1
    assert [(c.attempt, c.outcome) for c in calls_of(err)] == [(1, "invalid"), (1, "unavailable"), (3, "unavailable")]


# ----- untrusted usage ---------------------------------------------------------------------------


def openai_with_usage(usage: object) -> Reply:
    """A valid answer whose `usage` the server made up."""
    reply = openai_answer(VALID)
    reply.body["usage"] = usage
    return reply


def worst_case_of(call: ModelCall, price: Price) -> float:
    """What the budget check reasons a request can cost, from the estimate the call was billed on."""
    return price.worst_case(call.tokens_in, call.tokens_out)


LIES = {
    "negative": {"prompt_tokens": -1_000_000_000, "completion_tokens": 10},
    "nan": {"prompt_tokens": float("nan"), "completion_tokens": 10},
    "infinite": {"prompt_tokens": 100, "completion_tokens": float("inf")},
    "huge": {"prompt_tokens": 10**30, "completion_tokens": 10},
    "float": {"prompt_tokens": 1e9, "completion_tokens": 10},
    "boolean": {"prompt_tokens": True, "completion_tokens": 10},
    "text": {"prompt_tokens": "100", "completion_tokens": 10},
    "negative cache": {"prompt_tokens": 100, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": -5000}},
    "cache past input": {"prompt_tokens": 100, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 500}},
    "missing": None,
}


@pytest.mark.parametrize("lie", LIES)
async def test_usage_that_is_no_count_is_billed_the_worst_case(primary, backup, client, lie) -> None:
    primary.script(openai_with_usage(LIES[lie]))

    result = await run(model_activities(primary, backup, client), request(max_output_tokens=500))

    assert result.output == VALID  # the answer stands; only its bill is unknown
    [call] = result.calls
    assert call.cost_estimate.startswith("usage unknown: ")
    assert call.tokens_out == 500 and call.tokens_in > 0
    assert call.cost_usd == pytest.approx(worst_case_of(call, GPT_PRICE), rel=1e-12) and call.cost_usd > 0
    assert result.cost_usd == call.cost_usd


async def test_anthropic_usage_that_is_no_count_is_billed_the_worst_case(primary, backup, client) -> None:
    answer = anthropic_answer("Decision", VALID)
    answer.body["usage"]["cache_read_input_tokens"] = -10**9
    backup.script(answer)

    result = await run(model_activities(primary, backup, client), request("careful"))

    [call] = result.calls
    assert call.cost_estimate.startswith("usage unknown: ")
    assert call.cost_usd == pytest.approx(worst_case_of(call, CLAUDE_PRICE), rel=1e-12) and call.cost_usd > 0


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("body", ["<html>502 Bad Gateway</html>", DEEP, '["a list"]', {"choices": []}],
                         ids=["not json", "nested too deep", "not an object", "wrong shape"])
async def test_an_answer_that_cannot_be_read_is_billed_the_worst_case(primary, backup, client, body) -> None:
    primary.script(Reply(200, body))

    err = await failure(model_activities(primary, backup, client), request())

    assert err.type == "AllModelsUnavailable" and err.non_retryable is False
    [call] = calls_of(err)
    assert call.outcome == "unavailable" and call.cost_estimate
    assert call.cost_usd == pytest.approx(worst_case_of(call, GPT_PRICE), rel=1e-12) and call.cost_usd > 0


async def test_an_error_status_is_not_billed(primary, backup, client) -> None:
    primary.script(error_reply(500, "overloaded"))
    [call] = calls_of(await failure(model_activities(primary, backup, client), request()))
    assert (call.status, call.cost_usd, call.cost_estimate) == (500, 0.0, "")
