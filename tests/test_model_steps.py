"""Model steps through Temporal, against a real OpenAI-compatible server on localhost.

The provider is a local HTTP server (tests/fake_provider.py) replaying the
documented Chat Completions shapes; everything between the workflow and that
server is the product: the engine, the activity, Temporal's retry policy, the
shared httpx client and the ledger.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from temporalio.client import Client

from activities.llm.catalog import ModelSpec, Price, ProviderSpec
from activities.llm.transport import HttpSettings
from client.audit import audit, audit_text
from client.render import ledger_table
from client.run_record import run_record
from client.sdk import Baton
from tests.conftest import running_worker
from tests.fake_provider import FakeProvider, Reply, error_reply, openai_answer
from tests.history_payloads import decoded
from tests.provider_dialects import OpenAIDialect
from tests.processes import Drafting, DraftRequest
from tests.test_onboarding_routes import CLEAR
from worker.config import BatonConfig
from workflows.outcome import RunOutcome, RunState

KEY = "sk-test-" + uuid.uuid4().hex  # a fresh secret per session: any sighting is a leak
PRICE = Price(input=0.50, output=1.50, cached_input=0.05)
EMAIL = {"subject": "Welcome to the bank", "body": "Dear Ada, welcome aboard.\nThe onboarding team"}


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_TEST_KEY", KEY)


def local_config(config: BatonConfig, *urls: str, structured_output: str | None = None, **http) -> BatonConfig:
    """`fast` points at OpenAI-compatible servers on localhost, in fallback order, allowed personal data."""
    providers = {
        f"local{i}": ProviderSpec(protocol="openai", base_url=f"{url}/v1", api_key_env="BATON_TEST_KEY")
        for i, url in enumerate(urls)
    }
    models = {
        f"local{i}-fast": ModelSpec(
            provider=f"local{i}", name=f"qwen-{i}", price=PRICE, structured_output=structured_output, personal_data=True,
        )
        for i in range(len(urls))
    }
    return config.model_copy(update={
        "providers": providers,
        "models": {**config.models, **models},
        "tiers": {**config.tiers, "fast": list(models)},
        "http": HttpSettings(timeout_s=http.get("timeout_s", 10.0)),
    })


def cost(prompt: int, completion: int, cached: int = 0) -> float:
    return ((prompt - cached) * PRICE.input + cached * PRICE.cached_input + completion * PRICE.output) / 1e6


async def history_text(client: Client, run_id: str) -> str:
    """The run's history as a codec server's reader sees it: decoded, so a grep of it can find a leak."""
    history = await client.get_workflow_handle(run_id).fetch_history()
    return (await decoded(history, client.data_converter.payload_codec)).to_json()


async def test_onboarding_runs_on_a_local_openai_compatible_server(time_env, config, systems):
    with FakeProvider() as fake:
        fake.script(openai_answer(EMAIL, model="qwen-0", prompt_tokens=412, completion_tokens=57, cached_tokens=256))
        async with running_worker(time_env.client, local_config(config, fake.url)) as w:
            baton = Baton(time_env.client, w.task_queue)
            run_id = await baton.start("onboarding", CLEAR)
            outcome = await baton.result(run_id)
            ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    email = next(e for e in ledger if e.step == "welcome_email")
    assert (email.tier, email.provider, email.model) == ("fast", "local0", "local0-fast")
    assert (email.tokens_in, email.tokens_out, email.cached_tokens) == (412, 57, 256)
    assert email.cost_usd == pytest.approx(cost(412, 57, cached=256))
    assert outcome.cost_usd == round(email.cost_usd, 6)
    # what went over the wire: the configured model name, the key, the step's schema
    sent = fake.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "qwen-0"
    assert sent.body["response_format"]["json_schema"]["name"] == "WelcomeEmail"
    assert set(sent.body["response_format"]["json_schema"]["schema"]["required"]) == {"subject", "body"}
    # the e-mail the model wrote is the one that went out
    assert systems.count("outbox", subject=EMAIL["subject"], body=EMAIL["body"]) == 1


async def test_rate_limit_waits_for_retry_after_then_succeeds(dev_env, config, systems):
    """Temporal's retry policy owns the retry; Retry-After sets its delay; both calls are in the ledger."""
    with FakeProvider() as fake:
        fake.script(error_reply(429, "Rate limit reached", headers={"retry-after": "2"}), openai_answer(EMAIL))
        async with running_worker(dev_env.client, local_config(config, fake.url)) as w:
            baton = Baton(dev_env.client, w.task_queue)
            run_id = await baton.start("onboarding", CLEAR)
            outcome = await baton.result(run_id)
            ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert len(fake.requests) == 2
    assert fake.requests[1].at - fake.requests[0].at >= 1.9  # the server's 2 s, not the policy's 1 s
    email = next(e for e in ledger if e.step == "welcome_email")
    assert email.attempts == 2
    assert [(c.attempt, c.outcome, c.status) for c in email.calls] == [(1, "unavailable", 429), (2, "ok", None)]
    assert email.cost_usd == pytest.approx(cost(120, 30))  # the rate-limited call cost nothing
    assert "welcome_email: attempt 1, local0-fast: unavailable — HTTP 429: Rate limit reached" in ledger_table(ledger)


