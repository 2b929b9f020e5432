"""`baton audit`: one run as an auditor reads it, the same bytes every time it is taken.

Built from a RunRecord (client/run_record.py), so it needs no worker: the run,
every step with what it cost and the typed decision that routed the next step
(and which step that was), digests of what went in and came out, every
approval (a person's, a rule's, an escalation), every refused proposal, the
requests still open, and the budget with what the run consumed of it.

Determinism is the point: an export taken twice must be byte-identical, or it
cannot be filed, signed or diffed. So the JSON is canonical (sorted keys, fixed
separators, no export timestamp), lists keep ledger order, and the text form
is rendered from that same data. Ledger entries and budgets are dumped whole,
so fields added to them later (new caps, usage counters, digests) appear in the
export without this module changing.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from client.render import model_text, table
from client.run_record import RunRecord
from activities.personal import audit_key, keyed_digest

FORMAT = "baton.audit/1"
APPROVAL_TRAIL = ("approved", "not_approved")
REFUSED_TRAIL = ("refused", "invalid")  # proposals the engine refused: not granted / out of bounds, or bad arguments


def canonical_json(value: Any) -> str:
    """Values as the ledger's digests take them: sorted keys, no whitespace, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def export_json(data: dict) -> str:
    """The audit as a file: canonical (sorted keys, fixed separators), indented for people."""
    return json.dumps(data, sort_keys=True, indent=2, separators=(",", ": "), ensure_ascii=False)


def audit(record: RunRecord, key: bytes | None = None) -> dict:
    """The audit export of one run, as plain JSON data; digests keyed with `key` (else the audit key, activities/personal.py).

    What it shows in full follows the run's `[audit] values`: "full" everything;
    "digests" the outputs and result, with inputs as digests; "all-digests" no value at all.
    """
    key = key or audit_key()
    status = record.status.model_dump(mode="json")
    ledger = [e.model_dump(mode="json") for e in record.ledger]
    return {
        "format": FORMAT,
        "run": _run(record, status, key),
        "steps": [_step(e, ledger[i + 1] if i + 1 < len(ledger) else None, record, status, key)
                  for i, e in enumerate(ledger)],
        "approvals": _approvals(ledger, record.run_id),
        "open_requests": status.get("open_requests") or [],
        "refusals": _refusals(ledger, record.run_id),
        "budget": {
            "limits": status.get("budget"),
            "used": status.get("usage"),
            "cost_usd": status.get("cost_usd"),
            "steps": status.get("steps"),
        },
    }


def _run(record: RunRecord, status: dict, key: bytes) -> dict:
    result = record.outcome.model_dump(mode="json")["result"] if record.outcome else None
    opaque = record.audit_values == "all-digests"
    return {
        "run_id": record.run_id,
        "temporal_run_id": record.temporal_run_id,
        "workflow_type": record.workflow_type,
        "process": record.process,
        "business_key": record.business_key,
        "summary": record.summary,
        "state": record.state,
        "reason": status.get("reason"),
        "current_step": status.get("current_step"),
        "temporal_status": record.close_status or "running",
        "started_at": _iso(record.started_at),
        "closed_at": _iso(record.closed_at) if record.closed_at else None,
        "values": record.audit_values,
        "input": record.input if record.audit_values == "full" else None,  # the history has it; the export only if allowed
        "input_digest": keyed_digest(record.input, key),
        "result": None if opaque else result,
        "result_digest": None if result is None else keyed_digest(result, key),
        "started_by": status.get("started_by"),  # subject, issuer, kid and roles of the verified start token
    }


def _step(entry: dict, following: dict | None, record: RunRecord, status: dict, key: bytes) -> dict:
    """The ledger entry, its values as the run's `[audit] values` allows, keyed digests, and the branch it led to.

    A ledger's own digests (runs before keyed digests) are unkeyed, so never exported;
    such a run's step inputs were kept only under "full", so only then are they digested.
    """
    given, decision = entry.get("input"), entry.get("decision")
    return {
        **entry,
        "input": given if record.audit_values == "full" else None,
        "decision": None if record.audit_values == "all-digests" else decision,
        "input_digest": None if given is None else keyed_digest(given, key),
        "output_digest": None if decision is None else keyed_digest(decision, key),
        "then": _then(following, record, status),
    }


