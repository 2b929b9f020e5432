"""`baton tools`: the inventory of what each process may do, and the plans it is built from.

A process's `plan` is a declaration beside its code, so it can drift from
what the code does; the route tests run the main routes of every shipped
process through Temporal and hold every ledger entry of the run to the plan
(same step, kind, tier, tool or agent, roles, and order). The rest checks the
inventory on the shipped baton.toml, on a config that leaves a step's tool
ungranted, and through the CLI.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus

from activities.tools.registry import TOOLS, Effect
from activities.tools.grants import Grant
from client import render
from client.cli import parser
from client.inventory import Inventory, build
from client.sdk import Baton, InputError, read_input
from tests.conftest import REVIEWERS, SALES_MANAGERS, SUPPORT_LEADS, running_worker
from worker.config import BatonConfig, ConfigError, load, shipped_grants
from workflows.agents import Agent
from workflows.registry import REGISTRY
from workflows.ledger import LedgerEntry, StepKind
from workflows.outcome import RunState
from workflows.plan import PlannedStep

PROCESSES = REGISTRY.known()  # the installed processes (Baton's examples, by their entry point)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """baton.toml names its files relative to the repository; no ambient BATON_CONFIG."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("BATON_CONFIG", raising=False)


# ----- the plan against the ledger --------------------------------------------------


def plan_mismatches(plan: tuple[PlannedStep, ...], agents: tuple[Agent, ...], ledger: list[LedgerEntry]) -> list[str]:
    """Every way `ledger` departs from `plan`; empty when the plan is honest about this run."""
    index = {s.step: i for i, s in enumerate(plan)}
    declared = {a.name: a for a in agents}
    problems, last = [], -1
    for e in ledger:
        if e.step not in index:
            problems.append(f"{e.step}: not in the plan")
            continue
        s = plan[index[e.step]]
        if index[e.step] < last:
            problems.append(f"{e.step}: ran after a step the plan puts later")
        last = max(last, index[e.step])
        if e.kind.value != s.kind:
            problems.append(f"{e.step}: ran as {e.kind.value}, planned as {s.kind}")
        elif e.kind is StepKind.LLM and e.tier != s.tier:
            problems.append(f"{e.step}: asked tier {e.tier}, planned {s.tier}")
        elif e.kind is StepKind.TOOL and e.name != s.tool:
            problems.append(f"{e.step}: called {e.name}, planned {s.tool}")
        elif e.kind is StepKind.AGENT and (e.name, e.tier) != (s.agent, getattr(declared.get(s.agent), "tier", None)):
            problems.append(f"{e.step}: ran agent {e.name} ({e.tier}), planned {s.agent}")
        elif e.kind is StepKind.APPROVAL and e.name != "rule" and not set(e.name.split(",")) <= set(s.roles):
            problems.append(f"{e.step}: asked {e.name}, planned {', '.join(s.roles)}")
    return problems


@dataclass(frozen=True)
class Route:
    process: str
    input: dict
    ends: RunState
    approve_by: str | None = None  # who approves the one request the run parks on
    wait: timedelta | None = None  # or: how long nobody answers
    # the steps the route must reach, so a route that stops early cannot pass as honest
    reaches: tuple[str, ...] = ()


def example(path: str) -> dict:
    return read_input(EXAMPLES / path)