async def test_server_error_falls_over_to_the_next_candidate(time_env, config):
    with FakeProvider() as down, FakeProvider() as up:
        down.script(error_reply(500, "internal error"))
        up.script(openai_answer(EMAIL, model="qwen-1"))
        async with running_worker(time_env.client, local_config(config, down.url, up.url)) as w:
            baton = Baton(time_env.client, w.task_queue)
            run_id = await baton.start("onboarding", CLEAR)
            outcome = await baton.result(run_id)
            ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    email = next(e for e in ledger if e.step == "welcome_email")
    assert (email.model, email.attempts) == ("local1-fast", 1)  # one Temporal attempt, two models
    assert [(c.model, c.outcome, c.status) for c in email.calls] == [
        ("local0-fast", "unavailable", 500), ("local1-fast", "ok", None),
    ]
    assert len(down.requests) == len(up.requests) == 1


async def test_a_timeout_is_retried_by_temporal_and_bounded(time_env, config):
    with FakeProvider() as fake:
        fake.script(Reply(delay_s=1.5, body=openai_answer(EMAIL).body), openai_answer(EMAIL))
        async with running_worker(time_env.client, local_config(config, fake.url, timeout_s=0.5)) as w:
            baton = Baton(time_env.client, w.task_queue)
            run_id = await baton.start("onboarding", CLEAR)
            outcome = await baton.result(run_id)
            ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    email = next(e for e in ledger if e.step == "welcome_email")
    assert email.attempts == 2
    assert len(fake.requests) == 2


