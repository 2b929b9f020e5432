"""Spend caps across runs, through Temporal: the entity that counts them, and what a refused run does.

The `capped` model costs exactly its worst case, $1 per request (no input price,
every one of its 100 output tokens billed), so what each run reserves and settles
is known to the cent.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError

from activities.llm.catalog import ModelSpec, Price
from activities.llm.conversation import Conversation
from activities.llm.offline import OfflineProvider
from activities.llm.provider import Completion, ProviderUnavailable, Usage
from activities.policy import Budget
from activities.spend import (
    AcrossRuns,
    Reservation,
    ReserveRequest,
    SettleRequest,
    SpendWindow,
    entity_id,
    proof_of,
    update_id,
)
from client import render
from client.sdk import Baton
from tests.conftest import running_worker
from tests.test_onboarding_routes import wait_for_state
from tests.spend_processes import CAPPED, MODEL
from worker.config import BatonConfig, ConfigError, load
from workflows.ledger import StepKind
from workflows.registry import REGISTRY
from workflows.outcome import RunState
from workflows.spend_window import MIN_HISTORY, SpendStart

MONTH = timedelta(days=30)  # no window rolls while a test runs (the time-skipping clock only jumps on timers)


class FullPrice(OfflineProvider):
    """The offline answers, billed at their worst case: every output token the step allows."""

    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        done = await super().complete(conversation, model)
        return done.model_copy(update={"usage": Usage(input=0, output=conversation.max_output_tokens)})


def capped(config: BatonConfig, process: str, cap_usd: float, window: timedelta = MONTH) -> BatonConfig:
    """`config` with the $1-a-request model and `process` capped across its runs."""
    budget = Budget(max_cost_usd=50, across_runs=AcrossRuns(max_cost_usd=cap_usd, window=window))
    model = ModelSpec(provider="offline", name=MODEL, price=Price(input=0, output=10_000))
    return config.model_copy(update={"models": {**config.models, MODEL: model},
                                     "budgets": {**config.budgets, process: budget}})


def worker(env, config: BatonConfig, **extra):
    """A worker running the capped processes as installed ones (`baton.start` knows them), at full price."""
    for process in CAPPED:
        REGISTRY.add_process(process)
    return running_worker(env.client, config, providers={"offline": FullPrice()}, **extra)


async def window(env, process: str, queue: str, length: timedelta = MONTH) -> SpendWindow:
    return await env.client.get_workflow_handle(entity_id(process, length, queue)).query("window", result_type=SpendWindow)


async def test_the_run_that_would_exceed_the_cap_ends_typed_naming_it(time_env, config):
    cfg = capped(config, "test-capped-end", 2.5)
    async with worker(time_env, cfg) as w:
        baton = Baton(time_env.client, w.task_queue)
        runs, outcomes = [], []
        for i in range(3):  # one after the other: the third finds two settled
            runs.append(await baton.start("test-capped-end", {"text": f"t{i}"}))
            outcomes.append(await baton.result(runs[-1]))
        seen = await window(time_env, "test-capped-end", w.task_queue)
        ledger = await baton.ledger(runs[2])
        status = await baton.status(runs[2])
        shown = render.spend_line(status.budget.across_runs, await baton.spend_window("test-capped-end", status.budget.across_runs))

    assert [o.state for o in outcomes] == [RunState.COMPLETED, RunState.COMPLETED, RunState.BUDGET_EXCEEDED]
    assert [o.cost_usd for o in outcomes] == [1.0, 1.0, 0.0]
    third = outcomes[2]
    assert third.cap == "across_runs"
    assert third.reason.startswith("across_runs: test-capped-end has $2.000000 settled and $0.000000 reserved of its $2.5 cap")
    assert (seen.settled_usd, seen.reserved_usd, seen.reservations, seen.refused) == (2.0, 0.0, 2, 1)
    assert [(e.step, e.kind, e.outcome) for e in ledger] == [("label", StepKind.LLM, "refused")]
    assert shown == (f"across   $2.5 per 30d 00:00:00 across runs: $2.000000 settled + $0.000000 reserved, 1 refused, "
                     f"window ends {seen.end:%Y-%m-%d %H:%M:%S} UTC")
    assert ledger[0].calls[-1].outcome == "over_budget" and ledger[0].decision["asked_usd"] == 1.0



async def test_concurrent_runs_never_together_exceed_the_cap(time_env, config):
    cfg = capped(config, "test-capped-end", 3)
    async with worker(time_env, cfg) as w:
        baton = Baton(time_env.client, w.task_queue)
        runs = await asyncio.gather(*(baton.start("test-capped-end", {"text": f"c{i}"}) for i in range(6)))
        outcomes = await asyncio.gather(*(baton.result(r) for r in runs))
        seen = await window(time_env, "test-capped-end", w.task_queue)

    states = [o.state for o in outcomes]
    assert states.count(RunState.COMPLETED) == 3 and states.count(RunState.BUDGET_EXCEEDED) == 3
    assert sum(o.cost_usd for o in outcomes) == seen.settled_usd == 3.0
    assert (seen.reserved_usd, seen.refused) == (0.0, 3)


def reserve(key: str, secret: str, amount: float = 1.0, cap: float = 2.5) -> ReserveRequest:
    return ReserveRequest(key=key, amount_usd=amount, cap_usd=cap, proof=proof_of(secret))


async def test_a_repeated_reserve_or_settle_counts_once_and_strangers_cannot_lower_the_count(time_env, config):
    cfg = capped(config, "test-capped-end", 2.5)
    secret, other = "s" * 32, "o" * 32
    async with worker(time_env, cfg) as w:
        wid = entity_id("test-capped-end", MONTH, w.task_queue)
        handle = await time_env.client.start_workflow("baton-spend", id=wid, task_queue=w.task_queue)
        first = await handle.execute_update("reserve", reserve("run/1", secret), result_type=Reservation)
        again = await handle.execute_update("reserve", reserve("run/1", secret), result_type=Reservation)
        squat = await handle.execute_update("reserve", reserve("run/1", other), result_type=Reservation)
        await handle.execute_update("settle", SettleRequest(key="run/1", amount_usd=0.4, secret=secret))
        await handle.execute_update("settle", SettleRequest(key="run/1", amount_usd=0.4, secret=secret))
        refused = []
        for name, arg in [
            ("settle", SettleRequest(key="run/1", amount_usd=0.0, secret=secret)),  # settled already, as 0.4
            ("settle", SettleRequest(key="run/2", amount_usd=0.0, secret=secret)),  # no such reservation
            ("settle", {"key": "run/1", "amount_usd": -5.0, "secret": secret}),  # negative
            ("reserve", {"key": "x", "amount_usd": 1e12, "cap_usd": 1e12, "proof": proof_of(secret)}),  # huge
        ]:
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await handle.execute_update(name, arg)
            refused.append(str(err.value.cause))
        await handle.execute_update("reserve", reserve("run/3", other), result_type=Reservation)
        with pytest.raises(WorkflowUpdateFailedError) as forged:
            await handle.execute_update("settle", SettleRequest(key="run/3", amount_usd=0.0, secret=secret))
        await handle.signal("reset", "anything")  # the entity takes no signals
        seen = await handle.query("window", result_type=SpendWindow)
        await handle.terminate("test over")

    assert first.granted and again.granted and not squat.granted
    assert "settled already" in refused[0] and "no such reservation" in refused[1]
    assert "amount_usd" in refused[2] and "amount_usd" in refused[3]
    assert "does not match" in str(forged.value.cause)
    assert (seen.settled_usd, seen.reserved_usd, seen.reservations) == (0.4, 1.0, 2)


@pytest.mark.parametrize("table, problem", [
    ('[budgets.onboarding.across_runs]\nmax_cost_usd = 5.0\nwindow = "PT1H"\n', None),
    ('[budgets.onboarding.across_runs]\nmax_cost_usd = -1\nwindow = "PT1H"\n',
     "budgets.onboarding.across_runs.max_cost_usd: Input should be greater than 0"),
    ('[budgets.onboarding.across_runs]\nmax_cost_usd = 5\nwindow = "PT10S"\n',
     "budgets.onboarding.across_runs.window: Input should be greater than or equal to 1 minute"),
    ('[budgets.onboarding.across_runs]\nmax_cost_usd = 5\nwindow = "hourly"\n',
     "budgets.onboarding.across_runs.window: Input should be a valid timedelta"),
    ('[budgets.default.across_runs]\nmax_cost_usd = 5\nwindow = "PT1H"\n',
     "budgets: budgets.default.across_runs: a cap across runs is one process's"),
])
def test_a_cap_across_runs_is_validated_in_one_line(tmp_path, table, problem):
    path = tmp_path / "baton.toml"
    path.write_text(table)
    if problem is None:
        assert load(path, demo=True).spend_caps() == {"onboarding": AcrossRuns(max_cost_usd=5, window=timedelta(hours=1))}
        return
    with pytest.raises(ConfigError) as err:
        load(path, demo=True)
    assert problem in str(err.value) and "\n" not in str(err.value)


async def wait_for_step(baton: Baton, run_id: str, step: str) -> None:
    for _ in range(200):
        if (await baton.status(run_id)).current_step == step:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never reached {step}")


async def spend_two(baton: Baton, process: str) -> None:
    """Two runs of `process` that settle $2 of its window."""
    for i in range(2):
        assert (await baton.result(await baton.start(process, {"text": f"paid{i}"}))).state is RunState.COMPLETED


async def test_a_run_that_waits_parks_on_a_timer_until_the_window_has_room(time_env, config):
    cfg = capped(config, "test-capped-wait", 2.5, timedelta(hours=1))
    async with worker(time_env, cfg) as w:
        baton = Baton(time_env.client, w.task_queue)
        await spend_two(baton, "test-capped-wait")
        run_id = await baton.start("test-capped-wait", {"text": "late"})
        await wait_for_step(baton, run_id, "label (waiting for the spend cap's next window)")
        await time_env.sleep(timedelta(hours=1))  # result() alone did not skip here (cause not yet found)
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)
        history = await time_env.client.get_workflow_handle(run_id).fetch_history()

    assert (outcome.state, outcome.cost_usd) == (RunState.COMPLETED, 1.0)
    assert [(e.step, e.outcome) for e in ledger] == [("label", "refused"), ("label.spend_cap", "waited"), ("label", "ok")]
    timers = [e for e in history.events if e.HasField("timer_started_event_attributes")]
    assert len(timers) == 1
    summary = timers[0].user_metadata.summary  # in clear, for the Web UI: it names no one
    assert b"spend cap across runs ($2.5 per 01:00:00) is full until" in summary.data


async def test_a_run_that_asks_goes_over_the_cap_when_a_person_approves(time_env, config):
    cfg = capped(config, "test-capped-ask", 2.5)
    async with worker(time_env, cfg) as w:
        baton = Baton(time_env.client, w.task_queue)
        await spend_two(baton, "test-capped-ask")
        run_id = await baton.start("test-capped-ask", {"text": "urgent"})
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        await baton.approve(run_id, by="carol")
        outcome = await baton.result(run_id)
        refused_id = await baton.start("test-capped-ask", {"text": "not urgent"})
        await wait_for_state(baton, refused_id, RunState.AWAITING_APPROVAL)
        await baton.reject(refused_id, by="carol")
        refused = await baton.result(refused_id)
        seen = await window(time_env, "test-capped-ask", w.task_queue)

    assert (outcome.state, outcome.cost_usd) == (RunState.COMPLETED, 1.0)
    assert (refused.state, refused.cap) == (RunState.BUDGET_EXCEEDED, "across_runs")
    assert (seen.settled_usd, seen.forced_usd) == (3.0, 1.0)


async def test_continue_as_new_carries_the_window_and_a_repeat_after_it_counts_once(time_env, config):
    cfg = capped(config, "test-capped-end", 2.5)
    paid, held = "p" * 32, "h" * 32
    async with worker(time_env, cfg) as w:
        wid = entity_id("test-capped-end", MONTH, w.task_queue)
        first = await time_env.client.start_workflow(
            "baton-spend", SpendStart(history_limit=MIN_HISTORY), id=wid, task_queue=w.task_queue
        )
        entity = time_env.client.get_workflow_handle(wid)  # whichever run is current
        await entity.execute_update("reserve", reserve("run/1", paid), result_type=Reservation)
        await entity.execute_update("settle", SettleRequest(key="run/1", amount_usd=0.4, secret=paid))
        await entity.execute_update("reserve", reserve("run/2", held), result_type=Reservation)
        repeats = 0
        while (await entity.describe()).run_id == first.first_execution_run_id and repeats < 3 * MIN_HISTORY:
            again = await entity.execute_update("reserve", reserve("run/2", held), result_type=Reservation)
            assert again.granted  # the same request again: answered as before
            repeats += 1
        continued = (await time_env.client.get_workflow_handle(wid, run_id=first.first_execution_run_id).describe()).status
        after = [
            await entity.execute_update("reserve", reserve("run/2", held), result_type=Reservation),  # a repeat
            await entity.execute_update("reserve", reserve("run/3", "t" * 32), result_type=Reservation),  # fits: 2.4
            await entity.execute_update("reserve", reserve("run/4", "u" * 32, amount=0.2), result_type=Reservation),
        ]
        await entity.execute_update("settle", SettleRequest(key="run/1", amount_usd=0.4, secret=paid))  # a repeat
        seen = await entity.query("window", result_type=SpendWindow)
        await entity.terminate("test over")

    assert continued is WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert [r.granted for r in after] == [True, True, False]  # 0.4 settled + 1 + 1 held before: no room for 0.2
    assert (seen.settled_usd, seen.reserved_usd, seen.reservations, seen.refused) == (0.4, 2.0, 3, 1)


class FailsFirst(FullPrice):
    """Holds the first request until `release`, then fails it as a provider outage: the step's next attempt retries."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.held = asyncio.Event()
        self.calls = 0

    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        self.calls += 1
        if self.calls == 1:
            self.held.set()
            await self.release.wait()
            raise ProviderUnavailable("503 from the test model", status=503)
        return await super().complete(conversation, model)


