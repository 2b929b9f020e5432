"""Plain-text tables for people; the CLI's `--json` gives the same data to scripts."""

from __future__ import annotations

from collections.abc import Sequence

from client.sdk import InboxItem, RunSummary
from workflows.approvals import ApprovalRequest
from workflows.ledger import LedgerEntry, StepKind
from workflows.outcome import RunOutcome
from workflows.status import RunStatus


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _what(e: LedgerEntry) -> str:
    match e.kind:
        case StepKind.LLM:
            return f"{e.tier}→{e.provider}/{e.model}"
        case StepKind.TOOL:
            return f"{e.name} ({e.effect})"
        case StepKind.APPROVAL:
            return "threshold rule" if e.by == "rule" else f"{e.name}: {e.by or '-'}"
        case _:
            return e.name


def ledger_table(entries: Sequence[LedgerEntry]) -> str:
    rows = [
        [
            str(e.seq),
            e.step,
            e.kind.value,
            _what(e),
            f"{e.tokens_in}/{e.tokens_out}" if e.kind is StepKind.LLM else "-",
            f"${e.cost_usd:.6f}",
            f"{e.latency_ms:,.0f} ms",
            str(e.attempts),
            e.outcome + (f": {e.detail}" if e.detail else ""),
        ]
        for e in entries
    ]
    headers = ["#", "step", "kind", "model / tool", "tokens in/out", "cost", "latency", "tries", "outcome"]
    return "\n".join([table(headers, rows), *_model_call_notes(entries)])


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
    for r in s.open_requests:
        lines += [
            f"waiting  approval {r.id!r} from {'/'.join(r.roles)}"
            + (f" ({', '.join(r.people)})" if r.people else "")
            + f" until {r.deadline:%Y-%m-%d %H:%M} UTC"
            + (f", then {'/'.join(r.escalates_to)}" if r.escalates_to else ""),
            f"         {r.ask}",
        ]
    return "\n".join(lines)


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
