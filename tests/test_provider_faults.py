"""Provider faults: no run hangs, none is stuck without a reason, no effect is lost or doubled.

The shipped processes run against tests/provider_faults.py's OpenAI-compatible
server, which fails a seeded share of requests with every fault a provider
shows (429 + Retry-After, 500, resets, answers past the client timeout, non-JSON,
JSON of the wrong shape, output failing the step's schema). Then focused cases:
Retry-After in both its forms, a provider down for good, malformed bodies.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

from client.sdk import Baton
from tests.conftest import running_worker
from tests.fake_provider import Reply, error_reply, openai_answer
from tests.provider_faults import (
    CLIENT_TIMEOUT_S,
    FAULT_MARK,
    KINDS,
    TIGHT_BUDGET_USD,
    FaultyProvider,
    call_kind,
    faulty_config,
    run_fault_scenario,
)
from tests.test_onboarding_routes import CLEAR
from workflows.outcome import RunState

RUNS, SHARE, SEED = 16, 0.4, 20261121


async def test_shipped_processes_survive_a_faulty_provider(dev_env, config):
    """16 runs, 40% of model requests failing: every run ends typed, accounted for, within budget."""
    report = await run_fault_scenario(dev_env.client, config, RUNS, SHARE, SEED)
    f = report.figures
    print(f)

    assert report.problems == [], "\n".join(report.problems)
    assert f["runs"] == RUNS
    assert f["stuck"] == 0 and f["open_with_reason"] == 0  # none hangs past the deadline
    assert f["duplicated"] == 0 and f["lost"] == 0
    assert sum(f["ended_typed"].values()) == RUNS
    for kind in KINDS:  # so that this cannot pass vacuously
        assert f["faults_injected"][kind] >= 1, f"no {kind} fault was injected: {f['faults_injected']}"
    # every fault the provider injected is a failed call in the ledger of the run it hit (checked per run too)
    assert f["failed_calls_in_ledgers"] == {**f["faults_injected"], "unclassified": 0}
    assert f["retry_after_violations"] == 0
    for r in report.runs:
        o = r.outcome
        assert o is not None and o.state.is_final and o.reason, r.run_id
        assert r.budget_usd is not None and o.cost_usd <= r.budget_usd, (r.run_id, o.cost_usd, r.budget_usd)
        if o.state is RunState.BUDGET_EXCEEDED:
            assert o.cap and o.reason.startswith(o.cap), (r.run_id, o.cap, o.reason)
        if r.case.process == "sales-followup" and r.budget_usd == TIGHT_BUDGET_USD and any(
            e.step == "summarise_signals" and e.outcome == "ok" for e in r.ledger
        ):  # its strong-tier draft cannot fit under the cap: refused before sending, the run ends naming the cap
            assert (o.state, o.cap) == (RunState.BUDGET_EXCEEDED, "max_cost_usd"), (r.run_id, o.reason)
            assert "stopped at draft_email" in o.reason
        failed = [c for e in r.ledger for c in e.calls if call_kind(c)]
        assert all(c.outcome in ("unavailable", "invalid") and c.error for c in failed)
    assert f["seconds"] < 120


async def _one_onboarding(env, config, fake, *, budget: dict | None = None):
    async with running_worker(env.client, faulty_config(config, fake.url)) as w:
        baton = Baton(env.client, w.task_queue)
        run_id = await baton.start("onboarding", {**CLEAR, **({"budget": budget} if budget else {})})
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)
    return outcome, next(e for e in ledger if e.step == "welcome_email")


async def test_retry_after_in_seconds_and_as_a_date_is_honoured(dev_env, config):
    """The next attempt of the step comes no earlier than the 429's Retry-After, in either form."""
    with FaultyProvider(0.0, SEED, scripts=config.offline_scripts()) as fake:
        when = int(time.time()) + 3  # an HTTP date has whole seconds: 2 to 3 s ahead
        fake.script(
            error_reply(429, "Rate limit reached", headers={"retry-after": formatdate(when, usegmt=True)}),
            error_reply(429, "Rate limit reached", headers={"retry-after": "2"}),
        )
        outcome, email = await _one_onboarding(dev_env, config, fake)
        first, second, third = (q.at for q in fake.requests[:3])
        wall_at_first = time.time() - (time.monotonic() - first)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert [(c.attempt, c.outcome, c.status) for c in email.calls] == [
        (1, "unavailable", 429), (2, "unavailable", 429), (3, "ok", None)]
    assert second - first >= when - wall_at_first - 0.1  # not the policy's 1 s
    assert third - second >= 2.0  # not the policy's 2 s backoff either: Retry-After said 2 s after the reply
    assert email.attempts == 3


