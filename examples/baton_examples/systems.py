"""The example systems of record, one SQLite file behind every tool the shipped processes call.

They stand in for the systems a real deployment calls, and they behave like
good ones: every write is keyed by the caller's idempotency key, and a second
call with the same key changes nothing and returns what the first one did.
Tests read the same file to see what really happened.

Each domain lives beside its process (onboarding/tools.py, support_triage/tools.py,
sales_followup/tools.py) and the outbox they share in outbox.py; `SystemsOfRecord`
combines them into the one systems object this package hands the worker, which
calls a tool as the method of that name: `systems.<tool>(args, idempotency_key)`.
"""

from __future__ import annotations

import json
from pathlib import Path

from baton_examples import outbox
from baton_examples.onboarding import tools as onboarding
from baton_examples.sales_followup import tools as sales_crm
from baton_examples.store import key_digest
from baton_examples.support_triage import tools as support_desk
from workflows.api import RecordRefused, SystemsSettings

__all__ = ["RecordRefused", "SystemsOfRecord", "key_digest", "open_systems"]

DOMAINS = (onboarding, outbox, support_desk, sales_crm)
TABLES = frozenset().union(*(d.TABLES for d in DOMAINS))


class SystemsOfRecord(onboarding.OnboardingSystems, outbox.Outbox, support_desk.SupportDesk, sales_crm.SalesCrm):
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
                for domain in (onboarding, support_desk, sales_crm):
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


def open_systems(settings: SystemsSettings) -> SystemsOfRecord:
    """The worker's systems for this package: the file `[systems]` names, created and seeded on first use."""
    systems = SystemsOfRecord(settings.db)
    systems.create(settings.seed)
    return systems
