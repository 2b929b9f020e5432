"""Through Temporal: a provider lying about usage, or answering nothing readable, cannot lower a run's cost.

A run against a server reporting negative, NaN, infinite or huge usage shows
only finite, non-negative costs, each request billed at its worst case and
marked estimated; a step whose four attempts all got unreadable answers costs
four worst cases, and a cost cap smaller than that stops the run naming
max_cost_usd before the request that could overrun it.
"""

from __future__ import annotations

import math

import pytest

from client.sdk import Baton
from tests.conftest import running_worker
from tests.fake_provider import Recorded, Reply
from tests.provider_faults import FaultyProvider, faulty_config
from tests.test_onboarding_routes import CLEAR
from workflows.outcome import RunState

SEED = 20261121
LIES = [-1e9, float("nan"), float("inf"), 10**30]


class LyingProvider(FaultyProvider):
    """Valid answers, with `prompt_tokens` replaced by a lie."""

    lie: float = 0

    def _respond(self, request: Recorded) -> Reply:
        reply = super()._respond(request)
        reply.body["usage"]["prompt_tokens"] = self.lie
        return reply


async def _onboard(env, config, fake, budget: dict | None = None):
    async with running_worker(env.client, faulty_config(config, fake.url)) as w:
        baton = Baton(env.client, w.task_queue)
        run_id = await baton.start("onboarding", {**CLEAR, **({"budget": budget} if budget else {})})
        return await baton.result(run_id), await baton.ledger(run_id)


@pytest.mark.parametrize("lie", LIES, ids=["negative", "nan", "infinite", "huge"])
async def test_lying_usage_never_shows_a_negative_or_non_finite_cost(time_env, config, lie):
    with LyingProvider(0.0, SEED, scripts=config.offline_scripts()) as fake:
        fake.lie = lie
        outcome, ledger = await _onboard(time_env, config, fake)

    calls = [c for e in ledger for c in e.calls]
    assert len(calls) == len(fake.requests) >= 1  # every lie told was billed
    assert outcome.state is RunState.COMPLETED, outcome.reason
    for e in ledger:
        assert math.isfinite(e.cost_usd) and e.cost_usd >= 0, e
    for c in calls:
        assert c.cost_estimate.startswith("usage unknown: input") and c.cost_usd > 0, c
    assert all(e.cost_estimated and "cost estimated" in e.detail for e in ledger if e.calls)
    assert math.isfinite(outcome.cost_usd) and outcome.cost_usd == round(sum(c.cost_usd for c in calls), 6)


async def test_four_unreadable_answers_cost_four_worst_cases_and_the_cap_stops_them(time_env, config):
    with FaultyProvider(1.0, SEED, kinds=("not_json",)) as fake:
        failed, ledger = await _onboard(time_env, config, fake)
    email = next(e for e in ledger if e.step == "welcome_email")

    assert failed.state is RunState.FAILED and "AllModelsUnavailable" in failed.reason, failed.reason
    assert [c.attempt for c in email.calls] == [1, 2, 3, 4] and len(fake.requests) == 4
    worst = email.calls[0].cost_usd
    assert worst > 0 and all(c.cost_usd == worst and c.cost_estimate for c in email.calls)
    assert email.cost_usd == pytest.approx(4 * worst, rel=1e-12) and email.cost_estimated
    assert failed.cost_usd == round(4 * worst, 6)  # the outcome shows dollars to six places

    cap = 2.5 * worst  # two requests fit; a third could overrun
    with FaultyProvider(1.0, SEED, kinds=("not_json",)) as fake:
        stopped, ledger = await _onboard(time_env, config, fake, budget={"max_cost_usd": cap})
    email = next(e for e in ledger if e.step == "welcome_email")

    assert (stopped.state, stopped.cap) == (RunState.BUDGET_EXCEEDED, "max_cost_usd"), stopped.reason
    assert len(fake.requests) == 2
    assert [c.outcome for c in email.calls] == ["unavailable", "unavailable", "over_budget"]
    assert stopped.cost_usd == round(2 * worst, 6) <= cap
