"""`baton report`: how each process is doing, computed from its runs' own records.

Runs are found by visibility (Baton's search attributes, this Baton's task
queue) and each one is reconstructed from its history (client/run_record.py),
so the figures are the ledgers' figures, not a second bookkeeping that could
drift from them. Agent child runs are left out of process figures: their cost
and time are already inside the parent's agent step; they are read only for
the time their own approvals kept a person waiting.

Three views: per process (runs, success, cost and latency), per step (calls,
errors, latency, cost, model mix) and seed 004's reliability score with its
inputs. Every definition is printed with the figures (DEFINITIONS).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from temporalio.client import Client

from client.render import table
from client.run_record import ReplayFailed, RunRecord, run_record
from client.sdk import InputError, UnknownRun, process_clause, quoted, runs_clause
from workflows import search_attributes as sa

SUCCESS_STATES = ("completed", "rejected")
ERROR_OUTCOMES = ("error", "invalid", "over_budget", "cancelled", "unknown")
NOT_WAITING = ("escalated", "refused")  # approval entries that are not a wait of their own
CONCURRENCY = 8  # runs reconstructed at once
SINCE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

DEFINITIONS = {
    "success": "a closed run whose state is completed or rejected: the process reached an end it was designed to "
    "reach (a rejection is a correct outcome, not a failure)",
    "success_rate": "successful runs / closed runs",
    "cost_per_run": "the run's cost (every step, agents included), over closed runs",
    "e2e_latency": "close time - start time, over closed runs",
    "working_latency": "e2e latency - time parked in approvals (the approval ledger entries' latency, escalations "
    "counted once, approvals inside agent steps included)",
    "step_error_rate": f"entries with outcome in {', '.join(ERROR_OUTCOMES)} / entries of that step (open runs included)",
    "percentiles": "nearest rank: the smallest value at or above p% of the values, sorted",
    "cost_adherence": "per closed run: 1 if cost <= its budget's max_cost_usd, else max_cost_usd / cost",
    "latency_adherence": "per closed run: 1 if working latency <= the process's [slo] latency_s, else target / "
    "working latency; 1.0 when the process has no target",
    "reliability_score": "seed 004: (successful runs x mean cost adherence x mean latency adherence) / closed runs",
}


def nearest_rank(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile by nearest rank: deterministic, and always one of the values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def parse_since(text: str) -> timedelta:
    """`30m`, `24h`, `7d` (also `s` and `w`) as a duration; anything else is refused, naming the forms."""
    found = SINCE.match(text)
    if not found or int(found[1]) == 0:
        raise InputError(f"--since {text!r}: expected a duration like 30m, 24h or 7d")
    return timedelta(**{UNITS[found[2]]: int(found[1])})


# ----- finding and reading runs ------------------------------------------------------------


def visibility_query(queue: str, process: str | None, since: datetime | None) -> str:
    """This queue's runs, those refused for their input before their first step (no attributes) included."""
    clauses = [runs_clause(queue), f"TaskQueue = '{quoted(queue)}'"]
    if process:
        clauses.append(process_clause(process))
    if since:
        clauses.append(f"StartTime > '{since.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'")
    return " AND ".join(clauses)


async def report(
    client: Client, *, queue: str, process: str | None = None, since: datetime | None = None,
    targets: dict[str, float] | None = None, limit: int = 1000,
) -> dict:
    """Find this Baton's runs, reconstruct each from its history, and compute the report."""
    runs, listed = [], 0
    async for wf in client.list_workflows(visibility_query(queue, process, since), limit=limit):
        listed += 1
        name = wf.typed_search_attributes.get(sa.PROCESS) or ""
        if "/" not in name:  # agent child runs: inside their parent's agent step
            runs.append((wf.id, wf.run_id))
    gate = asyncio.Semaphore(CONCURRENCY)

    async def read(run_id: str, temporal_run_id: str | None = None) -> RunRecord | str:
        async with gate:
            try:
                return await run_record(client, run_id, temporal_run_id)
            except (ReplayFailed, UnknownRun) as err:
                return str(err)

    found = await asyncio.gather(*(read(*r) for r in runs))
    records = [r for r in found if isinstance(r, RunRecord)]
    unreadable = [{"run_id": run[0], "error": r} for run, r in zip(runs, found) if isinstance(r, str)]
    wanted = [child for r in records if not r.is_open for child in agents_that_waited(r)]
    children = {}
    for child_id, child in zip(wanted, await asyncio.gather(*(read(c) for c in wanted))):
        if isinstance(child, RunRecord):
            children[child_id] = child
        else:
            unreadable.append({"run_id": child_id, "error": f"agent run (its approval waits count as work): {child}"})
    window = {
        "task_queue": queue, "process": process,
        "since": since.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if since else None,
        "limit": limit, "listed": listed, "truncated": listed >= limit,
    }
    return build_report(records, targets=targets or {}, children=children, unreadable=unreadable, window=window)


