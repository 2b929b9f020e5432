"""The onboarding tools and the systems of record they talk to: KYC register, credit bureau, CRM customers.

The register and bureau are read-only here (seeded from examples/systems.json);
the CRM is written, each row keyed UNIQUE by the caller's
idempotency key so a retried call returns what the first one did.
"""

from __future__ import annotations

import sqlite3

from pydantic import EmailStr, Field

from baton_examples.store import Store, key_digest
from workflows.api import PERSONAL, Contract, Effect, tool


class IdentityQuery(Contract):
    applicant_id: str = Field(min_length=1)
    name: str = Field(min_length=1, json_schema_extra=PERSONAL)
    document_number: str = Field(min_length=1, json_schema_extra=PERSONAL)


class IdentityCheck(Contract):
    verified: bool
    country: str | None = None
    pep: bool = False
    sanctions_hit: bool = False
    reason: str = ""


class CreditQuery(Contract):
    applicant_id: str = Field(min_length=1)


class CreditReport(Contract):
    found: bool
    score: int = 0
    open_defaults: int = 0


class NewCustomer(Contract):
    applicant_id: str
    name: str = Field(json_schema_extra=PERSONAL)
    email: EmailStr = Field(json_schema_extra=PERSONAL)
    segment: str


class CrmRecord(Contract):
    customer_id: str
    applicant_id: str
    created: bool = Field(description="False when the idempotency key had already created it")


SCHEMA = """
CREATE TABLE IF NOT EXISTS applicants (
    applicant_id TEXT PRIMARY KEY, name TEXT NOT NULL, document_number TEXT NOT NULL,
    country TEXT NOT NULL, pep INTEGER NOT NULL DEFAULT 0, sanctioned INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS credit (
    applicant_id TEXT PRIMARY KEY, score INTEGER NOT NULL, open_defaults INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS crm_records (
    customer_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, applicant_id TEXT NOT NULL,
    name TEXT NOT NULL, email TEXT NOT NULL, segment TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""

TABLES = frozenset({"applicants", "credit", "crm_records"})


def seed(db: sqlite3.Connection, data: dict) -> None:
    """Load the example applicants and their credit files; existing rows are kept."""
    for a in data.get("applicants", []):
        db.execute(
            "INSERT OR IGNORE INTO applicants VALUES (?,?,?,?,?,?)",
            (a["applicant_id"], a["name"], a["document_number"], a["country"],
             a.get("pep", False), a.get("sanctioned", False)),
        )
        if "credit" in a:
            db.execute(
                "INSERT OR IGNORE INTO credit VALUES (?,?,?)",
                (a["applicant_id"], a["credit"]["score"], a["credit"]["open_defaults"]),
            )


class OnboardingSystems(Store):
    @tool(Effect.READ, "Match an applicant's name and document against the KYC register.")
    def verify_identity(self, q: IdentityQuery, key: str | None) -> IdentityCheck:
        with self._db() as db:
            row = db.execute(
                "SELECT * FROM applicants WHERE applicant_id = ?", (q.applicant_id,)
            ).fetchone()
        if row is None:
            return IdentityCheck(verified=False, reason="applicant not in the register")
        if row["document_number"] != q.document_number or row["name"] != q.name:
            return IdentityCheck(
                verified=False, country=row["country"], reason="name or document does not match"
            )
        return IdentityCheck(
            verified=True,
            country=row["country"],
            pep=bool(row["pep"]),
            sanctions_hit=bool(row["sanctioned"]),
        )

    @tool(Effect.READ, "Read the applicant's credit score and open defaults.")
    def pull_credit(self, q: CreditQuery, key: str | None) -> CreditReport:
        with self._db() as db:
            row = db.execute(
                "SELECT * FROM credit WHERE applicant_id = ?", (q.applicant_id,)
            ).fetchone()
        if row is None:
            return CreditReport(found=False)
        return CreditReport(
            found=True, score=row["score"], open_defaults=row["open_defaults"]
        )

    @tool(Effect.WRITE, "Create the customer in the CRM.")
    def create_crm_record(self, c: NewCustomer, key: str) -> CrmRecord:
        customer_id = "C-" + key_digest(key)
        with self._db() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO crm_records"
                " (customer_id, idempotency_key, applicant_id, name, email, segment)"
                " VALUES (?,?,?,?,?,?)",
                (customer_id, key, c.applicant_id, c.name, c.email, c.segment),
            ).rowcount
            row = db.execute(
                "SELECT customer_id, applicant_id FROM crm_records WHERE idempotency_key = ?",
                (key,),
            ).fetchone()
        return CrmRecord(
            customer_id=row["customer_id"], applicant_id=row["applicant_id"], created=inserted == 1
        )