async def test_an_answer_repaired_on_the_second_turn(time_env, config):
    with FakeProvider() as fake:
        fake.script(openai_answer({"subject": "Hi"}), openai_answer(EMAIL))
        async with running_worker(time_env.client, local_config(config, fake.url)) as w:
            baton = Baton(time_env.client, w.task_queue)
            run_id = await baton.start("onboarding", CLEAR)
            outcome = await baton.result(run_id)
            ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    email = next(e for e in ledger if e.step == "welcome_email")
    assert [(c.turn, c.outcome) for c in email.calls] == [(0, "invalid"), (1, "ok")]
    assert email.cost_usd == pytest.approx(2 * cost(120, 30))
    repair = fake.requests[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": json.dumps({"subject": "Hi"})}
    assert repair[-1]["role"] == "user" and "body" in repair[-1]["content"]


async def test_a_never_valid_answer_can_be_routed_to_a_person(time_env, config):
    with FakeProvider(responder=lambda _: openai_answer({"headline": "no"})) as fake:
        async with running_worker(
            time_env.client, local_config(config, fake.url), extra_workflows=(Drafting,)
        ) as w:
            handle = await time_env.client.start_workflow(
                Drafting.run, DraftRequest(topic="tides"), id=f"draft-{uuid.uuid4().hex[:6]}",
                task_queue=w.task_queue, result_type=RunOutcome[dict],
            )
            outcome = await handle.result()
            ledger = await Baton(time_env.client, w.task_queue).ledger(handle.id)

    assert len(fake.requests) == config.llm.repair_turns + 1
    assert outcome.state is RunState.REJECTED and "rejected by deadline" in outcome.reason
    draft, escalation = ledger
    assert (draft.step, draft.outcome, len(draft.calls)) == ("draft", "invalid", len(fake.requests))
    assert "headline" in draft.detail and "words" in draft.detail
    assert escalation.step == "write_by_hand"


async def test_unbounded_retries_are_refused(time_env, config):
    async with running_worker(time_env.client, config, extra_workflows=(Drafting,)) as w:
        handle = await time_env.client.start_workflow(
            Drafting.run, DraftRequest(topic="tides", unbounded_retries=True),
            id=f"draft-{uuid.uuid4().hex[:6]}", task_queue=w.task_queue,
        )
        outcome = await Baton(time_env.client, w.task_queue).result(handle.id)  # Failed in Temporal, typed here
    assert outcome.state is RunState.FAILED
    assert "maximum_attempts" in outcome.reason and "draft" in outcome.reason


async def test_the_api_key_never_leaks(time_env, config, caplog):
    """The server echoes the key in its 401; the run fails, naming the cause, without the key."""
    caplog.set_level(logging.DEBUG)
    with FakeProvider() as fake:
        fake.script(error_reply(401, f"Incorrect API key provided: {KEY}.", kind="invalid_request_error"))
        async with running_worker(time_env.client, local_config(config, fake.url)) as w:
            baton = Baton(time_env.client, w.task_queue)
            run_id = await baton.start("onboarding", CLEAR)
            outcome = await baton.result(run_id)
            ledger = await baton.ledger(run_id)
            status = await baton.status(run_id)
            history = await history_text(time_env.client, run_id)

    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was sent, to the provider only
    assert outcome.state is RunState.FAILED
    assert "401" in outcome.reason and "[redacted]" in outcome.reason
    assert len(fake.requests) == 1  # a rejected key is not retried
    seen = {
        "outcome": outcome.model_dump_json(),
        "ledger": json.dumps([e.model_dump(mode="json") for e in ledger]),
        "status": status.model_dump_json(),
        "history": history,
        "logs": caplog.text,
    }
    assert [where for where, text in seen.items() if KEY in text] == []
    assert "Incorrect API key provided" in history  # the provider's message did get through


# ----- structured-output modes, and which model answered -------------------------------------


async def onboard(client: Client, config: BatonConfig) -> tuple[str, RunOutcome, list]:
    async with running_worker(client, config) as w:
        baton = Baton(client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        return run_id, await baton.result(run_id), await baton.ledger(run_id)


async def test_the_ledger_and_audit_keep_the_model_asked_for_and_the_one_that_answered(time_env, config):
    """A json_object-only server, in JSON mode; the label's meaning at the time stays in the run's history."""
    dialect = OpenAIDialect(frozenset({"json_object"}), served="qwen-0-served-2025-06")
    dialect.script(EMAIL)
    with FakeProvider(responder=dialect) as fake:
        run_id, outcome, ledger = await onboard(
            time_env.client, local_config(config, fake.url, structured_output="json_object"))
    record = await run_record(time_env.client, run_id)  # from history alone, no worker

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert fake.requests[0].body["response_format"] == {"type": "json_object"}
    email = next(e for e in ledger if e.step == "welcome_email")
    assert (email.model, email.requested_model, email.reported_model) == (
        "local0-fast", "qwen-0", "qwen-0-served-2025-06")
    assert [(c.requested_model, c.reported_model) for c in email.calls] == [("qwen-0", "qwen-0-served-2025-06")]
    [row] = [line for line in ledger_table(ledger).splitlines() if "welcome_email" in line]
    assert "fast→local0/local0-fast (qwen-0, answered by qwen-0-served-2025-06)" in row
    assert record.ledger == ledger
    data = audit(record)
    [step] = [s for s in data["steps"] if s["step"] == "welcome_email"]
    assert (step["requested_model"], step["reported_model"]) == ("qwen-0", "qwen-0-served-2025-06")
    [row] = [line for line in audit_text(data).splitlines() if "local0/local0-fast" in line]  # the steps table
    assert "welcome_email" in row and "(qwen-0, answered by qwen-0-served-2025-06)" in row


async def test_a_server_refusing_the_mode_fails_the_run_at_once_naming_the_modes_to_try(time_env, config):
    """The default json_schema on a json_object-only server: a 422, one request, no retries."""
    with FakeProvider(responder=OpenAIDialect(frozenset({"json_object"}), refusal="fastapi")) as fake:
        _, outcome, ledger = await onboard(time_env.client, local_config(config, fake.url))

    assert outcome.state is RunState.FAILED
    assert len(fake.requests) == 1
    email = next(e for e in ledger if e.step == "welcome_email")
    assert (email.outcome, email.attempts) == ("error", 1)
    assert [(c.outcome, c.status, c.requested_model, c.reported_model) for c in email.calls] == [
        ("rejected", 422, "qwen-0", None)]
    assert 'structured_output = "json_schema"' in outcome.reason
    assert "[models.local0-fast]" in outcome.reason and '"json_object"' in outcome.reason


async def test_a_model_whose_answers_never_validate_falls_over_to_the_next(time_env, config):
    with FakeProvider(responder=lambda _: openai_answer({"subject": "Hi"})) as bad, FakeProvider() as good:
        good.script(openai_answer(EMAIL, model="qwen-1-2025"))
        _, outcome, ledger = await onboard(time_env.client, local_config(config, bad.url, good.url))

    assert outcome.state is RunState.COMPLETED, outcome.reason
    email = next(e for e in ledger if e.step == "welcome_email")
    assert (email.model, email.requested_model, email.reported_model, email.attempts) == (
        "local1-fast", "qwen-1", "qwen-1-2025", 1)
    turns = config.llm.repair_turns + 1
    assert [(c.model, c.outcome) for c in email.calls] == [
        *[("local0-fast", "invalid")] * turns, ("local1-fast", "ok")]
    assert (len(bad.requests), len(good.requests)) == (turns, 1)
    assert email.cost_usd == pytest.approx((turns + 1) * cost(120, 30))