ROUTES = {
    "onboarding-clear": Route("onboarding", example("onboarding/clear.json"), RunState.COMPLETED,
                              reaches=("welcome_email", "send_confirmation.approval", "send_confirmation")),
    "onboarding-review-approved": Route("onboarding", example("onboarding/review.json"), RunState.COMPLETED,
                                        approve_by=REVIEWERS[0], reaches=("compliance_review", "send_confirmation")),
    "onboarding-review-timed-out": Route("onboarding", example("onboarding/review.json"), RunState.TIMED_OUT,
                                         wait=timedelta(hours=48, minutes=1), reaches=("compliance_review",)),
    "onboarding-reject": Route("onboarding", example("onboarding/reject.json"), RunState.REJECTED,
                               reaches=("match_kyc",)),
    "support-returns": Route("support-triage", example("support-triage/refund.json"), RunState.COMPLETED,
                             reaches=("classify", "returns_agent")),
    "support-billing": Route("support-triage", example("support-triage/double-charge.json"), RunState.COMPLETED,
                             reaches=("billing_agent",)),
    "support-technical-escalates": Route("support-triage", example("support-triage/looping-agent.json"),
                                         RunState.COMPLETED, approve_by=SUPPORT_LEADS[0],
                                         reaches=("technical_agent", "human_takeover")),
    "sales-northwind": Route("sales-followup", example("sales-followup/northwind.json"), RunState.COMPLETED,
                             approve_by=SALES_MANAGERS[0],
                             reaches=("summarise_signals", "suggest_slot", "draft_email", "send_followup",
                                      "update_crm")),
    "sales-unknown-deal": Route("sales-followup", {"deal_id": "D-999"}, RunState.REJECTED, reaches=("read_crm_notes",)),
}


async def parked(baton: Baton, run_id: str) -> None:
    for _ in range(400):
        status = await baton.status(run_id)
        if status.open_requests or status.state.is_final:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never parked")


@pytest.mark.parametrize("name", ROUTES)
async def test_the_plan_declares_every_step_a_route_takes(time_env, config, name):
    route = ROUTES[name]
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start(route.process, route.input)
        try:
            if route.approve_by or route.wait:
                await parked(baton, run_id)
            if route.approve_by:
                await baton.approve(run_id, by=route.approve_by)
            if route.wait:
                await time_env.sleep(route.wait)
            outcome = await asyncio.wait_for(baton.result(run_id), timeout=60)
            ledger = await baton.ledger(run_id)
        finally:  # a run left parked would hold back the shared server's clock
            handle = time_env.client.get_workflow_handle(run_id)
            if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")

    assert outcome.state is route.ends, outcome.reason
    workflow = PROCESSES[route.process].workflow
    assert plan_mismatches(workflow.plan, workflow.agents, ledger) == []
    assert set(route.reaches) <= {e.step for e in ledger}


def test_the_check_fails_a_plan_with_a_changed_tier_tool_or_step():
    """The mutation the route tests must catch: a plan that says `strong` where the run asked `fast`."""
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ledger = [
        LedgerEntry(seq=1, step="match_kyc", kind=StepKind.RULE, name="match_kyc", outcome="ok", started_at=at),
        LedgerEntry(seq=2, step="welcome_email", kind=StepKind.LLM, name="WelcomeEmail", tier="fast",
                    outcome="ok", started_at=at),
        LedgerEntry(seq=3, step="create_crm_record", kind=StepKind.TOOL, name="create_crm_record",
                    outcome="ok", started_at=at),
    ]
    plan = PROCESSES["onboarding"].workflow.plan
    assert plan_mismatches(plan, (), ledger) == []

    def mutated(step: str, **change) -> tuple[PlannedStep, ...]:
        return tuple(replace(s, **change) if s.step == step else s for s in plan)

    assert plan_mismatches(mutated("welcome_email", tier="strong"), (), ledger) == [
        "welcome_email: asked tier fast, planned strong"
    ]
    assert plan_mismatches(mutated("create_crm_record", tool="send_email"), (), ledger) == [
        "create_crm_record: called create_crm_record, planned send_email"
    ]
    without_rule = tuple(s for s in plan if s.step != "match_kyc")
    assert plan_mismatches(without_rule, (), ledger) == ["match_kyc: not in the plan"]
    assert plan_mismatches(plan, (), list(reversed(ledger)))  # out of order


