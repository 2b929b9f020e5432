"""Deposition research (examples/baton_examples/deposition_research), through Temporal on the test kit.

The repo's baton.toml as it ships; the model is a function of the typed turn
that plays the research agent: it proposes the tool calls a test names, in
order, then answers the summary. The case-law source's charges are read back
from its SQLite table: a query that was not approved was never charged.
"""

from __future__ import annotations

import json
import sqlite3

from activities.spend import ENTITY, Reservation, ReserveRequest, entity_id, proof_of, update_id
from baton_examples.deposition_research.contracts import DepositionSummary
from client.testkit import CallTool, ModelTurn, process_test_env
from tests.conftest import ROOT
from workflows.outcome import RunState

CONFIG = ROOT / "baton.toml"
ATTORNEY = "supervising-attorney"  # the person baton.toml's [roles.supervising-attorney] names
SUMMARY = DepositionSummary.model_validate({
    "key_testimony": [{"point": "The truck stopped overnight in an unheated yard below freezing.", "cite": "19:6"}],
    "relevant_cases": [{"citation": "Sable Freight Lines v. Ortega Supply", "relevance": "Freezing damage in transit."}],
})


def researcher(*calls: CallTool):
    """An agent that proposes `calls` one a turn, then answers SUMMARY; it records what each call observed."""
    def model(turn: ModelTurn):
        assert turn.output_type is DepositionSummary and turn.offered("query_case_law")
        return calls[turn.turn] if turn.turn < len(calls) else SUMMARY
    return model


def case_law(cost: float, source: str) -> CallTool:
    return CallTool(name="query_case_law", arguments={
        "query": "carrier damage transit freezing cold", "source": source, "max_cost_usd": cost})


REQUEST = json.loads((ROOT / "examples" / "deposition-research" / "premium-query.json").read_text())
SEARCH = CallTool(name="search_transcript", arguments={"deposition_id": "D-5002", "query": "overnight freezing"})


def charges(kit) -> list[tuple[str, float]]:
    with sqlite3.connect(kit.config.systems.db) as db:
        return db.execute("SELECT source, charged_usd FROM case_law_queries ORDER BY rowid").fetchall()


async def test_the_agent_returns_a_typed_summary_and_a_5_dollar_query_runs_without_asking(tmp_path):
    model = researcher(SEARCH, case_law(5, "standard-digest"))
    async with process_test_env(CONFIG, model=model, directory=tmp_path) as kit:
        run_id = await kit.baton.start("deposition-research", REQUEST)
        outcome = await kit.baton.result(run_id)
        agent = await kit.baton.ledger(f"{run_id}/research")
        charged = charges(kit)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert DepositionSummary.model_validate(outcome.result["summary"]) == SUMMARY
    assert outcome.result["case_law_usd"] == 5.0 and charged == [("standard-digest", 5.0)]
    (approval,) = [e for e in agent if e.step.endswith("query_case_law.approval")]
    assert (approval.outcome, approval.by) == ("approved", "rule")  # the rule approved it; nobody was asked
    assert "max_cost_usd <= 50" in json.dumps(approval.model_dump(mode="json"))
    searched = next(e for e in agent if e.step == "turn-1.search_transcript")
    assert [(p["page"], p["line"]) for p in searched.decision["passages"]] == [(19, 5), (19, 6)]


async def test_a_60_dollar_query_parks_for_a_supervising_attorney_and_runs_only_after_approval(tmp_path):
    model = researcher(SEARCH, case_law(60, "premium-analytics"))
    async with process_test_env(CONFIG, model=model, directory=tmp_path) as kit:
        run_id = await kit.baton.start("deposition-research", REQUEST)
        agent_id = f"{run_id}/research"
        await kit.wait_for(agent_id, RunState.AWAITING_APPROVAL)
        (asked,) = (await kit.baton.status(agent_id)).open_requests
        before = charges(kit)
        await kit.baton.approve(agent_id, by=ATTORNEY, comment="worth it for causation")
        outcome = await kit.baton.result(run_id)
        after = charges(kit)

    assert asked.roles == ["supervising-attorney"] and '"max_cost_usd": 60' in asked.ask
    assert before == []  # parked: nothing was charged before the attorney decided
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert after == [("premium-analytics", 60.0)] and outcome.result["case_law_usd"] == 60.0


async def test_a_rejected_60_dollar_query_is_never_charged(tmp_path):
    model = researcher(case_law(60, "premium-analytics"))
    async with process_test_env(CONFIG, model=model, directory=tmp_path) as kit:
        run_id = await kit.baton.start("deposition-research", REQUEST)
        await kit.wait_for(f"{run_id}/research", RunState.AWAITING_APPROVAL)
        await kit.baton.reject(f"{run_id}/research", by=ATTORNEY, comment="use the free source")
        outcome = await kit.baton.result(run_id)
        charged = charges(kit)

    assert outcome.state is RunState.COMPLETED and charged == [] and outcome.result["case_law_usd"] == 0


async def test_an_ungranted_tool_and_an_out_of_bound_query_are_refused_and_the_summary_still_comes(tmp_path):
    refund = CallTool(name="issue_refund", arguments={"order_id": "O-2001", "amount_usd": 35, "reason": "x"})
    model = researcher(refund, case_law(150, "premium-analytics"))
    async with process_test_env(CONFIG, model=model, directory=tmp_path) as kit:
        run_id = await kit.baton.start("deposition-research", REQUEST)
        outcome = await kit.baton.result(run_id)
        agent = await kit.baton.ledger(f"{run_id}/research")
        charged = charges(kit)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    refused = {e.name: e.detail for e in agent if e.outcome == "refused"}
    assert set(refused) == {"issue_refund", "query_case_law"}, refused
    assert "not granted" in refused["issue_refund"] and "max_cost_usd" in refused["query_case_law"]
    assert charged == [] and not any(e.step.endswith(".approval") for e in agent)


async def test_when_the_hourly_cap_across_runs_is_full_the_run_ends_budget_exceeded_and_nothing_is_sent(tmp_path):
    """Other runs of the process spent the hour's cap (baton.toml `[budgets.deposition-research.across_runs]`)."""
    asked: list[ModelTurn] = []

    def model(turn: ModelTurn):
        asked.append(turn)
        return SUMMARY

    async with process_test_env(CONFIG, model=model, directory=tmp_path) as kit:
        cap = kit.config.budgets["deposition-research"].across_runs
        queue = kit.worker.task_queue
        entity = await kit.env.client.start_workflow(
            ENTITY, id=entity_id("deposition-research", cap.window, queue), task_queue=queue)
        spent = ReserveRequest(key="earlier-run/research", amount_usd=cap.max_cost_usd, cap_usd=cap.max_cost_usd,
                               proof=proof_of("e" * 32))
        assert (await entity.execute_update("reserve", spent, id=update_id("reserve", spent), result_type=Reservation)).granted
        run_id = await kit.baton.start("deposition-research", REQUEST)
        outcome = await kit.baton.result(run_id)
        agent = await kit.baton.ledger(f"{run_id}/research")
        charged = charges(kit)

    assert outcome.state is RunState.BUDGET_EXCEEDED and outcome.cap == "across_runs", outcome.reason
    assert f"${cap.max_cost_usd:g} cap" in outcome.reason
    assert asked == [] and charged == []  # no model request left, no case law bought
    (refused,) = [e for e in agent if e.outcome == "refused"]
    assert refused.step == "turn-1" and refused.calls[-1].outcome == "over_budget"
