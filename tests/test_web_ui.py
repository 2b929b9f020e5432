"""What the Web UI shows of a run, on the real dev server: the README's example queries, details at every state.

The queries are read from the README itself, so the documentation cannot
drift from what Temporal's visibility accepts and finds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata

from client.sdk import Baton
from tests.conftest import running_worker
from tests.test_onboarding_routes import CLEAR, PEP, wait_for_state
from workflows.outcome import RunState

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
    assert "baton approve" in details_parked and "the run stops (max_approval_idle)" not in details_parked
    assert "completed" in details_done and "Waiting for approval" not in details_done
    assert "budget_exceeded" in details_capped and "max_tool_calls" in details_capped


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