@pytest.mark.parametrize("name", PROCESSES)
def test_every_plan_names_what_exists(name):
    """Tools in the catalog, agents declared, roles the process asks, and an approval before the irreversible."""
    workflow = PROCESSES[name].workflow
    steps = [s.step for s in workflow.plan]
    assert workflow.plan and len(set(steps)) == len(steps)
    agents = {a.name for a in workflow.agents}
    assert {s.agent for s in workflow.plan if s.kind == "agent"} == agents  # every agent has its step
    for i, s in enumerate(workflow.plan):
        assert (s.tier is not None) == (s.kind == "llm"), s
        assert (s.tool is not None) == (s.kind == "tool"), s
        assert bool(s.roles) == (s.kind == "approval"), s
        assert set(s.roles) <= set(workflow.roles), s
        if s.kind == "tool":
            assert s.tool in TOOLS, s
            if TOOLS[s.tool].effect is Effect.IRREVERSIBLE:
                assert f"{s.step}.approval" in steps[:i], f"{s.step}: irreversible, and no approval planned before it"


# ----- the inventory -----------------------------------------------------------------


def shipped() -> Inventory:
    return build(load(ROOT / "baton.toml"))


def test_the_shipped_inventory():
    inv = shipped()
    # the examples (their entry point), then the articles' package the shipped baton.toml names beside them
    assert [p.name for p in inv.processes] == [*PROCESSES, "prior-authorization", "deposition-research"]
    onboarding, triage, sales, _, _ = inv.processes
    assert [s.step for s in onboarding.steps] == [s.step for s in PROCESSES["onboarding"].workflow.plan]
    assert all(not p.not_granted for p in inv.processes)

    welcome = next(s for s in onboarding.steps if s.step == "welcome_email")
    assert (welcome.kind, welcome.tier, welcome.models) == ("llm", "fast", ["offline-fast"])
    send = next(s for s in onboarding.steps if s.step == "send_confirmation")
    assert (send.tool, send.effect, send.needs_approval, send.granted) == (
        "send_email", Effect.IRREVERSIBLE, True, True,
    )
    review = next(s for s in onboarding.steps if s.step == "compliance_review")
    assert review.roles == ["compliance", "compliance-lead"] and review.note == "when KYC says review"
    assert (onboarding.budget.max_cost_usd, onboarding.budget.max_steps, onboarding.budget_from) == (
        0.05, 10, "budgets.onboarding",
    )
    assert [(r.role, r.people) for r in onboarding.roles] == [
        ("compliance", ["compliance-officer"]), ("compliance-lead", ["head-of-compliance"]),
    ]
    assert [t.tool for t in onboarding.grant] == ["verify_identity", "pull_credit", "create_crm_record", "send_email"]

    assert triage.grant == [] and [a.grantee for a in triage.agents] == [
        "support-triage/returns", "support-triage/technical", "support-triage/billing",
    ]
    returns = triage.agents[0]
    assert (returns.tier, returns.models, returns.supervisor_tier, returns.supervisor_models) == (
        "fast", ["offline-fast"], "strong", ["offline-strong"],
    )
    assert (returns.caps.max_turns, returns.caps.max_tool_calls, returns.caps.ttl) == (6, 4, timedelta(minutes=5))
    refund = next(t for t in returns.tools if t.tool == "issue_refund")
    assert refund.bounds["amount_usd"].max == 500
    assert (refund.approval.roles, refund.approval.auto_approve) == (["support-lead"], "ticket_refunds_usd + amount_usd <= 50")
    assert refund.requires.startswith("order.customer_email == context.customer_email and ")
    assert next(s for s in triage.steps if s.step == "returns_agent").models == ["offline-fast"]

    draft = next(s for s in sales.steps if s.step == "draft_email")
    assert (draft.tier, draft.models) == ("strong", ["offline-strong"])
    assert next(t for t in sales.grant if t.tool == "send_email").bounds["to"].domains == [
        "northwind.example", "globex.example",
    ]

    tools = {t.name: t for t in inv.tools}
    assert list(tools) == list(TOOLS)
    assert (tools["verify_identity"].idempotency, tools["create_crm_record"].idempotency,
            tools["issue_refund"].idempotency) == ("none (read)", "per step", "per step")
    assert tools["send_email"].granted_to == ["onboarding", "sales-followup"]
    assert tools["open_ticket"].granted_to == ["support-triage/technical", "support-triage/billing"]


