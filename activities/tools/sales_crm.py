"""The sales CRM: deals with the rep's notes, and the activity log a follow-up writes to.

A follow-up is logged as a row in `deal_activities`, UNIQUE on the caller's
idempotency key, so a retried update logs it once. Updating a deal the CRM
does not have is refused rather than creating an orphan activity.
"""

from __future__ import annotations

import json
import sqlite3

from activities.tools import records
from activities.tools.records import RecordRefused
from activities.tools.store import Store, key_digest

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
    def read_crm_notes(self, q: records.DealQuery, key: str | None) -> records.DealNotes:
        with self._db() as db:
            row = db.execute("SELECT * FROM deals WHERE deal_id = ?", (q.deal_id,)).fetchone()
        if row is None:
            return records.DealNotes(found=False, deal_id=q.deal_id)
        return records.DealNotes(
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

    def update_crm_deal(self, u: records.DealUpdate, key: str) -> records.DealActivity:
        """Log the agreed next step on a deal, once per idempotency key."""
        with self._transaction() as db:
            prior = db.execute(
                "SELECT activity_id, deal_id FROM deal_activities WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if prior is not None:
                return records.DealActivity(**dict(prior), created=False)
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
        return records.DealActivity(activity_id=activity_id, deal_id=u.deal_id, created=True)
