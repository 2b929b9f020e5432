"""Replay: every main route of every shipped process must replay on today's code.

Two sources of histories: runs made now (proves the workflows are deterministic
at all) and the recorded histories in tests/histories/ (proves a change does
not break runs already in flight). A change that alters the command sequence
of a process must be guarded with `workflow.patched(...)` so that old histories
still replay. After such a change, move the current files to
tests/histories/archive/ (they keep proving that runs started on the old code
still finish), then record the new ones with
`BATON_RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/test_replay.py` and
commit both. Remove an archived history, and the `patched` branch it needs,
only once no run of that version can still be open.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from activities.payloads import PayloadSettings
from activities.llm.output_type import resolve, type_name
from activities.spend import ENTITY, entity_id
from client.sdk import Baton
from tests.conftest import (
    ATTORNEYS,
    CLINICAL_REVIEWERS,
    LEADS,
    REVIEWERS,
    ROOT,
    SALES_MANAGERS,
    SUPPORT_LEADS,
    running_worker,
)
from tests.history_payloads import decoded
from tests.spend_processes import CAPPED
from tests.test_spend_cap import MONTH, capped
from tests.test_spend_cap import worker as spend_worker
from tests.test_onboarding_routes import CLEAR, PEP, SANCTIONED, wait_for_state
from worker.config import BatonConfig, load, plugin_packages
from worker.connection import configured_converter, header_behavior
from worker.converter import OpenedPayloads
from worker.registration import workflow_runner
from worker.run_input import RunInputCheck
from workflows.registry import REGISTRY
from workflows.outcome import RunState
from workflows.spend_window import SpendWindowWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORD = os.environ.get("BATON_RECORD_HISTORIES") == "1"
# The shipped baton.toml names the packages it runs: the examples, and the processes built from the articles.
SHIPPED = ROOT / "baton.toml"
ARTICLES = ("prior-authorization", "deposition-research")


def shipped_packages(config: BatonConfig) -> BatonConfig:
    """`config` running the shipped packages, with the articles' processes' grants as the shipped file gives them.

    Loading the file installs its packages; conftest puts the registry back after the test.
    """
    shipped = load(SHIPPED)
    grants = {k: g for k, g in shipped.grants.items() if k.startswith(ARTICLES)}
    return config.model_copy(update={"plugins": shipped.plugins, "grants": {**config.grants, **grants}})


SPEND_ROUTE = "spend-cap-refused"  # a run the cap across runs refused, and the entity that counted it
SPEND_PROCESS = "test-capped-end"


def known_workflows() -> list[type]:
    """The worker's workflows (the spend cap entity too), with the tests' capped processes installed."""
    for process in CAPPED:
        REGISTRY.add_process(process)
    return [*REGISTRY.workflows(), SpendWindowWorkflow]


def replay_id(path: Path) -> str:
    """The workflow id a recorded history replays under: the entity reads its window from it."""
    return entity_id(SPEND_PROCESS, MONTH, "recorded") if path.stem.endswith("--entity") else path.stem


def replayer(payloads: PayloadSettings | None = None, extra_workflows: tuple[type, ...] = ()) -> Replayer:
    """A replayer with the session's keys (tests/conftest.py) and the workers' payload store, as Baton's own
    (client/run_record.py) has the worker's: it opens fresh histories, and the recorded ones, written in clear
    with their stored payloads put back, as they are."""
    converter = configured_converter(payloads=payloads or PayloadSettings())
    REGISTRY.load(plugin_packages(SHIPPED))
    return Replayer(
        workflows=[*known_workflows(), *extra_workflows],
        data_converter=converter,
        header_codec_behavior=header_behavior(converter),
        interceptors=[RunInputCheck()],
        workflow_runner=workflow_runner(),
    )


def with_stale_clock(history: WorkflowHistory, after: int) -> tuple[WorkflowHistory, timedelta]:
    """`history` with the clock its first execution may have seen: the first task started after event `after`
    (a call's result, a timer fired) reading the time of the task before it. Also returns how far back that
    moved the task's clock.

    A first execution can run that task's code on that clock: a query the server sends straight
    to the task queue (no workflow task pending as it arrives) carries the history as it is when a
    worker polls it, which may by then end in the event and the workflow task scheduled for it,
    not started. sdk-core applies those events there and then, and runs the workflow code for
    them with `workflow.now()` still the time of the last task started; the commands that code
    gives are sent when the task starts. Replay gives the code that task's own start time.
    (Seen in tests/test_crash.py's runs: README Performance, "Cost upserts in batches".)
    """
    events = [HistoryEvent() for _ in history.events]
    for copied, event in zip(events, history.events, strict=True):
        copied.CopyFrom(event)
    started = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED]
    before = [e for e in started if e.event_id < after][-1]
    then = next(e for e in started if e.event_id > after)
    moved = then.event_time.ToDatetime() - before.event_time.ToDatetime()
    then.event_time.CopyFrom(before.event_time)
    return WorkflowHistory(history.workflow_id, events), moved


def example(path: str) -> dict:
    return json.loads((ROOT / "examples" / path).read_text())


async def run_route(time_env, baton: Baton, route: str) -> list[str]:
    """Drive one route to its end; returns the run id and its agents' child workflow ids."""
    match route:
        case "onboarding-clear":
            run_id = await baton.start("onboarding", CLEAR, run_id=route)
        case "onboarding-reject":
            run_id = await baton.start("onboarding", SANCTIONED, run_id=route)
        case "onboarding-over-budget":  # a budget_exceeded end: Failed in Temporal, typed for Baton
            run_id = await baton.start("onboarding", {**CLEAR, "budget": {"max_steps": 2}}, run_id=route)
        case "onboarding-review-approved" | "onboarding-review-escalated" | "onboarding-review-timeout":
            run_id = await baton.start("onboarding", PEP, run_id=route)
            await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
            if route.endswith("approved"):
                await baton.approve(run_id, by=REVIEWERS[0], comment="checked")
            elif route.endswith("escalated"):
                await time_env.sleep(timedelta(hours=24, minutes=1))
                await baton.approve(run_id, by=LEADS[0], comment="checked on escalation")
            else:
                await time_env.sleep(timedelta(hours=49))
        case "support-triage-resolved":
            run_id = await baton.start("support-triage", example("support-triage/refund.json"), run_id=route)
            await baton.result(run_id)
            return [run_id, f"{run_id}/returns_agent"]
        case "support-triage-escalated":
            run_id = await baton.start("support-triage", example("support-triage/looping-agent.json"), run_id=route)
            await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
            await baton.approve(run_id, by=SUPPORT_LEADS[0], comment="handled by phone")
            await baton.result(run_id)
            return [run_id, f"{run_id}/technical_agent"]
        case "support-triage-refund-approved":
            run_id = await baton.start("support-triage", example("support-triage/large-refund.json"), run_id=route)
            agent = f"{run_id}/returns_agent"
            await wait_for_state(baton, agent, RunState.AWAITING_APPROVAL)
            await baton.approve(agent, by=SUPPORT_LEADS[0], comment="defective, refund in full")
            await baton.result(run_id)
            return [run_id, agent]
        case "support-triage-billing":
            run_id = await baton.start("support-triage", example("support-triage/double-charge.json"), run_id=route)
            await baton.result(run_id)
            return [run_id, f"{run_id}/billing_agent"]
        case "support-triage-budget-extended":
            data = {**example("support-triage/refund.json"), "budget": {"max_steps": 1}}
            run_id = await baton.start("support-triage", data, run_id=route)
            await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
            await baton.approve(run_id, by=SUPPORT_LEADS[0], request_id="budget.max_steps", comment="one more step")
            await baton.result(run_id)
            return [run_id, f"{run_id}/returns_agent"]
        case "spend-cap-refused":  # $1 a request under a $1.5 cap: the second run finds the first's $1 settled
            paid = await baton.result(await baton.start(SPEND_PROCESS, {"text": "paid"}, run_id=f"{route}-paid"))
            run_id = await baton.start(SPEND_PROCESS, {"text": "refused"}, run_id=route)
            refused = await baton.result(run_id)
            assert (paid.state, refused.state, refused.cap) == (RunState.COMPLETED, RunState.BUDGET_EXCEEDED, "across_runs")
            return [run_id, entity_id(SPEND_PROCESS, MONTH, baton.queue)]
        case "sales-followup-approved" | "sales-followup-rejected":
            run_id = await baton.start("sales-followup", example("sales-followup/northwind.json"), run_id=route)
            await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
            decide = baton.approve if route.endswith("approved") else baton.reject
            await decide(run_id, by=SALES_MANAGERS[0], comment="reviewed")
        case "prior-authorization-clean":
            run_id = await baton.start("prior-authorization", example("prior-authorization/clean.json"), run_id=route)
        case "prior-authorization-reviewed" | "prior-authorization-denied":
            case = "missing-fields" if route.endswith("reviewed") else "over-limit"
            run_id = await baton.start("prior-authorization", example(f"prior-authorization/{case}.json"), run_id=route)
            await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
            decide = baton.approve if route.endswith("reviewed") else baton.reject
            await decide(run_id, by=CLINICAL_REVIEWERS[0], comment="reviewed the chart")
        case "deposition-research-summarised":
            run_id = await baton.start("deposition-research", example("deposition-research/inspection.json"), run_id=route)
            await baton.result(run_id)
            return [run_id, f"{run_id}/research"]
        case "deposition-research-approved":
            run_id = await baton.start("deposition-research", example("deposition-research/premium-query.json"), run_id=route)
            agent = f"{run_id}/research"
            await wait_for_state(baton, agent, RunState.AWAITING_APPROVAL)
            await baton.approve(agent, by=ATTORNEYS[0], comment="worth it for causation")
            await baton.result(run_id)
            return [run_id, agent]
    await baton.result(run_id)
    return [run_id]


ROUTES = [
    "onboarding-clear",
    "onboarding-reject",
    "onboarding-over-budget",
    "onboarding-review-approved",
    "onboarding-review-escalated",
    "onboarding-review-timeout",
    "support-triage-resolved",
    "support-triage-escalated",
    "support-triage-refund-approved",
    "support-triage-billing",
    "support-triage-budget-extended",
    "sales-followup-approved",
    "sales-followup-rejected",
    "prior-authorization-clean",
    "prior-authorization-reviewed",
    "prior-authorization-denied",
    "deposition-research-summarised",
    "deposition-research-approved",
    SPEND_ROUTE,
]
AGENT_ROUTES = {
    "support-triage-resolved": "returns_agent",
    "support-triage-escalated": "technical_agent",
    "support-triage-refund-approved": "returns_agent",
    "support-triage-billing": "billing_agent",
    "support-triage-budget-extended": "returns_agent",
    "deposition-research-summarised": "research",
    "deposition-research-approved": "research",
}


def history_files() -> list[str]:
    """Each route's run, and the agent child it delegated to (an agent's loop must replay too)."""
    agents = (f"{route}--{agent}" for route, agent in AGENT_ROUTES.items())
    return sorted([*ROUTES, *agents, f"{SPEND_ROUTE}--entity"])


@pytest.mark.parametrize("route", ROUTES)
async def test_fresh_history_replays(time_env, config, route):
    spend = route == SPEND_ROUTE
    with_worker = (spend_worker(time_env, capped(config, SPEND_PROCESS, 1.5)) if spend
                   else running_worker(time_env.client, shipped_packages(config)))
    async with with_worker as w:
        baton = Baton(time_env.client, w.task_queue)
        ids = await run_route(time_env, baton, route)
        histories = [await time_env.client.get_workflow_handle(i).fetch_history() for i in ids]
    for history in histories:
        if RECORD:
            entity = history.workflow_id.startswith(f"{ENTITY}:")
            name = f"{route}--entity" if entity else history.workflow_id.replace(f"{route}/", f"{route}--")
            opened = await decoded(history, OpenedPayloads(time_env.client.data_converter))  # the session's key dies
            (HISTORIES / f"{name}.json").write_text(opened.to_json())  # with it: recorded in clear, replayed as is
        result = await replayer(config.payloads).replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, (history.workflow_id, result.replay_failure)


def test_every_route_has_a_recorded_history():
    assert sorted(p.stem for p in HISTORIES.glob("*.json")) == history_files()


@pytest.mark.parametrize(
    "path", sorted(HISTORIES.glob("**/*.json")), ids=lambda p: str(p.relative_to(HISTORIES).with_suffix(""))
)
async def test_recorded_history_replays(path: Path):
    history = WorkflowHistory.from_json(replay_id(path), path.read_text())
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def recorded_output_types() -> set[str]:
    """Every output model a recorded model step names (by import path, before names existed; runs in flight too)."""
    found = set()
    for path in HISTORIES.glob("**/*.json"):
        for event in WorkflowHistory.from_json(path.stem, path.read_text()).events:
            if event.HasField("activity_task_scheduled_event_attributes"):
                for payload in event.activity_task_scheduled_event_attributes.input.payloads:
                    arg = json.loads(payload.data)
                    if isinstance(arg, dict) and "output_type" in arg:
                        found.add(arg["output_type"])
    return found


@pytest.mark.parametrize("path", sorted(recorded_output_types()))
def test_an_output_type_recorded_in_flight_still_resolves_to_the_model_in_use(path: str):
    """A model moved since (into its package) is found by its old path, as the one class its stable name gives."""
    REGISTRY.load(plugin_packages(SHIPPED))
    known_workflows()  # the tests' own processes, whose runs are recorded too
    model = resolve(path)
    assert model.__name__ == path.rpartition(":")[2].rpartition(".")[2]
    assert resolve(type_name(model)) is model
