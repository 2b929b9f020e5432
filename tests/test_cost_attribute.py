"""BatonCostUsd follows a run's cost in batches: an upsert is a history event and a server write per step.

A change of cost alone is upserted at most once per workflows/visibility.py
COST_EVERY of the run's time; any other change of attributes (a wait for a
person, the end) carries the cost with it, so a run that waits or has ended
shows its exact cost.
"""

from __future__ import annotations

import uuid

from tests.conftest import running_worker
from tests.processes import ModelStepsInARow, StepsRequest
from workflows import search_attributes as sa
from workflows.visibility import at_start

STEPS = 6


async def test_back_to_back_model_steps_upsert_their_cost_with_the_end_not_per_step(time_env, config):
    async with running_worker(time_env.client, config, extra_workflows=(ModelStepsInARow,)) as w:
        handle = await time_env.client.start_workflow(
            ModelStepsInARow.run, StepsRequest(steps=STEPS), id=f"steps-{uuid.uuid4().hex[:8]}",
            task_queue=w.task_queue,
            search_attributes=at_start("test-model-steps"),  # as Baton's client starts a run
        )
        outcome = await handle.result()
    history = await handle.fetch_history()
    upserts = [
        sorted(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        for e in history.events if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    costed = [names for names in upserts if "BatonCostUsd" in names]
    assert outcome.steps == STEPS and outcome.cost_usd > 0  # every step changed the cost
    assert len(costed) == 1 and "BatonStatus" in costed[0], upserts  # once, with the end
    shown = (await handle.describe()).typed_search_attributes
    assert shown.get(sa.COST_USD) == outcome.cost_usd  # the run that ended shows its exact cost