async def test_a_provider_down_for_good_ends_the_step_typed_and_soon(time_env, config):
    """Every request fails (500, reset or too slow): the step fails typed after its bounded attempts."""

    async def down_for_good(kind: str) -> None:
        started = time.monotonic()
        with FaultyProvider(1.0, SEED, kinds=(kind,)) as fake:
            outcome, email = await _one_onboarding(time_env, config, fake, budget={"max_wall_clock": "PT10M"})
        elapsed = time.monotonic() - started

        assert outcome.state is RunState.FAILED, (kind, outcome.reason)
        assert outcome.reason.startswith("step welcome_email failed: AllModelsUnavailable"), outcome.reason
        assert "maximum_attempts_reached" in outcome.reason
        cause = {"server_error": "HTTP 500", "reset": "connection failed", "slow": "timed out"}[kind]
        assert cause in outcome.reason, outcome.reason
        assert [(c.attempt, call_kind(c)) for c in email.calls] == [(n, kind) for n in (1, 2, 3, 4)]
        assert len(fake.requests) == 4  # bounded: the policy's four attempts, nothing retried underneath
        # the policy's backoff (1 + 2 + 4 s) and four client timeouts at most: far inside the 10-minute wall clock
        assert elapsed < 7 + 4 * (CLIENT_TIMEOUT_S + 0.5) + 10, (kind, elapsed)

    await asyncio.gather(*(down_for_good(kind) for kind in ("server_error", "reset", "slow")))


async def test_malformed_bodies_are_retried_and_bad_output_repaired(time_env, config):
    """Not JSON and the wrong JSON are retried as the provider's fault; a schema failure is repaired in-turn."""
    with FaultyProvider(0.0, SEED) as fake:
        fake.script(
            Reply(200, "<html>502 Bad Gateway</html>"),
            Reply(200, {"object": "chat.completion", "choices": []}),
            openai_answer({FAULT_MARK: "no subject, no body"}, prompt_tokens=100, completion_tokens=10),
        )
        outcome, email = await _one_onboarding(time_env, config, fake)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert [(c.attempt, c.turn, call_kind(c) or c.outcome) for c in email.calls] == [
        (1, 0, "not_json"), (2, 0, "bad_shape"), (3, 0, "bad_output"), (3, 1, "ok")]
    assert email.calls[2].cost_usd > 0  # the invalid answer was billed
    assert email.cost_usd == sum(c.cost_usd for c in email.calls)


async def test_output_that_never_validates_ends_the_run_failed_naming_the_step(time_env, config):
    with FaultyProvider(1.0, SEED, kinds=("bad_output",)) as fake:
        outcome, email = await _one_onboarding(time_env, config, fake)

    assert outcome.state is RunState.FAILED
    assert outcome.reason.startswith("step welcome_email failed: faulty-fast gave no valid WelcomeEmail after 2 repair")
    assert [(c.attempt, c.turn, c.outcome) for c in email.calls] == [(1, t, "invalid") for t in (0, 1, 2)]
    assert len(fake.requests) == 3  # a schema failure is the model's, not the provider's: no Temporal retry