def agents_that_waited(record: RunRecord) -> list[str]:
    """Child run ids of the agent steps whose trail shows an approval: their waits are not work."""
    return [
        f"{record.run_id}/{e.step}"
        for e in record.ledger
        if e.kind == "agent" and isinstance(e.decision, dict)
        and any(t.get("kind") in ("approved", "not_approved") for t in e.decision.get("trail") or [])
    ]


# ----- figures -------------------------------------------------------------------------------


def parked_s(record: RunRecord, children: dict[str, RunRecord] | None = None) -> float:
    """Seconds the run waited on people: its approvals, and those inside its agent steps."""
    own = sum(e.latency_ms for e in record.ledger if e.kind == "approval" and e.outcome not in NOT_WAITING)
    inner = sum(parked_s(children[c]) * 1000 for c in agents_that_waited(record) if c in (children or {}))
    return (own + inner) / 1000


def run_figures(record: RunRecord, target_s: float | None, children: dict[str, RunRecord] | None = None) -> dict:
    """One closed run's inputs to the report: cost, latencies, and its two adherences."""
    cost = record.status.cost_usd
    budget = record.status.budget
    limit = budget.max_cost_usd if budget else None
    e2e = (record.closed_at - record.started_at).total_seconds()
    working = max(0.0, e2e - parked_s(record, children))
    return {
        "run_id": record.run_id,
        "state": record.state,
        "successful": record.state in SUCCESS_STATES,
        "cost_usd": cost,
        "max_cost_usd": limit,
        "cost_adherence": 1.0 if limit is None or cost <= limit else limit / cost,
        "e2e_s": e2e,
        "working_s": working,
        "latency_target_s": target_s,
        "latency_adherence": 1.0 if target_s is None or working <= target_s else target_s / working,
    }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _spread(values: Sequence[float]) -> dict:
    return {"mean": _mean(values), "p95": nearest_rank(values, 95)}


def _score(figures: list[dict]) -> dict:
    closed = len(figures)
    successful = sum(f["successful"] for f in figures)
    cost = _mean([f["cost_adherence"] for f in figures])
    latency = _mean([f["latency_adherence"] for f in figures])
    return {
        "closed_runs": closed,
        "successful_runs": successful,
        "mean_cost_adherence": cost,
        "mean_latency_adherence": latency,
        "score": successful * cost * latency / closed if closed else None,
    }


def build_report(
    records: Sequence[RunRecord], *, targets: dict[str, float], children: dict[str, RunRecord] | None = None,
    unreadable: Sequence[dict] = (), window: dict | None = None,
) -> dict:
    """The report's data from reconstructed runs (agent child runs are skipped here too)."""
    records = sorted((r for r in records if not r.is_agent), key=lambda r: (r.process, r.started_at, r.run_id))
    by_process: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        by_process[r.process].append(r)
    processes, reliability, everyone = [], [], []
    for name in sorted(by_process):
        runs = by_process[name]
        closed = [r for r in runs if not r.is_open]
        figures = [run_figures(r, targets.get(name), children) for r in closed]
        everyone += figures
        successful = sum(f["successful"] for f in figures)
        processes.append({
            "process": name,
            "runs": len(runs),
            "open": len(runs) - len(closed),
            "closed": len(closed),
            "by_state": dict(sorted(Counter(r.state for r in runs).items())),
            "successful": successful,
            "success_rate": successful / len(closed) if closed else None,
            "cost_usd": _spread([f["cost_usd"] for f in figures]),
            "e2e_s": _spread([f["e2e_s"] for f in figures]),
            "working_s": _spread([f["working_s"] for f in figures]),
            "latency_target_s": targets.get(name),
        })
        reliability.append({"process": name, "latency_target_s": targets.get(name), **_score(figures), "runs": figures})
    return {
        "window": window,
        "definitions": DEFINITIONS,
        "processes": processes,
        "steps": _steps(records),
        "reliability": reliability,
        "overall": _score(everyone),
        "unreadable": sorted(unreadable, key=lambda u: u["run_id"]),
    }


