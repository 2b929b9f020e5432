"""Plain-text tables for people; the CLI's `--json` gives the same data to scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from activities.spend import AcrossRuns, SpendWindow
from client.sdk import InboxItem, RunSummary
from workflows.approvals import ApprovalRequest
from workflows.budget import calls_and_clock, span
from workflows.ledger import LedgerEntry, StepKind
from workflows.outcome import RunOutcome
from workflows.status import RunStatus

if TYPE_CHECKING:  # only `baton tools` needs them, and they load worker.config
    from activities.tools.grants import Bound
    from client.inventory import HeldTool, Inventory, ProcessView, StepView


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def model_text(provider: str | None, label: str, requested: str | None, reported: str | None) -> str:
    """`provider/label` and what the label meant: the model asked for and, when another, the one that answered.

    Entries recorded before the names were kept, and labels that are the model's own name, show the label alone.
    """
    names = list(dict.fromkeys(n for n in (requested, reported) if n))
    if names in ([], [label]):
        return f"{provider}/{label}"
    answered = f", answered by {names[1]}" if len(names) > 1 else ""
    return f"{provider}/{label} ({names[0]}{answered})"


def _what(e: LedgerEntry) -> str:
    match e.kind:
        case StepKind.LLM:
            return f"{e.tier}→{model_text(e.provider, e.model or '-', e.requested_model, e.reported_model)}"
        case StepKind.TOOL:
            return f"{e.name} ({e.effect})" if e.effect else e.name
        case StepKind.APPROVAL:
            return "threshold rule" if e.by == "rule" else f"{e.name}: {e.by or '-'}"
        case StepKind.AGENT:
            return f"agent {e.name} ({e.tier})"
        case _:
            return e.name


def ledger_table(entries: Sequence[LedgerEntry]) -> str:
    rows = [
        [
            str(e.seq),
            e.step,
            e.kind.value,
            _what(e),
            f"{e.tokens_in}/{e.tokens_out}" if e.kind in (StepKind.LLM, StepKind.AGENT) else "-",
            f"${e.cost_usd:.6f}",
            f"{e.latency_ms:,.0f} ms",
            str(e.attempts),
            e.outcome + (f": {e.detail}" if e.detail else ""),
        ]
        for e in entries
    ]
    headers = ["#", "step", "kind", "model / tool", "tokens in/out", "cost", "latency", "tries", "outcome"]
    return "\n".join([table(headers, rows), *_agent_trails(entries), *_model_call_notes(entries)])


def _agent_trails(entries: Sequence[LedgerEntry]) -> list[str]:
    """What each agent proposed, what was refused, reviewed, approved and seen: its trail."""
    lines = []
    for e in entries:
        if e.kind is not StepKind.AGENT or not e.decision:
            continue
        lines += ["", f"{e.step} (agent {e.name}): {e.decision.get('turns', 0)} turns, "
                  f"{e.decision.get('tool_calls', 0)} tool calls, {e.decision.get('refused', 0)} refused"]
        for t in e.decision.get("trail", []):
            what = t.get("detail") or json.dumps(t.get("data"), default=str)
            lines.append(f"  turn {t['turn']}  {t['kind']:<12} {t.get('tool') or '':<14} {_clip(what)}")
    return lines


def _clip(text: str, width: int = 110) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _model_call_notes(entries: Sequence[LedgerEntry]) -> list[str]:
    """Model requests that did not answer: the fallovers, repairs and retries behind a step."""
    notes = [
        f"  {e.step}: attempt {c.attempt}, {c.model}"
        + (f" turn {c.turn}" if c.turn else "")
        + f": {c.outcome}"
        + (f" (${c.cost_usd:.6f})" if c.cost_usd else "")
        + (f" — {c.error}" if c.error else "")
        for e in entries
        for c in e.calls
        if c.outcome not in ("ok", "tool_use")
    ]
    return ["", "model calls that did not answer:", *notes] if notes else []


def status_text(run_id: str, s: RunStatus) -> str:
    lines = [
        f"run      {run_id}",
        f"process  {s.process}",
        f"state    {s.state.value}" + (f" — {s.reason}" if s.reason else ""),
        f"step     {s.current_step or '-'} ({s.steps} taken"
        + (f" of {s.budget.max_steps})" if s.budget else ")"),
        f"cost     ${s.cost_usd:.6f}" + (f" of ${s.budget.max_cost_usd}" if s.budget else ""),
    ]
    if s.usage and s.budget:
        lines.append("used     " + ", ".join(calls_and_clock(s.budget, s.usage)))
    for r in s.open_requests:
        lines += [
            f"waiting  approval {r.id!r} from {'/'.join(r.roles)}"
            + (f" ({', '.join(r.people)})" if r.people else "")
            + f" until {r.deadline:%Y-%m-%d %H:%M} UTC"
            + (f", then {'/'.join(r.escalates_to)}" if r.escalates_to else ""),
            f"         {r.ask}",
        ]
    return "\n".join(lines)


def spend_line(cap: AcrossRuns, w: SpendWindow | None) -> str:
    """A cap across runs at a glance: what its window settled and holds, of what it allows, until when."""
    head = f"across   ${cap.max_cost_usd:g} per {span(cap.window)} across runs"
    if w is None:
        return head + ": nothing reserved yet"
    return (f"{head}: ${w.settled_usd:.6f} settled + ${w.reserved_usd:.6f} reserved, "
            f"{w.refused} refused, window ends {w.end:%Y-%m-%d %H:%M:%S} UTC")


def no_steps(run_id: str, s: RunStatus) -> str:
    """A ledger with no entry, in one line: a run that has not taken a step yet, or never will."""
    if not s.state.is_final:
        return f"{run_id}: no steps yet ({s.state.value})"
    return f"{run_id}: no steps: {s.state.value}" + (f" — {s.reason}" if s.reason else "")


def outcome_text(run_id: str, o: RunOutcome) -> str:
    return f"{run_id}: {o.state.value} — {o.reason} (${o.cost_usd:.6f}, {o.steps} steps)"


def runs_table(runs: Sequence[RunSummary]) -> str:
    rows = [
        [
            r.run_id,
            r.process or "-",
            r.status or "-",
            f"${r.cost_usd:.6f}" if r.cost_usd is not None else "-",
            "yes" if r.awaiting_approval else "no",
            f"{r.started:%Y-%m-%d %H:%M:%S}" if r.started else "-",
        ]
        for r in runs
    ]
    return table(["run", "process", "status", "cost", "awaiting approval", "started (UTC)"], rows)


def inbox_table(items: Sequence[InboxItem]) -> str:
    if not items:
        return "no open approval requests"
    rows = [
        [
            f"{i.request.requested_at:%Y-%m-%d %H:%M}",
            i.run_id,
            i.process,
            i.request.id,
            "/".join(i.request.roles),
            f"{i.request.deadline:%Y-%m-%d %H:%M}",
            _short(i.request.ask, 60),
        ]
        for i in items
    ]
    return table(["asked (UTC)", "run", "process", "request", "roles", "deadline (UTC)", "ask"], rows)


def request_text(r: ApprovalRequest) -> str:
    """One request as a person reads it before deciding: the ask, the proposal, the context."""
    lines = [f"request  {r.id} (step {r.step})", f"ask      {r.ask}"]
    if r.proposed:
        lines.append(f"proposed {r.proposed}")
    lines.append(f"cost     ${r.cost_so_far_usd:.6f} so far")
    lines.append("context")
    lines += [f"  {key}: {_short(str(value), 100)}" for key, value in r.context.items()]
    return "\n".join(lines)


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# ----- `baton tools`: the inventory (client/inventory.py builds it) ----------------------


def inventory_table(inv: Inventory) -> str:
    """Per process its budget, people, grant, steps and agents; then the tool catalog.

    Whatever would refuse a run (a step's tool not granted, a tier with no
    models, a role nobody is in) is spelt in capitals, so a review sees it.
    """
    parts = [_process_text(p) for p in inv.processes]
    rows = [
        [t.name, t.effect.value, t.idempotency, ", ".join(t.granted_to) or "granted to nobody", t.description]
        for t in inv.tools
    ]
    headers = ["tool", "effect", "idempotency", "granted to", "description"]
    parts.append("tool catalog\n" + _indent(table(headers, rows)))
    return "\n\n".join(parts)


def _process_text(p: ProcessView) -> str:
    b = p.budget
    lines = [
        f"process {p.name}",
        f"  budget  {budget_caps(b)} per run ({p.budget_from})",
        *([f"          a run may ask for up to: {budget_caps(b.maximum)}"] if b.maximum else []),
        "          a reached cap " + (f"asks {'/'.join(p.budget_extension)} to extend it" if p.budget_extension
                                      else "ends the run budget_exceeded"),
        "  roles   " + ("; ".join(f"{r.role}: {', '.join(r.people) or 'NOBODY'}" for r in p.roles) or "-"),
        "  grant   " + (", ".join(_held(t) for t in p.grant) or "no tools of its own"),
        "",
        _indent(table(["#", "step", "kind", "model / tool", "when / approval"],
                      [[str(i), s.step, s.kind, _step_what(s), _step_note(s)] for i, s in enumerate(p.steps, 1)])),
    ]
    lines += [f"  !! NOT GRANTED: {where}, which [grants.{p.name}] does not hold: the run is refused there"
              for where in p.not_granted]
    for a in p.agents:
        supervisor = f"{a.supervisor_tier} → {_models(a.supervisor_models)}" if a.supervisor_tier else "none"
        c = a.caps
        lines += [
            "",
            f"  agent {a.grantee}",
            f"    model       {a.tier} → {_models(a.models)}; supervisor {supervisor}",
            f"    caps        {c.max_turns} turns, {c.max_tool_calls} tool calls, {_usd(c.max_cost_usd)}, ttl {c.ttl}",
        ]
        rows = [[t.tool, t.effect.value, _agent_bounds(t), _agent_approval(t)] for t in a.tools]
        held = _indent(table(["tool", "effect", "bounds", "approval"], rows), 4)
        lines.append(held if rows else "    tools       NONE GRANTED")
    return "\n".join(lines)


def _step_what(s: StepView) -> str:
    match s.kind:
        case "llm":
            return f"{s.tier} → {_models(s.models)}"
        case "agent":
            return f"agent {s.agent}" + (f" ({s.tier} → {_models(s.models)})" if s.tier else " (NOT DECLARED)")
        case "tool":
            effect = s.effect.value if s.effect else "NOT IN CATALOG"
            return f"{s.tool} ({effect})" + ("" if s.granted else " NOT GRANTED")
        case "rule":
            return "code"
        case _:
            return "-"


def _step_note(s: StepView) -> str:
    said = []
    if s.roles:
        said.append("asks " + " then ".join(s.roles))
    if s.needs_approval:
        said.append("irreversible: approved first")
    return "; ".join([*said, s.note] if s.note else said)


def _usd(amount: float) -> str:
    return f"${amount:.2f}" if round(amount, 2) == amount else f"${amount:g}"


def _models(models: Sequence[str]) -> str:
    return ", ".join(models) or "NO MODELS CONFIGURED"


def _held(t: HeldTool) -> str:
    bounds = _bounds(t.bounds)
    return f"{t.tool} ({t.effect.value}" + (f"; {bounds})" if bounds != "-" else ")")


def _agent_bounds(t: HeldTool) -> str:
    """The grant's bounds, then the rule over facts the agent's calls must also meet."""
    if t.requires is None:
        return _bounds(t.bounds)
    return f"only if {t.requires}" if not t.bounds else f"{_bounds(t.bounds)}; only if {t.requires}"


def _agent_approval(t: HeldTool) -> str:
    if t.approval is None:
        return "NO APPROVAL POLICY" if t.effect.value == "irreversible" else "-"
    a = t.approval
    return " then ".join([*a.roles, *a.escalate]) + (f"; auto if {a.auto_approve}" if a.auto_approve else "")


def _bounds(bounds: dict[str, Bound]) -> str:
    said = []
    for field, b in bounds.items():
        if b.min is not None:
            said.append(f"{field} ≥ {b.min:g}")
        if b.max is not None:
            said.append(f"{field} ≤ {b.max:g}")
        if b.one_of is not None:
            said.append(f"{field} in {', '.join(b.one_of)}")
        if b.domains is not None:
            said.append(f"{field} at {', '.join(b.domains)}")
    return "; ".join(said) or "-"


def _indent(text: str, n: int = 2) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def budget_caps(b) -> str:
    """Every cap a Budget (or an override) sets, in one line."""
    parts = []
    if b.max_cost_usd is not None:
        parts.append(_usd(b.max_cost_usd))
    for cap, unit in (("max_steps", "steps"), ("max_llm_calls", "model calls"), ("max_tool_calls", "tool calls")):
        if getattr(b, cap) is not None:
            parts.append(f"{getattr(b, cap)} {unit}")
    for cap, unit in (("max_wall_clock", "wall clock"), ("max_approval_idle", "approval idle")):
        if getattr(b, cap) is not None:
            parts.append(f"{span(getattr(b, cap))} {unit}")
    return ", ".join(parts)
