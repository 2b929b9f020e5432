"""The onboarding systems of record: KYC register, credit bureau, CRM customers, outbox.

The register and bureau are read-only here (seeded from examples/systems.json);
the CRM and the outbox are written, each row keyed UNIQUE by the caller's
idempotency key so a retried call returns what the first one did.
"""

from __future__ import annotations

import sqlite3

from activities.tools import records
from activities.tools.store import Store, key_digest

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
CREATE TABLE IF NOT EXISTS outbox (
    message_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, recipient TEXT NOT NULL,
    subject TEXT NOT NULL, body TEXT NOT NULL, queued_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""

TABLES = frozenset({"applicants", "credit", "crm_records", "outbox"})


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
    def verify_identity(self, q: records.IdentityQuery, key: str | None) -> records.IdentityCheck:
        with self._db() as db:
            row = db.execute(
                "SELECT * FROM applicants WHERE applicant_id = ?", (q.applicant_id,)
            ).fetchone()
        if row is None:
            return records.IdentityCheck(verified=False, reason="applicant not in the register")
        if row["document_number"] != q.document_number or row["name"] != q.name:
            return records.IdentityCheck(
                verified=False, country=row["country"], reason="name or document does not match"
            )
        return records.IdentityCheck(
            verified=True,
            country=row["country"],
            pep=bool(row["pep"]),
            sanctions_hit=bool(row["sanctioned"]),
        )

    def pull_credit(self, q: records.CreditQuery, key: str | None) -> records.CreditReport:
        with self._db() as db:
            row = db.execute(
                "SELECT * FROM credit WHERE applicant_id = ?", (q.applicant_id,)
            ).fetchone()
        if row is None:
            return records.CreditReport(found=False)
        return records.CreditReport(
            found=True, score=row["score"], open_defaults=row["open_defaults"]
        )

    def create_crm_record(self, c: records.NewCustomer, key: str) -> records.CrmRecord:
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
        return records.CrmRecord(
            customer_id=row["customer_id"], applicant_id=row["applicant_id"], created=inserted == 1
        )

    def send_email(self, e: records.Email, key: str) -> records.OutboxMessage:
        message_id = "M-" + key_digest(key)
        with self._db() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO outbox (message_id, idempotency_key, recipient, subject, body)"
                " VALUES (?,?,?,?,?)",
                (message_id, key, e.to, e.subject, e.body),
            ).rowcount
        return records.OutboxMessage(message_id=message_id, queued=inserted == 1)