def _then(following: dict | None, record: RunRecord, status: dict) -> dict:
    """Where the run went after a step: the next step, or how it ended (or stands, while open)."""
    if following is not None:
        return {"step": following["step"]}
    if not record.is_open:
        return {"end": record.state}
    waiting = [r["id"] for r in status.get("open_requests") or []]
    return {"open": record.state, **({"waiting_for": waiting} if waiting else {})}


def _approvals(ledger: list[dict], run_id: str) -> list[dict]:
    found = []
    for e in ledger:
        if e["kind"] == "approval":
            found.append({
                "seq": e["seq"], "step": e["step"], "where": "run", "outcome": e["outcome"],
                "by": e.get("by"), "issuer": e.get("issuer"), "kid": e.get("kid"), "rule": _rule(e),
                "comment": e.get("comment") or "",
                "requested_at": e["started_at"], "decided_at": _decided_at(e),
                "waited_ms": e.get("latency_ms"), "detail": e.get("detail") or "",
            })
        for t in _trail(e, APPROVAL_TRAIL):
            found.append({
                "seq": e["seq"], "step": e["step"], "where": f"agent {e['name']}", "agent_run": f"{run_id}/{e['step']}",
                "turn": t.get("turn"), "tool": t.get("tool"), "outcome": t["kind"], "detail": t.get("detail") or "",
            })
    return found


def _refusals(ledger: list[dict], run_id: str) -> list[dict]:
    found = []
    for e in ledger:
        if e["outcome"] == "refused":
            found.append({
                "seq": e["seq"], "step": e["step"], "where": "run", "kind": e["kind"], "tool": e["name"],
                "detail": e.get("detail") or "", "proposed": e.get("decision"),
            })
        for t in _trail(e, REFUSED_TRAIL):
            found.append({
                "seq": e["seq"], "step": e["step"], "where": f"agent {e['name']}", "agent_run": f"{run_id}/{e['step']}",
                "kind": t["kind"], "turn": t.get("turn"), "tool": t.get("tool"), "detail": t.get("detail") or "", "proposed": t.get("data"),
            })
    return found


def _trail(entry: dict, kinds: tuple[str, ...]) -> list[dict]:
    """An agent entry's trail (its decision is the AgentReport), filtered by kind."""
    if entry["kind"] != "agent" or not isinstance(entry.get("decision"), dict):
        return []
    return [t for t in entry["decision"].get("trail") or [] if t.get("kind") in kinds]


def _rule(entry: dict) -> str | None:
    """The threshold rule that decided, for approvals no person gave."""
    decision = entry.get("decision") or {}
    if isinstance(decision, dict) and decision.get("rule"):
        return decision["rule"]
    if entry.get("by") == "rule":
        found = re.search(r"`([^`]*)`", entry.get("detail") or "")
        return found[1] if found else entry.get("detail")
    return None


def _decided_at(entry: dict) -> str:
    decision = entry.get("decision") or {}
    if isinstance(decision, dict) and isinstance(decision.get("decided_at"), str):
        return decision["decided_at"]
    started = datetime.fromisoformat(entry["started_at"])
    return _iso(started + timedelta(milliseconds=entry.get("latency_ms") or 0))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# ----- text -----------------------------------------------------------------------------


