"""What the Web UI shows of a run, on the real dev server: the README's example queries, details at every state.

The queries are read from the README itself, so the documentation cannot
drift from what Temporal's visibility accepts and finds.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.api.sdk.v1 import WorkflowMetadata

from activities.spend import ENTITY, entity_id
from client.sdk import Baton
from tests.conftest import running_worker
from worker.registration import baton_worker
from tests.test_onboarding_routes import CLEAR, PEP, wait_for_state
from workflows.outcome import RunState
from workflows.visibility import utc_text

README = Path(__file__).resolve().parent.parent / "README.md"

pytestmark = pytest.mark.integration


def readme_queries() -> list[str]:
    """The visibility queries in the README's search-attribute example block."""
    text = README.read_text()
    block = re.search(r"```\s*\n\s*(BatonProcess = 'onboarding'.*?)```", text, re.S)
    assert block, "the README lost its example queries"
    return [line.strip() for line in block[1].splitlines() if line.strip()]


async def matches(client, query: str, run_id: str) -> bool:
    return any([wf.id == run_id async for wf in client.list_workflows(f"WorkflowId = '{run_id}' AND ({query})")])


async def test_the_readme_queries_run_and_find_what_they_say(dev_env, config):
    queries = readme_queries()
    assert len(queries) >= 5
    async with running_worker(dev_env.client, config) as w:
        baton = Baton(dev_env.client, w.task_queue)
        parked = await baton.start("onboarding", PEP)
        await wait_for_state(baton, parked, RunState.AWAITING_APPROVAL)
        for query in queries:  # each parses and runs on the real server
            [wf async for wf in dev_env.client.list_workflows(query, limit=5)]
        awaiting = queries[0]
        assert await _eventually(lambda: matches(dev_env.client, awaiting, parked))
        await baton.approve(parked, by="carol")
        await baton.result(parked)
        assert await _eventually(lambda: _not(matches(dev_env.client, awaiting, parked)))


async def test_current_details_tell_the_story_at_every_state(dev_env, config):
    async with running_worker(dev_env.client, config) as w:
        baton = Baton(dev_env.client, w.task_queue)
        parked = await baton.start("onboarding", PEP)
        await wait_for_state(baton, parked, RunState.AWAITING_APPROVAL)
        summary = await (await dev_env.client.get_workflow_handle(parked).describe()).static_summary()
        details_parked = await _details(dev_env.client, parked)
        await baton.approve(parked, by="carol", comment="PEP checked")
        await baton.result(parked)
        details_done = await _details(dev_env.client, parked)
        capped = await baton.start("onboarding", {**CLEAR, "budget": {"max_tool_calls": 1}})
        await baton.result(capped)
        details_capped = await _details(dev_env.client, capped)

    assert summary == "onboarding · A-1002"
    assert "awaiting_approval" in details_parked and "compliance_review" in details_parked
    assert "model calls" in details_parked and "tool calls" in details_parked and "wall clock" in details_parked
    assert "baton approve" in details_parked and "the run stops" not in details_parked
    assert re.search(r"wall clock as of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", details_parked)  # frozen while parked: say when
    assert "as of" not in details_done  # a closed run's clock has stopped
    assert "completed" in details_done and "Waiting for approval" not in details_done
    assert "budget_exceeded" in details_capped and "max_tool_calls" in details_capped


async def test_details_are_rendered_from_the_run_as_it_is_even_on_a_worker_that_never_ran_it(dev_env, config):
    """Details are made when the metadata query asks (worker/current_details.py), from the run's state.

    A second worker, with nothing cached, replays the parked run to answer: it must say the same,
    to the second (`as of` is the time of the run's last task, not of the query). A workflow that
    is no process (the spend cap's entity) still answers the query, with no details.
    """
    async with running_worker(dev_env.client, config) as w:
        queue = w.task_queue
        baton = Baton(dev_env.client, queue)
        parked = await baton.start("onboarding", PEP)
        await wait_for_state(baton, parked, RunState.AWAITING_APPROVAL)
        first = await _details(dev_env.client, parked)
        entity = await dev_env.client.start_workflow(ENTITY, id=entity_id("onboarding", timedelta(hours=1), queue), task_queue=queue)
        entity_details = await _details(dev_env.client, entity.id)
    async with baton_worker(dev_env.client, config, queue=queue):
        replayed = await _details(dev_env.client, parked)
        await baton.approve(parked, by="carol")
        await baton.result(parked)
        await entity.terminate("test over")
    assert "Waiting for approval" in first and "as of" in first
    assert replayed == first
    assert entity_details == ""


async def _details(client, run_id: str) -> str:
    """The current details, read as the Web UI reads them: the built-in metadata query."""
    metadata = await client.get_workflow_handle(run_id).query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def _eventually(check, tries: int = 100) -> bool:
    import asyncio

    for _ in range(tries):
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def _not(awaitable) -> bool:
    return not await awaitable


async def test_a_run_is_findable_from_its_start_and_upserts_only_what_changes(dev_env, config):
    """Baton's client sets a new run's attributes with the start; a run started any other way gets them upserted."""
    async with running_worker(dev_env.client, config) as w:
        baton = Baton(dev_env.client, w.task_queue)
        by_baton = await baton.start("onboarding", CLEAR)
        await baton.result(by_baton)
        plain = await dev_env.client.start_workflow(
            "onboarding", CLEAR, id=f"plain-{uuid.uuid4().hex[:8]}", task_queue=w.task_queue
        )
        await plain.result()
    upserts = {run: await _upserts(dev_env.client, run) for run in (by_baton, plain.id)}
    # CLEAR gets whom it is about once its keyed digest is computed (the client cannot: it holds no audit key),
    # then its cost (changed once, by the welcome e-mail: it waits for more, workflows/visibility.py COST_EVERY)
    # with its status (completed); nothing is set twice
    assert [sorted(u) for u in upserts[by_baton]] == [["BatonSubject"], ["BatonCostUsd", "BatonStatus"]]
    assert sorted(upserts[plain.id][0]) == ["BatonAwaitingApproval", "BatonCostUsd", "BatonProcess", "BatonStatus"]
    assert ["BatonSubject"] in [sorted(u) for u in upserts[plain.id]] and len(upserts[plain.id]) == 3
    for run in (by_baton, plain.id):
        assert await _eventually(lambda: matches(dev_env.client, "BatonStatus = 'completed'", run))


async def _upserts(client, run_id: str) -> list[list[str]]:
    """The attribute names each upsert event of Baton's set, in order.

    The SDK's own `TemporalChangeVersion` upsert, which records a `workflow.patched` a run took
    (workflows/patches.py BASELINE, on every run since), is Temporal's bookkeeping, not one of Baton's upserts.
    """
    history = await client.get_workflow_handle(run_id).fetch_history()
    sets = [
        [name for name in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
         if name != "TemporalChangeVersion"]
        for e in history.events if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    return [names for names in sets if names]


@settings(derandomize=True, database=None)
@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)))
def test_times_in_the_details_read_as_strftime_writes_them(moment: datetime) -> None:
    assert utc_text(moment) == f"{moment:%Y-%m-%d %H:%M:%S}"
    assert utc_text(moment, seconds=False) == f"{moment:%Y-%m-%d %H:%M}"
