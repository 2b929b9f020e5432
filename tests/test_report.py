"""`baton report`: figures over many runs, checked against values derived independently in the test.

The unit test drives runs with known ends (completed, rejected, timed out,
over budget, failed, parked, an agent that waited for a person) on the
time-skipping server, and derives every expected figure from what the worker
answered while it ran (`ledger`/`status` queries, `describe()` times), never
from the report's own reconstruction. The time-skipping server has no
visibility API, so finding runs (`--process`, `--since`, the task queue) is
tested on the real dev server, with the CLI.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import timedelta

import pytest
from temporalio.client import WorkflowHistory

from client.audit import export_json
from client.report import (
    agents_that_waited,
    build_report,
    nearest_rank,
    parse_since,
    report,
    report_text,
    run_figures,
)
from client.run_record import run_record, run_record_from_history
from client.sdk import Baton, InputError
from tests.conftest import SUPPORT_LEADS, running_worker
from tests.test_audit import ticket
from tests.test_engine import OutboxRejects
from tests.test_integration import BATON, cli_env, eventually, expect_exit, expect_refusal, run_cli
from tests.test_onboarding_routes import CLEAR, PEP, SANCTIONED, wait_for_state
from tests.test_replay import HISTORIES
from workflows.outcome import RunState

ERRORS = ("error", "invalid", "over_budget", "cancelled")


def rank(values: list[float], p: float) -> float:
    """Nearest rank, written out again: the ceil(p/100 * n)-th smallest value."""
    return sorted(values)[math.ceil(p * len(values) / 100) - 1]


def test_nearest_rank_percentiles_are_values_of_the_list():
    scores = [15, 20, 35, 40, 50]  # the textbook example
    assert [nearest_rank(scores, p) for p in (5, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    assert nearest_rank(list(range(1, 101)), 95) == 95
    assert nearest_rank([3.0], 50) == 3.0 and nearest_rank([], 95) is None
    assert nearest_rank([50, 15, 40, 20, 35], 50) == 35  # order of the input does not matter


def test_since_takes_minutes_hours_days_and_refuses_anything_else():
    assert parse_since("30m") == timedelta(minutes=30)
    assert parse_since("24h") == timedelta(hours=24)
    assert parse_since("7d") == timedelta(days=7)
    for bad in ("yesterday", "24", "-1h", "0h", "1y", ""):
        with pytest.raises(InputError, match="30m, 24h or 7d"):
            parse_since(bad)


class Expected:
    """One run as the worker told it: ledger, status, and Temporal's own start and close times."""

    def __init__(self, run_id, ledger, status, description, agent_ledgers=()):
        self.run_id, self.ledger, self.status = run_id, ledger, status
        self.closed = description.close_time is not None
        self.e2e = (description.close_time - description.start_time).total_seconds() if self.closed else None
        waits = [e.latency_ms for led in (ledger, *agent_ledgers) for e in led
                 if e.kind == "approval" and e.outcome not in ("escalated", "refused")]
        self.working = max(0.0, self.e2e - sum(waits) / 1000) if self.closed else None

    def cost_adherence(self) -> float:
        cost, limit = self.status.cost_usd, self.status.budget.max_cost_usd
        return 1.0 if cost <= limit else limit / cost

    def latency_adherence(self, target: float | None) -> float:
        return 1.0 if target is None or self.working <= target else target / self.working


async def observed(client, baton: Baton, run_id: str, agents: tuple[str, ...] = ()) -> Expected:
    return Expected(
        run_id, await baton.ledger(run_id), await baton.status(run_id),
        await client.get_workflow_handle(run_id).describe(),
        [await baton.ledger(f"{run_id}/{a}") for a in agents],
    )


