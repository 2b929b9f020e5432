"""The sales CRM's tools and records: deals with the rep's notes, and the activity log a follow-up writes to.

A follow-up is logged as a row in `deal_activities`, UNIQUE on the caller's
idempotency key, so a retried update logs it once. Updating a deal the CRM
does not have is refused rather than creating an orphan activity.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime

from pydantic import Field

from baton_examples.store import Store, key_digest
from workflows.api import PERSONAL, Contract, Effect, RecordRefused, tool


class DealQuery(Contract):
    deal_id: str = Field(min_length=1, max_length=40)


class DealNotes(Contract):
    found: bool
    deal_id: str
    company: str = ""
    contact_name: str = Field("", json_schema_extra=PERSONAL)
    contact_email: str | None = Field(None, json_schema_extra=PERSONAL)
    rep: str = ""
    demo_on: date | None = Field(None, strict=False)
    notes: list[str] = []
    stage: str = ""


class DealUpdate(Contract):
    deal_id: str = Field(min_length=1, max_length=40)
    next_step: str = Field(min_length=1, max_length=500)
    meeting_at: datetime = Field(strict=False)
    follow_up_message_id: str = Field(description="The outbox message id of the follow-up e-mail")


class DealActivity(Contract):
    activity_id: str
    deal_id: str
    created: bool = Field(description="False when the idempotency key had already logged it")


SCHEMA = """
CREATE TABLE IF NOT EXISTS deals (
    deal_id TEXT PRIMARY KEY, company TEXT NOT NULL, contact_name TEXT NOT NULL,
    contact_email TEXT, rep TEXT NOT NULL, demo_on TEXT, stage TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS deal_activities (
    activity_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, deal_id TEXT NOT NULL,
    next_step TEXT NOT NULL, meeting_at TEXT NOT NULL, follow_up_message_id TEXT NOT NULL,
    logged_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""

TABLES = frozenset({"deals", "deal_activities"})


def seed(db: sqlite3.Connection, data: dict) -> None:
    """Load the example deals; existing rows are kept."""
    for d in data.get("deals", []):
        db.execute(
            "INSERT OR IGNORE INTO deals VALUES (?,?,?,?,?,?,?,?)",
            (d["deal_id"], d["company"], d["contact_name"], d.get("contact_email"), d["rep"],
             d.get("demo_on"), d.get("stage", ""), json.dumps(d.get("notes", []))),
        )


class SalesCrm(Store):
    @tool(Effect.READ, "Read a sales deal's company, contact, rep, demo date, stage and the rep's notes.")
    def read_crm_notes(self, q: DealQuery, key: str | None) -> DealNotes:
        with self._db() as db:
            row = db.execute("SELECT * FROM deals WHERE deal_id = ?", (q.deal_id,)).fetchone()
        if row is None:
            return DealNotes(found=False, deal_id=q.deal_id)
        return DealNotes(
            found=True,
            deal_id=row["deal_id"],
            company=row["company"],
            contact_name=row["contact_name"],
            contact_email=row["contact_email"],
            rep=row["rep"],
            demo_on=row["demo_on"],
            notes=json.loads(row["notes"]),
            stage=row["stage"],
        )

    @tool(Effect.WRITE, "Log the agreed next step, meeting time and follow-up e-mail on a sales deal.")
    def update_crm_deal(self, u: DealUpdate, key: str) -> DealActivity:
        """Log the agreed next step on a deal, once per idempotency key."""
        with self._transaction() as db:
            prior = db.execute(
                "SELECT activity_id, deal_id FROM deal_activities WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if prior is not None:
                return DealActivity(**dict(prior), created=False)
            if db.execute("SELECT 1 FROM deals WHERE deal_id = ?", (u.deal_id,)).fetchone() is None:
                raise RecordRefused(f"deal {u.deal_id} does not exist; nothing was updated")
            activity_id = "DA-" + key_digest(key)
            db.execute(
                "INSERT INTO deal_activities"
                " (activity_id, idempotency_key, deal_id, next_step, meeting_at, follow_up_message_id)"
                " VALUES (?,?,?,?,?,?)",
                (activity_id, key, u.deal_id, u.next_step, u.meeting_at.isoformat(),
                 u.follow_up_message_id),
            )
        return DealActivity(activity_id=activity_id, deal_id=u.deal_id, created=True)
