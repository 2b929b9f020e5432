"""The example systems of record, one SQLite file behind every tool the processes call.

They stand in for the systems a real deployment calls, and they behave like
good ones: every write is keyed by the caller's idempotency key, and a second
call with the same key changes nothing and returns what the first one did.
Tests read the same file to see what really happened.

Each domain lives in its own module (onboarding, support_desk, sales_crm);
`SystemsOfRecord` combines them so the tool activity can dispatch any tool by
name: `getattr(systems, spec.name)(args, idempotency_key)`.
"""

from __future__ import annotations

import json
from pathlib import Path

from activities.tools import onboarding, sales_crm, support_desk
from activities.tools.records import RecordRefused
from activities.tools.store import key_digest

__all__ = ["RecordRefused", "SystemsOfRecord", "key_digest"]

DOMAINS = (onboarding, support_desk, sales_crm)
TABLES = frozenset().union(*(d.TABLES for d in DOMAINS))


class SystemsOfRecord(onboarding.OnboardingSystems, support_desk.SupportDesk, sales_crm.SalesCrm):
    def create(self, seed: Path | None = None) -> None:
        """Create the tables and load the example records (existing rows are kept)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript("".join(d.SCHEMA for d in DOMAINS))
            support_desk.refunds_per_call(db)
            if seed is None:
                return
            data = json.loads(seed.read_text())
            with db:
                for domain in DOMAINS:
                    domain.seed(db, data)

    def count(self, table: str, **where: str) -> int:
        """Rows in `table` matching `where`: how tests and the demo check effects."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        clause = " AND ".join(f"{col} = ?" for col in where) or "1"
        with self._db() as db:
            return db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {clause}", tuple(where.values())
            ).fetchone()[0]
