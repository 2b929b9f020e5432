"""A run started on today's code asks one patch, the baseline, and holds every patch it covers.

Each patch a new run asks is two history events (a marker and sdk-core's
TemporalChangeVersion upsert): workflows/patches.py says why one marker does.
Runs started before the baseline replay their own markers: tests/test_replay.py's
recorded histories.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType

from client.sdk import Baton
from tests.conftest import running_worker
from tests.test_replay import replayer, run_route, shipped_packages
from workflows import patches

WORKFLOWS = Path(__file__).parent.parent / "workflows"


def patch_markers(history) -> list[str]:
    """The patch ids a history's markers record, in order."""
    found = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_patch":
                found.append(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return found


def change_versions(history) -> list[list[str]]:
    """What each of sdk-core's TemporalChangeVersion upserts set."""
    upserts = [
        e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        for e in history.events if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    return [json.loads(fields["TemporalChangeVersion"].data) for fields in upserts if "TemporalChangeVersion" in fields]


@pytest.mark.parametrize("route", ["onboarding-clear", "onboarding-reject", "support-triage-resolved"])
async def test_a_new_run_and_its_agent_ask_only_the_baseline(time_env, config, route):
    """onboarding-reject ends failed in Temporal (patches.FAILED_ENDS), support-triage runs an agent."""
    async with running_worker(time_env.client, shipped_packages(config)) as w:
        ids = await run_route(time_env, Baton(time_env.client, w.task_queue), route)
        histories = [await time_env.client.get_workflow_handle(i).fetch_history() for i in ids]
    for history in histories:
        assert patch_markers(history) == [patches.BASELINE], history.workflow_id
        assert change_versions(history) == [[patches.BASELINE]], history.workflow_id
        result = await replayer(config.payloads).replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, (history.workflow_id, result.replay_failure)


def test_a_recorded_run_from_before_the_baseline_asked_its_patches_one_by_one():
    """The path for runs in flight is live: an archived history holds the markers the baseline replaces."""
    from temporalio.client import WorkflowHistory

    recorded = [
        patch_markers(WorkflowHistory.from_json(p.stem, p.read_text()))
        for p in (Path(__file__).parent / "histories").glob("**/*.json")
    ]
    assert any(patches.PROOF in ids and patches.BASELINE not in ids for ids in recorded)


def test_workflows_ask_patches_only_through_the_baseline():
    """A `workflow.patched` asked elsewhere would bypass the baseline: two events per new run, again."""
    direct = []
    for path in WORKFLOWS.glob("**/*.py"):
        if path.name == "patches.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("patched", "deprecate_patch"):
                direct.append(f"{path.name}:{node.lineno}")
    assert direct == []