def _steps(records: Sequence[RunRecord]) -> list[dict]:
    """Per (process, step, kind): every ledger entry of every run, open ones included."""
    groups: dict[tuple[str, str, str], list] = defaultdict(list)
    for r in records:
        for e in r.ledger:
            groups[(r.process, e.step, str(e.kind))].append(e)
    rows = []
    for (process, step, kind), entries in groups.items():
        latencies = [e.latency_ms for e in entries]
        costs = [e.cost_usd for e in entries]
        errors = sum(e.outcome in ERROR_OUTCOMES for e in entries)
        rows.append({
            "process": process, "step": step, "kind": kind,
            "calls": len(entries),
            "errors": errors,
            "error_rate": errors / len(entries),
            "outcomes": dict(sorted(Counter(e.outcome for e in entries).items())),
            "latency_ms": {"p50": nearest_rank(latencies, 50), "p95": nearest_rank(latencies, 95)},
            "cost_usd": {"total": sum(costs), "mean": sum(costs) / len(costs)},
            "models": dict(sorted(Counter(e.model for e in entries if e.model).items())),
            "_order": min(e.seq for e in entries),
        })
    rows.sort(key=lambda s: (s["process"], s["_order"], s["step"], s["kind"]))
    for row in rows:
        del row["_order"]
    return rows


# ----- text -------------------------------------------------------------------------------------


def report_text(data: dict) -> str:
    window = data["window"] or {}
    head = "baton report · " + " · ".join(
        [f"process {window.get('process') or 'all'}", f"since {window.get('since') or 'the first run'}"]
        + ([f"task queue {window['task_queue']}"] if window.get("task_queue") else [])
    )
    runs = sum(p["runs"] for p in data["processes"])
    opened = sum(p["open"] for p in data["processes"])
    lines = [head, f"{runs} runs ({opened} open, {runs - opened} closed)"]
    if window.get("truncated"):
        lines.append(f"only the first {window['limit']} runs listed: narrow with --since or --process, or raise --limit")
    if not data["processes"]:
        return "\n".join(lines + ["no runs"] + _unreadable(data))
    lines += ["", "processes", _process_table(data["processes"]), "", "steps", _step_table(data["steps"])]
    lines += ["", "reliability (seed 004)", _reliability_table(data)]
    lines += ["", "definitions", *(f"  {k}: {v}" for k, v in data["definitions"].items())]
    return "\n".join(lines + _unreadable(data))


def _unreadable(data: dict) -> list[str]:
    if not data["unreadable"]:
        return []
    return ["", f"left out ({len(data['unreadable'])} runs could not be reconstructed):",
            *(f"  {u['run_id']}: {u['error']}" for u in data["unreadable"])]


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f} s"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _process_table(processes: list[dict]) -> str:
    rows = [
        [
            p["process"], str(p["runs"]), str(p["open"]), str(p["closed"]),
            ", ".join(f"{k} {v}" for k, v in p["by_state"].items()),
            "-" if p["success_rate"] is None else f"{p['success_rate']:.1%} ({p['successful']}/{p['closed']})",
            _usd(p["cost_usd"]["mean"]), _usd(p["cost_usd"]["p95"]),
            _secs(p["e2e_s"]["mean"]), _secs(p["e2e_s"]["p95"]),
            _secs(p["working_s"]["mean"]), _secs(p["working_s"]["p95"]),
        ]
        for p in processes
    ]
    headers = ["process", "runs", "open", "closed", "by state", "success", "cost mean", "cost p95",
               "e2e mean", "e2e p95", "working mean", "working p95"]
    return table(headers, rows)


def _step_table(steps: list[dict]) -> str:
    rows = [
        [
            s["process"], s["step"], s["kind"], str(s["calls"]), str(s["errors"]), f"{s['error_rate']:.1%}",
            f"{s['latency_ms']['p50']:,.0f} ms", f"{s['latency_ms']['p95']:,.0f} ms",
            _usd(s["cost_usd"]["total"]), _usd(s["cost_usd"]["mean"]),
            ", ".join(f"{m} {n}" for m, n in s["models"].items()) or "-",
        ]
        for s in steps
    ]
    headers = ["process", "step", "kind", "calls", "errors", "error rate", "p50", "p95", "cost total",
               "cost mean", "models"]
    return table(headers, rows)


def _reliability_table(data: dict) -> str:
    rows = [
        [
            r["process"], str(r["closed_runs"]), str(r["successful_runs"]), _ratio(r["mean_cost_adherence"]),
            _ratio(r["mean_latency_adherence"]),
            "no target" if r["latency_target_s"] is None else f"{r['latency_target_s']:g} s",
            _ratio(r["score"]),
        ]
        for r in data["reliability"]
    ]
    o = data["overall"]
    rows.append(["all", str(o["closed_runs"]), str(o["successful_runs"]), _ratio(o["mean_cost_adherence"]),
                 _ratio(o["mean_latency_adherence"]), "per process", _ratio(o["score"])])
    headers = ["process", "closed", "successful", "cost adherence", "latency adherence", "latency target", "score"]
    return table(headers, rows)
