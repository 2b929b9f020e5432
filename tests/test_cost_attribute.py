"""BatonCostUsd follows a run's cost in batches: an upsert is a command, a history event and a server write per step.

A change of cost alone waits until workflows/visibility.py COST_EVERY of them
have: the last of them is upserted. Any other change of attributes (a wait for
a person, the end) carries the cost with it, and so does a wait for an agent,
so a run that waits or has ended shows its exact cost. The rule counts changes
and reads no clock: replay must decide exactly as the first execution did,
whichever clock a task read then (tests/test_replay.py `with_stale_clock`).
"""

from __future__ import annotations

import json
import uuid

import pytest

from client.sdk import Baton
from tests.conftest import running_worker
from tests.processes import ModelStepsInARow, StepsRequest
from tests.agent_processes import PROCESS, AgentLoop, LoopTask
from tests.test_agents import loop_config  # noqa: F401 (a fixture: the agent that continues as new every two turns)
from tests.test_replay import example, shipped_packages
from workflows import search_attributes as sa
from workflows.visibility import COST_EVERY, at_start

STEPS = COST_EVERY + 3  # one whole batch, and three changes the end carries


async def cost_upserts(handle) -> list[tuple[list[str], float]]:
    """Each upsert that set BatonCostUsd: the attribute names it set, and the cost it set."""
    history = await handle.fetch_history()
    found = []
    for e in history.events:
        if e.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if sa.COST_USD.name in fields:
                found.append((sorted(fields), json.loads(fields[sa.COST_USD.name].data)))
    return found


async def test_back_to_back_model_steps_upsert_their_cost_every_few_changes_and_with_the_end(time_env, config):
    async with running_worker(time_env.client, config, extra_workflows=(ModelStepsInARow,)) as w:
        handle = await time_env.client.start_workflow(
            ModelStepsInARow.run, StepsRequest(steps=STEPS), id=f"steps-{uuid.uuid4().hex[:8]}",
            task_queue=w.task_queue,
            search_attributes=at_start("test-model-steps"),  # as Baton's client starts a run
        )
        outcome = await handle.result()
        ledger = await Baton(time_env.client).ledger(handle.id)
    upserts = await cost_upserts(handle)
    costs = [e.cost_usd for e in ledger]
    assert outcome.steps == STEPS and all(c > 0 for c in costs)  # every step changed the cost
    batch = sum(costs[:COST_EVERY])
    assert [names for names, _ in upserts] == [["BatonCostUsd"], ["BatonCostUsd", "BatonStatus"]], upserts
    assert upserts[0][1] == pytest.approx(batch, abs=1e-6)  # the run's cost as of the batch's last step
    assert upserts[1][1] == outcome.cost_usd
    shown = (await handle.describe()).typed_search_attributes
    assert shown.get(sa.COST_USD) == outcome.cost_usd  # the run that ended shows its exact cost


async def test_a_run_about_to_wait_for_its_agent_shows_its_cost_as_of_then(time_env, config):
    """The triage's classification changed its cost alone; the agent it hands the ticket to may take long."""
    async with running_worker(time_env.client, shipped_packages(config)) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("support-triage", example("support-triage/refund.json"))
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)
    upserts = await cost_upserts(time_env.client.get_workflow_handle(run_id))
    before_agent = sum(e.cost_usd for e in ledger if e.kind != "agent")
    assert 0 < before_agent < outcome.cost_usd  # the classification cost something, and the agent more
    assert upserts[0] == (["BatonCostUsd"], pytest.approx(before_agent, abs=1e-6)), upserts
    assert upserts[-1][1] == outcome.cost_usd


async def test_an_agent_continuing_as_new_leaves_its_next_run_its_exact_cost(time_env, loop_config):
    """Its model turns changed the cost alone: the run it continues as starts from the attributes this one leaves."""
    async with running_worker(time_env.client, loop_config, extra_workflows=(AgentLoop,)) as w:
        handle = await time_env.client.start_workflow(
            AgentLoop.run, LoopTask(agent="short-runs"), id=f"{PROCESS}-{uuid.uuid4().hex[:6]}", task_queue=w.task_queue,
        )
        await handle.result()
        child = f"{handle.id}/short-runs_agent"
        ledger = await Baton(time_env.client).ledger(child)
    latest = await time_env.client.get_workflow_handle(child).fetch_history()
    started = latest.events[0].workflow_execution_started_event_attributes
    first = time_env.client.get_workflow_handle(child, run_id=started.continued_execution_run_id)
    turns_in_first = ("turn-1", "turn-2")  # tests/test_agents.py: two turns per run
    cost_in_first = sum(e.cost_usd for e in ledger if e.step in turns_in_first)
    inherited = json.loads(started.search_attributes.indexed_fields[sa.COST_USD.name].data)
    assert cost_in_first > 0 and {e.step for e in ledger} >= set(turns_in_first)
    assert (await cost_upserts(first))[-1][1] == inherited == pytest.approx(cost_in_first, abs=1e-6)