async def test_report_figures_match_those_derived_from_the_ledgers(time_env, config):
    client = time_env.client
    seen: list[Expected] = []
    async with running_worker(client, config) as w:
        baton = Baton(client, w.task_queue)
        for applicant in (CLEAR, SANCTIONED, {**CLEAR, "budget": {"max_cost_usd": 0.00001}}):
            run_id = await baton.start("onboarding", applicant)
            await baton.result(run_id)
            seen.append(await observed(client, baton, run_id))

        reviewed = await baton.start("onboarding", PEP)  # a person takes an hour: parked, not working
        await wait_for_state(baton, reviewed, RunState.AWAITING_APPROVAL)
        await time_env.sleep(timedelta(hours=1))
        await baton.approve(reviewed, by="carol", comment="checked")
        await baton.result(reviewed)
        seen.append(await observed(client, baton, reviewed))

        ignored = await baton.start("onboarding", PEP)  # nobody answers: escalated, then timed out
        await wait_for_state(baton, ignored, RunState.AWAITING_APPROVAL)
        await time_env.sleep(timedelta(hours=49))
        await baton.result(ignored)
        seen.append(await observed(client, baton, ignored))

        refund = await baton.start("support-triage", ticket("large-refund"))  # the agent waits for a lead
        agent = f"{refund}/returns_agent"
        await wait_for_state(baton, agent, RunState.AWAITING_APPROVAL)
        await time_env.sleep(timedelta(hours=2))
        await baton.approve(agent, by=SUPPORT_LEADS[0], comment="defective")
        await baton.result(refund)
        seen.append(await observed(client, baton, refund, ("returns_agent",)))

    async with running_worker(client, config, tools_class=OutboxRejects) as w:
        baton = Baton(client, w.task_queue)
        bounced = await baton.start("onboarding", CLEAR)  # the send fails for good: a step error
        await baton.result(bounced)
        seen.append(await observed(client, baton, bounced))

        parked = await baton.start("onboarding", PEP)  # still open when the report is taken
        await wait_for_state(baton, parked, RunState.AWAITING_APPROVAL)
        seen.append(await observed(client, baton, parked))

    try:
        records = [await run_record(client, e.run_id) for e in seen]
    finally:
        await client.get_workflow_handle(parked).terminate("test over")  # never leave a run parked
    for e, r in zip(seen, records):  # the report reads what the worker answered, from history alone
        assert r.ledger == e.ledger, (e.run_id, [(a, b) for a, b in zip(e.ledger, r.ledger) if a != b])
    # Temporal closed the runs that ended failed, over budget or timed out as Failed; each keeps its typed outcome.
    closed_as = {(r.state, r.close_status) for r in records if not r.is_open}
    assert closed_as == {("completed", "completed"), ("rejected", "completed"), ("budget_exceeded", "failed"),
                         ("timed_out", "failed"), ("failed", "failed")}
    assert all(r.outcome is not None and r.outcome.state.value == r.state for r in records if not r.is_open)
    assert [agents_that_waited(r) for r in records if r.process == "support-triage"] == [[agent]]
    children = {agent: await run_record(client, agent)}

    onboarding = [e for e in seen if e.status.process == "onboarding"]
    closed = [e for e in onboarding if e.closed]
    target = rank([e.working for e in closed], 50)  # half the runs meet it, half do not
    data = build_report(records, targets={"onboarding": target}, children=children)

    # Per process: runs by state, success, cost and latency spreads.
    by_name = {p["process"]: p for p in data["processes"]}
    assert sorted(by_name) == ["onboarding", "support-triage"]
    p = by_name["onboarding"]
    assert (p["runs"], p["open"], p["closed"]) == (7, 1, 6)
    assert p["by_state"] == {"awaiting_approval": 1, "budget_exceeded": 1, "completed": 2, "failed": 1,
                             "rejected": 1, "timed_out": 1}
    assert (p["successful"], p["success_rate"]) == (3, 3 / 6)
    costs = [e.status.cost_usd for e in closed]
    assert p["cost_usd"] == pytest.approx({"mean": sum(costs) / 6, "p95": rank(costs, 95)})
    assert p["e2e_s"] == pytest.approx({"mean": sum(e.e2e for e in closed) / 6, "p95": rank([e.e2e for e in closed], 95)})
    assert p["working_s"]["p95"] == pytest.approx(rank([e.working for e in closed], 95))
    triage = by_name["support-triage"]
    (refunded,) = [e for e in seen if e.run_id == refund]
    assert triage["working_s"]["mean"] == pytest.approx(refunded.working)
    assert refunded.e2e > 2 * 3600 > refunded.working  # the lead's two hours are not the agent's work

    # Per step: every ledger entry of every onboarding run, the open one's included.
    for step in [s for s in data["steps"] if s["process"] == "onboarding"]:
        entries = [e for run in onboarding for e in run.ledger if (e.step, str(e.kind)) == (step["step"], step["kind"])]
        latencies = [e.latency_ms for e in entries]
        assert step["calls"] == len(entries)
        assert step["errors"] == sum(e.outcome in ERRORS for e in entries)
        assert step["latency_ms"] == pytest.approx({"p50": rank(latencies, 50), "p95": rank(latencies, 95)})
        assert step["cost_usd"]["total"] == pytest.approx(sum(e.cost_usd for e in entries))
        assert step["models"] == {m: sum(e.model == m for e in entries) for m in {e.model for e in entries if e.model}}
    send = next(s for s in data["steps"] if s["step"] == "send_confirmation")
    assert (send["errors"], send["outcomes"]["error"]) == (1, 1)
    welcome = next(s for s in data["steps"] if s["step"] == "welcome_email")
    assert (welcome["errors"], welcome["outcomes"]["over_budget"]) == (1, 1)  # the pre-check refused to send
    assert list(welcome["models"]) == ["offline-fast"]
    assert not any("/" in s["process"] for s in data["steps"])  # the agent's own turns stay in its step

    # The reliability score, from inputs derived here.
    cost_adherence = [e.cost_adherence() for e in closed]
    latency_adherence = [e.latency_adherence(target) for e in closed]
    assert min(latency_adherence) < 1  # the term really is exercised (cost: see the next test)
    (score,) = [r for r in data["reliability"] if r["process"] == "onboarding"]
    expected = 3 * (sum(cost_adherence) / 6) * (sum(latency_adherence) / 6) / 6
    assert score["score"] == pytest.approx(expected)
    assert score["mean_cost_adherence"] == pytest.approx(sum(cost_adherence) / 6)
    assert score["mean_latency_adherence"] == pytest.approx(sum(latency_adherence) / 6)
    (no_target,) = [r for r in data["reliability"] if r["process"] == "support-triage"]
    assert (no_target["latency_target_s"], no_target["mean_latency_adherence"], no_target["score"]) == (None, 1.0, 1.0)
    assert data["overall"]["closed_runs"] == 7 and data["overall"]["successful_runs"] == 4

    text = report_text(data)
    assert "no target" in text and "success: a closed run whose state is completed or rejected" in text
    assert f"{score['score']:.3f}" in text
    again = build_report(list(reversed(records)), targets={"onboarding": target}, children=children)
    assert export_json(again) == export_json(data) and report_text(again) == text


