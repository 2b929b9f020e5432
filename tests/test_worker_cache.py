"""`[worker] max_cached_runs`: how many runs a worker keeps in memory, and runs evicted past it still finish.

Runs parked for people fill a busy worker's cache; a smaller cache trades their
memory for a replay when each is woken (benchmarks/parked.py measures both).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from client.sdk import Baton
from tests.conftest import REVIEWERS, running_worker
from tests.test_onboarding_routes import CLEAR, PEP, wait_for_state
from worker.converter import BatonPayloadConverter
from worker.config import BatonConfig, WorkerSettings
from workflows.outcome import RunState


async def test_runs_evicted_while_parked_are_replayed_and_finish(time_env, config):
    small = config.model_copy(update={"worker": WorkerSettings(max_cached_runs=1)})
    async with running_worker(time_env.client, small) as w:
        assert w.config()["max_cached_workflows"] == 1
        baton = Baton(time_env.client, w.task_queue)
        runs = [await baton.start("onboarding", PEP) for _ in range(3)]
        for run in runs:  # each one parked evicts the one before it
            await wait_for_state(baton, run, RunState.AWAITING_APPROVAL)
        for run in runs:
            await baton.approve(run, by=REVIEWERS[0], comment="PEP checked")
        outcomes = [await baton.result(run) for run in runs]
    assert [o.state for o in outcomes] == [RunState.COMPLETED] * 3
    assert len({o.result["customer_id"] for o in outcomes}) == 3


def test_the_default_is_temporals_own_cache_size():
    assert BatonConfig().worker.max_cached_runs == 1000


@pytest.mark.parametrize("bad", [{"max_cached_runs": -1}, {"max_cached_runs": "many"}, {"max_cache": 10}])
def test_a_bad_worker_table_is_refused_by_name(bad):
    with pytest.raises(ValidationError, match="max_cache"):
        BatonConfig.model_validate({"worker": bad})


def _type_adapters() -> Any:
    """The cache of pydantic type adapters of a Baton payload converter (temporalio.contrib.pydantic)."""
    return BatonPayloadConverter().converters[b"json/plain"]._type_adapter


async def test_a_run_builds_no_type_adapter_an_earlier_run_built(time_env, config):
    """The SDK makes a payload converter per run: each type's adapter is built once per worker, not per run.

    Per run it cost ~8 KB of every cached run's memory and the CPU to build them.
    """
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        _type_adapters().cache_clear()  # what earlier tests built in this process
        first = await baton.start("onboarding", CLEAR)
        assert (await baton.result(first)).state is RunState.COMPLETED
        after_first = _type_adapters().cache_info().misses
        second = await baton.start("onboarding", CLEAR)
        assert (await baton.result(second)).state is RunState.COMPLETED
        after_second = _type_adapters().cache_info().misses
    assert after_first > 0  # the first run's types, built into the converters' one cache
    assert after_second == after_first
