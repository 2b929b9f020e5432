"""Personal data goes only to models allowed to receive it, or the run ends typed before any request.

Models are OpenAI-compatible servers on localhost (tests/fake_provider.py), each
recording what reached it: a model with `personal_data = false` stands for a
remote provider, and the test asserts it received nothing at all.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from activities.llm.catalog import ModelSpec, Price, ProviderSpec
from activities.llm.telemetry import CAPTURE_CONTENT
from client.sdk import Baton
from tests.conftest import running_worker, traced_worker
from tests.fake_provider import FakeProvider, openai_answer
from tests.processes import Greeting, Member
from tests.test_config import write as write_config
from tests.test_onboarding_routes import CLEAR
from tests.test_telemetry import everything_said
from worker.config import BatonConfig, ConfigError, load
from workflows.outcome import RunState

EMAIL = {"subject": "Welcome to the bank", "body": "Dear customer, welcome aboard.\nThe onboarding team"}
PRICE = Price(input=0.50, output=1.50)


def fast_tier(config: BatonConfig, *models: tuple[FakeProvider, bool]) -> BatonConfig:
    """`fast` is these servers in fallback order, each allowed personal data or not."""
    providers = {f"p{i}": ProviderSpec(protocol="openai", base_url=f"{fake.url}/v1") for i, (fake, _) in enumerate(models)}
    specs = {
        f"m{i}": ModelSpec(provider=f"p{i}", name=f"model-{i}", price=PRICE, personal_data=allowed)
        for i, (_, allowed) in enumerate(models)
    }
    return config.model_copy(update={
        "providers": providers, "models": {**config.models, **specs}, "tiers": {**config.tiers, "fast": list(specs)},
    })


async def onboard(env, config: BatonConfig):
    async with running_worker(env.client, config) as w:
        baton = Baton(env.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)
    return outcome, {e.step: e for e in ledger}


async def test_a_tier_of_models_not_allowed_personal_data_ends_the_run_before_any_request(time_env, config, systems):
    with FakeProvider() as remote:
        remote.script(openai_answer(EMAIL))
        outcome, steps = await onboard(time_env, fast_tier(config, (remote, False)))

    assert remote.requests == []  # nothing reached the provider
    assert outcome.state is RunState.FAILED
    assert "welcome_email" in outcome.reason and "'fast'" in outcome.reason and "personal" in outcome.reason
    for private in (CLEAR["name"], "Ada", CLEAR["email"], CLEAR["document_number"]):
        assert private not in outcome.reason
    email = steps["welcome_email"]
    assert email.outcome == "refused" and email.cost_usd == 0
    assert [(c.model, c.outcome) for c in email.calls] == [("m0", "withheld")]
    assert "create_crm_record" not in steps and systems.count("outbox") == 0


async def test_a_model_allowed_personal_data_answers(time_env, config):
    with FakeProvider() as local:
        local.script(openai_answer(EMAIL))
        outcome, steps = await onboard(time_env, fast_tier(config, (local, True)))

    assert outcome.state is RunState.COMPLETED, outcome.reason
    [sent] = local.requests
    assert CLEAR["name"] in sent.body["messages"][-1]["content"]
    assert [(c.model, c.outcome) for c in steps["welcome_email"].calls] == [("m0", "ok")]


async def test_a_mixed_tier_skips_the_model_not_allowed(time_env, config):
    with FakeProvider() as remote, FakeProvider() as local:
        remote.script(openai_answer(EMAIL))
        local.script(openai_answer(EMAIL))
        outcome, steps = await onboard(time_env, fast_tier(config, (remote, False), (local, True)))

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert remote.requests == [] and len(local.requests) == 1
    email = steps["welcome_email"]
    assert (email.model, email.outcome) == ("m1", "ok")
    assert [(c.model, c.outcome) for c in email.calls] == [("m0", "withheld"), ("m1", "ok")]


async def greet(env, config: BatonConfig, **member):
    async with running_worker(env.client, config, extra_workflows=(Greeting,)) as w:
        handle = await env.client.start_workflow(
            Greeting.run, Member(name="Grace Hopper", club="chess", **member),
            id=f"greet-{uuid.uuid4().hex[:6]}", task_queue=w.task_queue,
        )
        baton = Baton(env.client, w.task_queue)
        return await baton.result(handle.id), await baton.ledger(handle.id)  # a failed end is read back typed


@pytest.mark.parametrize(("mention_name", "declare", "ends"), [
    (True, False, RunState.FAILED),  # a personal field in an undeclared prompt: refused
    (True, True, RunState.COMPLETED),
    (False, False, RunState.COMPLETED),  # no personal field in the prompt: nothing to declare
])
async def test_a_prompt_carrying_a_personal_field_must_say_so(time_env, config, mention_name, declare, ends):
    with FakeProvider() as local:
        local.script(openai_answer({"text": "Welcome"}))
        outcome, ledger = await greet(
            time_env, fast_tier(config, (local, True)), mention_name=mention_name, declare=declare,
        )

    assert outcome.state is ends, outcome.reason
    if ends is RunState.FAILED:
        assert local.requests == []
        assert "greet" in outcome.reason and "Member.name" in outcome.reason and "personal=True" in outcome.reason
        assert "Grace" not in outcome.reason
        [entry] = ledger
        assert entry.outcome == "refused" and "Grace" not in entry.detail
    else:
        assert len(local.requests) == 1


GOOD = '[models.house]\nprovider = "offline"\nname = "h"\nprice = { input = 1.0, output = 2.0 }\n'
TIERS = '[tiers]\nfast = ["house"]\nstrong = ["house"]\n'


def write(tmp_path: Path, text: str) -> Path:
    """`text` as a baton.toml whose tiers use model `house` (and every role defined)."""
    return write_config(tmp_path, text + TIERS)


def test_personal_data_is_off_unless_a_model_says_so(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD))
    assert config.catalog().models["house"].personal_data is False
    allowed = load(write(tmp_path, GOOD + "personal_data = true\n"))
    assert allowed.catalog().models["house"].personal_data is True


def test_personal_data_takes_a_boolean_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\.house\.personal_data") as caught:
        load(write(tmp_path, GOOD + 'personal_data = "yes"\n'))
    assert "\n" not in str(caught.value)


def test_personal_data_is_never_sent_in_the_clear(tmp_path: Path) -> None:
    text = (
        '[providers.lan]\nprotocol = "openai"\nbase_url = "http://models.example.com/v1"\n'
        '[models.lan-fast]\nprovider = "lan"\nname = "m"\nprice = { input = 1.0, output = 2.0 }\npersonal_data = true\n'
    ) + GOOD
    with pytest.raises(ConfigError, match=r"models\.lan-fast\.personal_data.*https") as caught:
        load(write(tmp_path, text))
    assert "\n" not in str(caught.value)
    local = text.replace("models.example.com", "127.0.0.1:8000")
    assert load(write(tmp_path, local)).catalog().models["lan-fast"].personal_data is True


def test_the_shipped_offline_models_may_receive_personal_data() -> None:
    shipped = load(Path(__file__).parent.parent / "baton.toml")
    assert all(shipped.models[label].personal_data for label in shipped.tiers["fast"])


async def test_spans_of_a_personal_step_carry_no_content_by_default(time_env, config, otel, monkeypatch):
    """OpenTelemetry keeps its default: the allowed model's span has no prompt; the refused one has no span."""
    monkeypatch.delenv(CAPTURE_CONTENT, raising=False)
    with FakeProvider() as remote, FakeProvider() as local:
        local.script(openai_answer(EMAIL))
        async with traced_worker(
            time_env.client, fast_tier(config, (remote, False), (local, True)), otel.tracer_provider, otel.meter_provider,
        ) as (c, w):
            baton = Baton(c, w.task_queue)
            outcome = await baton.result(await baton.start("onboarding", CLEAR))
    said = everything_said(otel.spans.get_finished_spans())

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert "chat model-1" in said and "chat model-0" not in said
    for private in (CLEAR["name"], CLEAR["email"], CLEAR["document_number"], "gen_ai.input.messages"):
        assert private not in said
