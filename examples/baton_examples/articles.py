"""The two processes built from the seed articles, as a package of their own: prior authorization and deposition research.

A team's package exactly: written against `workflows.api` only, with its own
systems of record, and run because baton.toml's `[plugins] packages` names it
(beside `baton_examples.package`), not through the entry point. So a worker or
`--demo` run with no baton.toml, whose demo people are the engine's fixed list,
does not meet roles it cannot answer (`clinical-reviewer`, `supervising-attorney`).
"""

from __future__ import annotations

import json
from pathlib import Path

from baton_examples.deposition_research import tools as litigation
from baton_examples.deposition_research.workflow import DepositionResearch
from baton_examples.prior_authorization import tools as payer
from baton_examples.prior_authorization.workflow import PriorAuthorization
from workflows.api import Package, SystemsSettings

DOMAINS = (payer, litigation)
TABLES = frozenset().union(*(d.TABLES for d in DOMAINS))


class ArticleSystems(payer.PayerSystems, litigation.LitigationSupport):
    """The payer's policy table and CRM, and the litigation support systems, in the examples' one SQLite file."""

    def create(self, seed: Path | None = None) -> None:
        """Create the tables and load the example records (existing rows are kept)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript("".join(d.SCHEMA for d in DOMAINS))
            if seed is None:
                return
            data = json.loads(seed.read_text())
            with db:
                for domain in DOMAINS:
                    domain.seed(db, data)

    def rows(self, table: str) -> list[dict]:
        """Every row of `table`: how tests and the demo check what really happened."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        with self._db() as db:
            return [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()]


def open_systems(settings: SystemsSettings) -> ArticleSystems:
    """The worker's systems for this package: the file `[systems]` names, created and seeded on first use."""
    systems = ArticleSystems(settings.db)
    systems.create(settings.seed)
    return systems


package = Package(name="baton-articles", processes=(PriorAuthorization, DepositionResearch), systems=open_systems)