async def test_a_run_that_spent_more_than_its_budget_adheres_by_the_ratio():
    """The engine's pre-checks keep real runs within max_cost_usd, so the overspend is made up here."""
    path = HISTORIES / "onboarding-clear.json"
    record = await run_record_from_history(WorkflowHistory.from_json(path.stem, path.read_text()))
    limit = record.status.budget.max_cost_usd
    over = record.model_copy(update={"run_id": "overspent", "status": record.status.model_copy(update={"cost_usd": 4 * limit})})
    assert run_figures(record, None)["cost_adherence"] == 1.0
    assert run_figures(over, None)["cost_adherence"] == 0.25
    working = run_figures(record, None)["working_s"]
    assert run_figures(record, working)["latency_adherence"] == 1.0  # at the target is within it
    assert run_figures(record, working / 2)["latency_adherence"] == pytest.approx(0.5)
    (score,) = build_report([record, over], targets={})["reliability"]
    assert (score["successful_runs"], score["mean_cost_adherence"], score["score"]) == (2, 0.625, 0.625)


async def wait_until_reported(client, queue: str, runs: int) -> dict:
    async def probe():
        data = await report(client, queue=queue)
        return data if sum(p["runs"] for p in data["processes"]) == runs else None

    return await eventually(probe, f"{runs} runs found by visibility")


@pytest.mark.integration
async def test_report_finds_runs_by_visibility_and_filters_them(dev_env, config):
    client = dev_env.client
    async with running_worker(client, config) as w:
        baton = Baton(client, w.task_queue)
        first = await baton.start("onboarding", CLEAR)
        await baton.result(first)
        await asyncio.sleep(1.5)  # visibility compares start times; keep the two batches apart
        later = [await baton.start("onboarding", SANCTIONED), await baton.start("support-triage", ticket("refund"))]
        for run_id in later:
            await baton.result(run_id)

        everything = await wait_until_reported(client, w.task_queue, 3)
        env = cli_env(client.service_client.config.target_host, w.task_queue)
        from_cli = await run_cli(BATON, "report", "--json", "--since", "1h", env=env)
        as_text = await run_cli(BATON, "report", env=env)
        only = await run_cli(BATON, "report", "--process", "support-triage", "--json", env=env)

    by_name = {p["process"]: p["runs"] for p in everything["processes"]}
    assert by_name == {"onboarding": 2, "support-triage": 1}  # the agent's child run is not a process run
    assert everything["unreadable"] == []

    records = {r: await run_record(client, r) for r in (first, *later)}
    cutoff = records[first].started_at + (records[later[0]].started_at - records[first].started_at) / 2
    recent = await report(client, queue=w.task_queue, since=cutoff)
    assert {p["process"]: p["runs"] for p in recent["processes"]} == {"onboarding": 1, "support-triage": 1}
    onboarding = await report(client, queue=w.task_queue, process="onboarding")
    assert [p["process"] for p in onboarding["processes"]] == ["onboarding"]

    expect_exit(from_cli, 0)
    assert {p["process"]: p["runs"] for p in from_cli.json()["processes"]} == by_name
    expect_exit(as_text, 0)
    assert "reliability (seed 004)" in as_text.out and "support-triage" in as_text.out
    expect_exit(only, 0)
    assert [p["process"] for p in only.json()["processes"]] == ["support-triage"]

    expect_refusal(await run_cli(BATON, "report", "--since", "yesterday", env=env), "--since", "30m, 24h or 7d")
    expect_refusal(await run_cli(BATON, "report", "--process", "payroll", env=env), "payroll")
    expect_refusal(await run_cli(BATON, "audit", "no-such-run-9c1d", env=env), "no-such-run-9c1d")
    assert json.loads(from_cli.out)["window"]["task_queue"] == w.task_queue
