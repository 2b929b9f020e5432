"""The payer's systems a prior-authorization run talks to: the policy table (read) and the CRM of cases (written).

The policy table says, per plan, which procedures are covered, whether they
need prior authorization, and the plan year's limits (visits, amount); the
claims history says what a member has used of them. The CRM logs each request
as a case, keyed UNIQUE by the caller's idempotency key, and a reviewer's
decision on it the same way: a retried call changes nothing and returns what
the first one did. A decision on a case the CRM does not have is refused.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from typing import Literal

from pydantic import Field

from baton_examples.store import Store, key_digest
from workflows.api import PERSONAL, Contract, Effect, RecordRefused, tool


class CoverageQuery(Contract):
    member_id: str = Field(min_length=1, max_length=40, json_schema_extra=PERSONAL)
    procedure_code: str = Field(min_length=1, max_length=10)
    on: date = Field(strict=False, description="the day the procedure is to be done")


class Coverage(Contract):
    member_found: bool
    plan: str = ""
    active: bool = Field(False, description="the member's policy is in force on the day asked")
    covered: bool = Field(False, description="the plan covers the procedure")
    prior_auth_required: bool = False
    visits_used: int = 0
    visits_limit: int | None = Field(None, description="visits a plan year; null: no limit")
    amount_used_usd: float = 0
    amount_limit_usd: float | None = Field(None, description="USD a plan year; null: no limit")
    procedure_cost_usd: float = 0


class PriorAuthCase(Contract):
    request_id: str = Field(min_length=1, max_length=40)
    member_id: str | None = Field(None, max_length=40, json_schema_extra=PERSONAL)
    procedure_code: str | None = Field(None, max_length=10)
    diagnosis_code: str | None = Field(None, max_length=10, json_schema_extra=PERSONAL)
    requested_date: date | None = Field(None, strict=False)
    provider_npi: str | None = Field(None, max_length=10)
    status: Literal["approved", "pending_review"]
    reasons: list[str] = Field(default=[], max_length=20)


class CaseRef(Contract):
    case_id: str
    status: str
    created: bool = Field(description="False when the idempotency key had already written it")


class CaseDecision(Contract):
    case_id: str = Field(min_length=1, max_length=40)
    status: Literal["approved", "denied"]
    decided_by: str = Field(min_length=1, max_length=200)
    comment: str = Field("", max_length=2000)


SCHEMA = """
CREATE TABLE IF NOT EXISTS pa_members (
    member_id TEXT PRIMARY KEY, plan TEXT NOT NULL, active_from TEXT NOT NULL, active_to TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pa_coverage (
    plan TEXT NOT NULL, procedure_code TEXT NOT NULL, prior_auth_required INTEGER NOT NULL,
    visits_limit INTEGER, amount_limit_usd REAL, procedure_cost_usd REAL NOT NULL,
    PRIMARY KEY (plan, procedure_code));
CREATE TABLE IF NOT EXISTS pa_usage (
    member_id TEXT NOT NULL, procedure_code TEXT NOT NULL, visits_used INTEGER NOT NULL,
    amount_used_usd REAL NOT NULL, PRIMARY KEY (member_id, procedure_code));
CREATE TABLE IF NOT EXISTS pa_cases (
    case_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, request_id TEXT NOT NULL,
    member_id TEXT, procedure_code TEXT, diagnosis_code TEXT, requested_date TEXT, provider_npi TEXT,
    status TEXT NOT NULL, reasons TEXT NOT NULL, logged_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS pa_decisions (
    decision_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, case_id TEXT NOT NULL,
    status TEXT NOT NULL, decided_by TEXT NOT NULL, comment TEXT NOT NULL,
    decided_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""

TABLES = frozenset({"pa_members", "pa_coverage", "pa_usage", "pa_cases", "pa_decisions"})


def seed(db: sqlite3.Connection, data: dict) -> None:
    """Load the example members, plans and claims history; existing rows are kept."""
    policy = data.get("prior_authorization", {})
    for m in policy.get("members", []):
        db.execute("INSERT OR IGNORE INTO pa_members VALUES (?,?,?,?)",
                   (m["member_id"], m["plan"], m["active_from"], m["active_to"]))
    for c in policy.get("coverage", []):
        db.execute("INSERT OR IGNORE INTO pa_coverage VALUES (?,?,?,?,?,?)",
                   (c["plan"], c["procedure_code"], c["prior_auth_required"], c.get("visits_limit"),
                    c.get("amount_limit_usd"), c["procedure_cost_usd"]))
    for u in policy.get("usage", []):
        db.execute("INSERT OR IGNORE INTO pa_usage VALUES (?,?,?,?)",
                   (u["member_id"], u["procedure_code"], u["visits_used"], u["amount_used_usd"]))


class PayerSystems(Store):
    @tool(Effect.READ, "Read a member's policy for one procedure on one day: plan, coverage, prior-auth rule, limits and use so far.")
    def check_coverage(self, q: CoverageQuery, key: str | None) -> Coverage:
        with self._db() as db:
            member = db.execute("SELECT * FROM pa_members WHERE member_id = ?", (q.member_id,)).fetchone()
            if member is None:
                return Coverage(member_found=False)
            plan = db.execute("SELECT * FROM pa_coverage WHERE plan = ? AND procedure_code = ?",
                              (member["plan"], q.procedure_code)).fetchone()
            used = db.execute("SELECT * FROM pa_usage WHERE member_id = ? AND procedure_code = ?",
                              (q.member_id, q.procedure_code)).fetchone()
        active = member["active_from"] <= q.on.isoformat() <= member["active_to"]
        if plan is None:
            return Coverage(member_found=True, plan=member["plan"], active=active)
        return Coverage(
            member_found=True, plan=member["plan"], active=active, covered=True,
            prior_auth_required=bool(plan["prior_auth_required"]),
            visits_used=used["visits_used"] if used else 0, visits_limit=plan["visits_limit"],
            amount_used_usd=used["amount_used_usd"] if used else 0.0, amount_limit_usd=plan["amount_limit_usd"],
            procedure_cost_usd=plan["procedure_cost_usd"],
        )

    @tool(Effect.WRITE, "Log a prior-authorization request in the CRM as a case, with the rules' verdict.")
    def log_prior_auth(self, c: PriorAuthCase, key: str) -> CaseRef:
        case_id = "PAC-" + key_digest(key)
        with self._db() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO pa_cases (case_id, idempotency_key, request_id, member_id, procedure_code,"
                " diagnosis_code, requested_date, provider_npi, status, reasons) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (case_id, key, c.request_id, c.member_id, c.procedure_code, c.diagnosis_code,
                 c.requested_date.isoformat() if c.requested_date else None, c.provider_npi, c.status,
                 json.dumps(c.reasons)),
            ).rowcount
            row = db.execute("SELECT case_id, status FROM pa_cases WHERE idempotency_key = ?", (key,)).fetchone()
        return CaseRef(case_id=row["case_id"], status=row["status"], created=inserted == 1)

    @tool(Effect.WRITE, "Record a clinical reviewer's decision on a logged prior-authorization case.")
    def record_auth_decision(self, d: CaseDecision, key: str) -> CaseRef:
        with self._transaction() as db:
            prior = db.execute("SELECT case_id, status FROM pa_decisions WHERE idempotency_key = ?", (key,)).fetchone()
            if prior is not None:
                return CaseRef(case_id=prior["case_id"], status=prior["status"], created=False)
            if db.execute("SELECT 1 FROM pa_cases WHERE case_id = ?", (d.case_id,)).fetchone() is None:
                raise RecordRefused(f"case {d.case_id} does not exist; no decision was recorded")
            db.execute(
                "INSERT INTO pa_decisions (decision_id, idempotency_key, case_id, status, decided_by, comment)"
                " VALUES (?,?,?,?,?,?)",
                ("PAD-" + key_digest(key), key, d.case_id, d.status, d.decided_by, d.comment),
            )
            db.execute("UPDATE pa_cases SET status = ? WHERE case_id = ?", (d.status, d.case_id))
        return CaseRef(case_id=d.case_id, status=d.status, created=True)