def test_the_text_names_models_tools_bounds_people_and_budgets():
    text = render.inventory_table(shipped())
    for said in (
        "process onboarding", "$0.05, 10 steps, 6 model calls, 6 tool calls, 3d 00:00:00 wall clock",
        "a run may ask for up to: $0.20", "a reached cap asks support-lead to extend it",
        "compliance: compliance-officer",
        "fast → offline-fast", "strong → offline-strong", "send_email (irreversible)",
        "irreversible: approved first",
        "asks compliance then compliance-lead; when KYC says review", "agent support-triage/returns",
        "6 turns, 4 tool calls, $0.05, ttl 0:05:00", "amount_usd ≤ 500", "support-lead; auto if ticket_refunds_usd + amount_usd <= 50",
        "amount_usd ≤ 500; only if order.customer_email == context.customer_email",
        "to at northwind.example, globex.example", "tool catalog", "per step",
    ):
        assert said in text, said
    assert "NOT GRANTED" not in text and "granted to nobody" not in text


def test_a_step_tool_left_out_of_the_grant_is_flagged():
    grants = shipped_grants()
    grants["onboarding"] = Grant(tools=["verify_identity", "pull_credit", "create_crm_record"])
    grants["support-triage/billing"] = Grant(tools=["open_ticket"])
    inv = build(BatonConfig(grants=grants, budgets={"default": BatonConfig().default_budget()}))

    onboarding = inv.processes[0]
    assert onboarding.not_granted == ["send_confirmation: send_email"]
    assert next(s for s in onboarding.steps if s.step == "send_confirmation").granted is False
    assert onboarding.budget_from == "budgets.default"
    assert next(t for t in inv.tools if t.name == "lookup_invoices").granted_to == []
    text = render.inventory_table(inv)
    assert "send_email (irreversible) NOT GRANTED" in text
    assert "!! NOT GRANTED: send_confirmation: send_email, which [grants.onboarding] does not hold" in text
    assert "granted to nobody" in text


def test_one_process_only():
    inv = build(load(ROOT / "baton.toml"), "sales-followup")
    assert [p.name for p in inv.processes] == ["sales-followup"] and len(inv.tools) == len(TOOLS)


# ----- through the CLI ---------------------------------------------------------------


async def run_cli(*argv: str) -> int:
    args = parser().parse_args(["tools", *argv])
    return await args.func(args)


async def test_baton_tools_prints_the_inventory(capsys):
    assert await run_cli("--config", str(ROOT / "baton.toml")) == 0
    out = capsys.readouterr().out
    assert out.startswith("process onboarding") and "tool catalog" in out and "process sales-followup" in out


async def test_baton_tools_json_is_the_same_inventory(capsys):
    assert await run_cli("--json", "--process", "support-triage") == 0
    data = json.loads(capsys.readouterr().out)
    inv = Inventory.model_validate(data)
    assert inv == build(load(ROOT / "baton.toml"), "support-triage")
    assert data["processes"][0]["agents"][0]["tools"][1]["approval"]["auto_approve"] == "ticket_refunds_usd + amount_usd <= 50"


async def test_baton_tools_refuses_an_unknown_process():
    with pytest.raises(InputError, match="unknown process 'nope'"):
        await run_cli("--process", "nope")


async def test_baton_tools_on_a_bad_config(tmp_path: Path):
    bad = tmp_path / "baton.toml"
    bad.write_text('[grants.onboarding]\ntools = ["launch_rockets"]\n')
    with pytest.raises(ConfigError, match="launch_rockets"):
        await run_cli("--config", str(bad))
    done = subprocess.run(  # and `main` makes it one line and exit 1
        [sys.executable, "-c", "from client.cli import main; main()", "tools", "--config", str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no tool 'launch_rockets'" in done.stderr
