"""What per-step model choice saves: the shipped processes' cost per case, three ways, from their own ledgers.

1. tiers as shipped (baton.toml: fast -> offline-fast, strong -> offline-strong);
2. every step on the strong tier (a config whose `fast` tier maps to the strong model);
3. an unbounded agent loop: every step strong, and support triage's agents with their
   caps raised to LOOP_TURNS turns/tool calls and $100 (benchmarks/processes.py); the
   looping script then runs until that cap. Processes without an agent have no loop to
   unbind: their third column equals the second.

The offline provider counts tokens at ~4 characters per token and prices them
with baton.toml's nominal prices; cost caps are raised to $100 in every column so
that no run is cut short by its budget (agents keep their own caps in 1 and 2).

    python -m benchmarks.cost [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from benchmarks.harness import UNCAPPED, config, dev_server, example, machine, people, queue, shipped, table
from benchmarks.processes import LOOP_TURNS, UNBOUNDED_TRIAGE, UnboundedTriage
from client.sdk import Baton, InputError, validate_input
from worker.config import BatonConfig
from worker.registration import baton_worker
from workflows import search_attributes as sa
from workflows.ledger import StepKind

CASES = [
    ("onboarding", "onboarding/clear.json"),
    ("onboarding", "onboarding/review.json"),
    ("onboarding", "onboarding/reject.json"),
    ("onboarding", "onboarding/invalid-email.json"),
    ("support-triage", "support-triage/refund.json"),
    ("support-triage", "support-triage/looping-agent.json"),
    ("sales-followup", "sales-followup/northwind.json"),
    ("sales-followup", "sales-followup/globex.json"),
]
ALL_STRONG = {"fast": ["offline-strong"], "strong": ["offline-strong"]}
RAISED_COST = 100.0


class Case:
    def __init__(self, state: str, cost: float, tokens_in: int, tokens_out: int, model_calls: int) -> None:
        self.state, self.cost, self.tokens_in, self.tokens_out, self.model_calls = state, cost, tokens_in, tokens_out, model_calls


async def run_case(baton: Baton, cfg: BatonConfig, process: str, path: str, workflow_name: str | None) -> Case:
    """Start one case, answer every request it parks on as the first person of the role asked, read its ledger."""
    try:
        value = validate_input(process, example(path))
    except InputError:
        return Case("refused at the door", 0.0, 0, 0, 0)
    if workflow_name is None:
        run_id = await baton.start(process, value)
    else:
        run_id = f"{process}-{uuid.uuid4().hex[:8]}"
        await baton.client.start_workflow(
            workflow_name, value, id=run_id, task_queue=baton.queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.PROCESS, process)]),
        )
    handle = baton.client.get_workflow_handle(run_id)
    people = cfg.members()
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        for request in (await baton.status(run_id)).open_requests:
            await baton.approve(run_id, by=people[request.roles[0]][0], request_id=request.id, comment="benchmark")
        await asyncio.sleep(0.1)
    outcome = await baton.result(run_id)
    ledger = await baton.ledger(run_id)
    paid = [e for e in ledger if e.kind in (StepKind.LLM, StepKind.AGENT)]
    calls = sum(len(e.calls) if e.kind is StepKind.LLM else (e.decision or {}).get("llm_calls", 0) for e in paid)
    return Case(
        outcome.state.value, outcome.cost_usd, sum(e.tokens_in for e in paid), sum(e.tokens_out for e in paid), calls,
    )


def unbounded(cfg: BatonConfig) -> BatonConfig:
    """`cfg` granting the unbounded triage's agents what support triage's are granted."""
    grants = {k.replace("support-triage", UNBOUNDED_TRIAGE, 1): g for k, g in cfg.grants.items()
              if k.startswith("support-triage")}
    return cfg.model_copy(update={"grants": {**cfg.grants, **grants}})


async def measure(runs: int) -> str:
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        raised = {name: b.model_copy(update={"max_cost_usd": RAISED_COST}) for name, b in shipped().budgets.items()}
        configs = {
            "shipped": (config(Path(tmp, "shipped"), budgets=raised), None),
            "strong": (config(Path(tmp, "strong"), budgets=raised, tiers=ALL_STRONG), None),
            "unbounded": (
                unbounded(config(Path(tmp, "unbounded"), budgets={**raised, UNBOUNDED_TRIAGE: UNCAPPED}, tiers=ALL_STRONG)),
                {"support-triage": UNBOUNDED_TRIAGE},
            ),
        }
        async with dev_server() as bare:
            with people(Path(tmp), bare, configs["shipped"][0]) as (client, issuer):
                results = {label: await _measure_one(client, cfg.model_copy(update={"identity": issuer.settings()}),
                                                     workflows, label, runs)
                           for label, (cfg, workflows) in configs.items()}
    return report(results, runs)


async def _measure_one(client: Client, cfg: BatonConfig, workflows: dict | None, label: str, runs: int) -> list:
    """`runs` rounds of every case on a worker of `cfg`."""
    q = queue(label)
    async with baton_worker(client, cfg, queue=q, extra_workflows=(UnboundedTriage,)):
        baton = Baton(client, q)
        return [
            await asyncio.gather(*(
                run_case(baton, cfg, process, path, (workflows or {}).get(process)) for process, path in CASES
            ))
            for _ in range(runs)
        ]


def report(results: dict[str, list[list[Case]]], runs: int) -> str:
    first = {label: rounds[0] for label, rounds in results.items()}
    for label, rounds in results.items():  # the offline provider is deterministic: every run must cost the same
        for other in rounds[1:]:
            if [c.cost for c in other] != [c.cost for c in rounds[0]]:
                print(f"note: {label}: costs differ between runs")
    rows = []
    for i, (process, path) in enumerate(CASES):
        s, g, u = first["shipped"][i], first["strong"][i], first["unbounded"][i]
        rows.append((
            path, s.state, s.model_calls, f"{s.tokens_in}/{s.tokens_out}", f"${s.cost:.6f}",
            f"${g.cost:.6f}", _ratio(g.cost, s.cost), f"${u.cost:.6f}", _ratio(u.cost, s.cost),
            f"{u.model_calls} calls, {u.tokens_in}/{u.tokens_out} tok, {u.state}" if u.cost != g.cost else "",
        ))
    total = {label: sum(c.cost for c in cases) for label, cases in first.items()}
    rows.append((
        "all cases", "", sum(c.model_calls for c in first["shipped"]),
        f"{sum(c.tokens_in for c in first['shipped'])}/{sum(c.tokens_out for c in first['shipped'])}",
        f"${total['shipped']:.6f}", f"${total['strong']:.6f}", _ratio(total["strong"], total["shipped"]),
        f"${total['unbounded']:.6f}", _ratio(total["unbounded"], total["shipped"]), "",
    ))
    prices = shipped().models
    price_line = "; ".join(
        f"{label}: ${m.price.input}/M in, ${m.price.output}/M out" for label, m in prices.items()
    )
    return "\n".join([
        f"cost per case, from each run's own ledger (RunOutcome.cost_usd), {runs} run(s) per case and column",
        table("", ["case", "state (shipped)", "model calls", "tokens in/out", "tiers as shipped",
                   "all strong", "x shipped", "unbounded agent", "x shipped", "unbounded run"], rows).lstrip("\n"),
        f"prices (baton.toml, nominal): {price_line}",
        "tokens: the offline provider's estimate, ~4 characters per token, of the prompt it is sent and the answer it gives",
        "all strong: tiers fast and strong both -> offline-strong; caps as shipped except max_cost_usd raised to "
        f"${RAISED_COST:g} (no run cut short by cost)",
        f"unbounded agent: all strong, and support-triage's agents with caps raised to {LOOP_TURNS} turns, "
        f"{LOOP_TURNS} tool calls, $100, 1 h (the run's own caps lifted too); onboarding and sales-followup have no "
        "agent loop, so that column equals all strong for them",
        machine(),
    ])


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1, help="runs of each case per column (the offline provider is deterministic)")
    args = p.parse_args()
    # Agents stopped by their cost cap (all strong, looping agent) log the refused call: expected, not news.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    print(asyncio.run(measure(args.runs)))


if __name__ == "__main__":
    main()