async def test_a_stranger_who_predicts_a_requests_key_cannot_have_it_granted_uncounted(time_env, config):
    """The attack: the key names run, activity and attempt, which anyone on the namespace can read off a
    pending activity. Sent first under the id the product would use, a $0 reserve would make the retry's
    real reserve come back 'granted' from Temporal's update-id dedup, never counted."""
    for process in CAPPED:
        REGISTRY.add_process(process)
    model = FailsFirst()
    async with running_worker(time_env.client, capped(config, "test-capped-end", 1.5), providers={"offline": model}) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("test-capped-end", {"text": "squatted"})
        await asyncio.wait_for(model.held.wait(), 30)
        run = await time_env.client.get_workflow_handle(run_id).describe()
        (pending,) = run.raw_description.pending_activities
        entity = time_env.client.get_workflow_handle(entity_id("test-capped-end", MONTH, w.task_queue))
        for attempt in (2, 3):
            for nth in (0, 1):
                key = f"{run_id}/{run.run_id}/{pending.activity_id}/{attempt}/{nth}"
                squat = ReserveRequest(key=key, amount_usd=0.0, cap_usd=1e6, proof=proof_of("x" * 32))
                for update in (f"reserve/{key}", update_id("reserve", squat)):  # the old id, and the stranger's own
                    await entity.execute_update("reserve", squat, id=update, result_type=Reservation)
        model.release.set()
        outcome = await baton.result(run_id)
        seen = await window(time_env, "test-capped-end", w.task_queue)

    assert seen.settled_usd + seen.reserved_usd >= outcome.cost_usd  # nothing the run paid went uncounted
    assert outcome.state is RunState.BUDGET_EXCEEDED and "key held by another" in outcome.reason, outcome.reason