def audit_text(data: dict) -> str:
    """The same audit for people; rendered from the export, so it says nothing the export does not."""
    run = data["run"]
    lines = [
        f"audit    {run['run_id']} (temporal run {run['temporal_run_id']}, {data['format']})",
        f"process  {run['process']}" + (f" · business key {run['business_key']}" if run["business_key"] else ""),
        f"state    {run['state']}" + (f" — {run['reason']}" if run["reason"] else ""),
        f"started  {run['started_at']}" + _starter_text(run.get("started_by")),
        f"closed   {run['closed_at'] or '-'} (temporal: {run['temporal_status']})",
        f"input    {run['input_digest']}" + (
            f" {canonical_json(run['input'])}" if run["input"] is not None
            else f" (values: {run['values']}; the input itself is not exported)"),
        "",
        "steps",
        _steps_table(data["steps"]),
        "",
        "decisions (each step's typed result, and the branch it led to)",
    ]
    for s in data["steps"]:
        lines.append(f"  {s['seq']:>3} {s['step']} → {_then_text(s['then'])}")
        lines.append(f"      in  {s['input_digest'] or '-'}" + (f" {canonical_json(s['input'])}" if s.get("input") is not None else ""))
        lines.append(f"      out {s['output_digest'] or '-'}")
        if s.get("decision") is not None:
            lines.append(f"      {canonical_json(s['decision'])}")
    lines += ["", "approvals"] + (_approval_lines(data["approvals"]) or ["  none"])
    lines += ["", "open requests"] + ([
        f"  {r['id']}: asks {'/'.join(r.get('roles') or [])}"
        + (f" ({', '.join(r['people'])})" if r.get("people") else "")
        + f" since {r['requested_at']}, deadline {r['deadline']}: {r['ask']}"
        for r in data["open_requests"]
    ] or ["  none"])
    lines += ["", "refused proposals"] + ([
        f"  {r['seq']:>3} {r['step']} ({r['where']}{', turn ' + str(r['turn']) if r.get('turn') is not None else ''}): "
        f"{r['kind']} {r['tool'] or ''} — {r['detail']}"
        + (f"\n      proposed {canonical_json(r['proposed'])}" if r.get("proposed") is not None else "")
        for r in data["refusals"]
    ] or ["  none"])
    budget = data["budget"]
    lines += [
        "",
        "budget",
        f"  limits  {_flat(budget['limits'])}",
        f"  used    {_flat(budget['used'])}",
        f"  spent   ${budget['cost_usd']:.6f} over {budget['steps']} steps",
    ]
    return "\n".join(lines)


def _starter_text(starter: dict | None) -> str:
    if not starter:
        return " (starter not attributed)"
    return f" by {starter['subject']} (verified: issuer {starter['issuer']}, key {starter['kid']})"


def _steps_table(steps: list[dict]) -> str:
    rows = [
        [
            str(s["seq"]), s["step"], s["kind"], s["name"], s.get("tier") or "-",
            model_text(s["provider"], s["model"], s.get("requested_model"), s.get("reported_model"))
            if s.get("model") else "-",
            f"{s.get('tokens_in', 0)}/{s.get('tokens_out', 0)}",
            f"${s.get('cost_usd', 0):.6f}", f"{s.get('latency_ms', 0):,.0f} ms", str(s.get("attempts")),
            s["outcome"], _then_text(s["then"]),
        ]
        for s in steps
    ]
    headers = ["#", "step", "kind", "name", "tier", "provider/model", "tokens in/out", "cost", "latency", "tries",
               "outcome", "then"]
    return table(headers, rows)


def _then_text(then: dict) -> str:
    if "step" in then:
        return then["step"]
    if "end" in then:
        return f"end: {then['end']}"
    return f"open: {then['open']}" + (f" (waiting for {', '.join(then['waiting_for'])})" if then.get("waiting_for") else "")


def _approval_lines(approvals: list[dict]) -> list[str]:
    lines = []
    for a in approvals:
        if a["where"] != "run":
            lines.append(f"  {a['seq']:>3} {a['step']} ({a['where']}, turn {a['turn']}): {a['outcome']} {a['tool'] or ''} "
                         f"{a['detail']} — its own ledger: baton audit {a['agent_run']}")
            continue
        who = f" by rule `{a['rule']}`" if a["by"] == "rule" else (f" by {a['by']}" if a["by"] else "")
        if a.get("issuer"):
            who += f" (verified: issuer {a['issuer']}, key {a['kid']})"
        line = f"  {a['seq']:>3} {a['step']}: {a['outcome']}{who} at {a['decided_at']}"
        line += f" (asked {a['requested_at']}, waited {a['waited_ms'] / 1000:,.1f} s)"
        if a["comment"]:
            line += f' — "{a["comment"]}"'
        if a["detail"]:
            line += f"\n      {a['detail']}"
        lines.append(line)
    return lines


def _flat(value: Any, prefix: str = "") -> str:
    """A dumped model as `key=value` pairs, nested ones dotted, in key order; unset caps said once."""
    if not isinstance(value, dict):
        return "-" if value is None else str(value)
    pairs, unset = [], []
    for key in sorted(value):
        v = value[key]
        if isinstance(v, dict):
            inner = _flat(v, f"{prefix}{key}.")
            if inner != "-":
                pairs.append(inner)
        elif v is None:
            unset.append(prefix + key)
        else:
            pairs.append(f"{prefix}{key}={v}")
    if unset and not prefix:
        pairs.append(f"(unset: {', '.join(unset)})")
    return "  ".join(pairs) or "-"
