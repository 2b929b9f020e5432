"""The litigation support systems a deposition-research agent calls: transcripts, their audio, and case law.

The transcript is searched by words (optionally only before a page: the
earlier sections of the testimony); the audio of a passage can be transcribed
again for clarity, where the court reporter wrote "[inaudible]". Case-law
sources charge per query: the caller states the most a query may cost
(`max_cost_usd`, which its approval rule reads), the source charges its price
only if it fits, and a query is charged once per idempotency key (a retry gets
the first answer back, and is not charged again). A charge cannot be undone, so
the query is irreversible: an agent's call of it passes its approval policy first.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Literal

from pydantic import Field

from baton_examples.store import Store, key_digest
from workflows.api import PERSONAL, Contract, Effect, RecordRefused, tool

SEARCH_LIMIT = 8
AUDIO_LINES = 10


class TranscriptQuery(Contract):
    deposition_id: str = Field(min_length=1, max_length=40)
    query: str = Field(min_length=1, max_length=200)
    before_page: int | None = Field(None, ge=1, le=9999, description="only pages before this one: the earlier sections")


class Passage(Contract):
    page: int
    line: int
    speaker: str = Field(description='"Q" (counsel), "A" (the witness) or a name for colloquy')
    text: str


class Passages(Contract):
    deponent: str = Field("", json_schema_extra=PERSONAL)
    passages: list[Passage]


class AudioQuery(Contract):
    deposition_id: str = Field(min_length=1, max_length=40)
    page: int = Field(ge=1, le=9999)
    from_line: int = Field(ge=1, le=99)
    to_line: int = Field(ge=1, le=99)


class CaseLawQuery(Contract):
    query: str = Field(min_length=1, max_length=300)
    source: Literal["open-caselaw", "standard-digest", "premium-analytics"]
    max_cost_usd: float = Field(ge=0, le=10_000, description="the most this query may be charged; a dearer source refuses")


class CaseLaw(Contract):
    citation: str
    court: str
    year: int
    holding: str


class CaseLawResults(Contract):
    query_id: str
    source: str
    charged_usd: float
    created: bool = Field(description="False when the idempotency key had already run (and paid for) it")
    cases: list[CaseLaw]


SCHEMA = """
CREATE TABLE IF NOT EXISTS depositions (
    deposition_id TEXT PRIMARY KEY, matter TEXT NOT NULL, deponent TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transcript_lines (
    deposition_id TEXT NOT NULL, page INTEGER NOT NULL, line INTEGER NOT NULL, speaker TEXT NOT NULL,
    text TEXT NOT NULL, audio_text TEXT, PRIMARY KEY (deposition_id, page, line));
CREATE TABLE IF NOT EXISTS case_law_sources (source TEXT PRIMARY KEY, price_usd REAL NOT NULL, rank INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS case_law (
    citation TEXT PRIMARY KEY, court TEXT NOT NULL, year INTEGER NOT NULL, holding TEXT NOT NULL,
    rank INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS case_law_queries (
    query_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, source TEXT NOT NULL, query TEXT NOT NULL,
    charged_usd REAL NOT NULL, citations TEXT NOT NULL, queried_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""

TABLES = frozenset({"depositions", "transcript_lines", "case_law_sources", "case_law", "case_law_queries"})


def seed(db: sqlite3.Connection, data: dict) -> None:
    """Load the example depositions, their transcripts and the case-law sources; existing rows are kept."""
    legal = data.get("deposition_research", {})
    for d in legal.get("depositions", []):
        db.execute("INSERT OR IGNORE INTO depositions VALUES (?,?,?)", (d["deposition_id"], d["matter"], d["deponent"]))
        for page, line, speaker, text, *audio in d["lines"]:
            db.execute("INSERT OR IGNORE INTO transcript_lines VALUES (?,?,?,?,?,?)",
                       (d["deposition_id"], page, line, speaker, text, audio[0] if audio else None))
    for s in legal.get("sources", []):
        db.execute("INSERT OR IGNORE INTO case_law_sources VALUES (?,?,?)", (s["source"], s["price_usd"], s["rank"]))
    for c in legal.get("cases", []):
        db.execute("INSERT OR IGNORE INTO case_law VALUES (?,?,?,?,?)",
                   (c["citation"], c["court"], c["year"], c["holding"], c["rank"]))


def words(query: str) -> list[str]:
    """The words of a query worth matching: three letters or more, lower-case."""
    return sorted({w for w in re.findall(r"[a-z0-9]+", query.lower()) if len(w) >= 3})


def matching(column: str, found: list[str]) -> str:
    return " OR ".join(f"instr(lower({column}), ?) > 0" for _ in found) or "0"


class LitigationSupport(Store):
    @tool(Effect.READ, "Search a deposition transcript for words; before_page limits it to the earlier sections.")
    def search_transcript(self, q: TranscriptQuery, key: str | None) -> Passages:
        found = words(q.query)
        with self._db() as db:
            deponent = db.execute("SELECT deponent FROM depositions WHERE deposition_id = ?", (q.deposition_id,)).fetchone()
            rows = db.execute(
                f"SELECT page, line, speaker, text FROM transcript_lines WHERE deposition_id = ? AND page < ?"
                f" AND ({matching('text', found)}) ORDER BY page, line LIMIT ?",
                (q.deposition_id, q.before_page or 10_000, *found, SEARCH_LIMIT),
            ).fetchall()
        return Passages(deponent=deponent["deponent"] if deponent else "", passages=[Passage(**dict(r)) for r in rows])

    @tool(Effect.READ, f"Transcribe the audio of up to {AUDIO_LINES} lines of one page again, for clarity where the transcript is unclear.")
    def requery_audio(self, q: AudioQuery, key: str | None) -> Passages:
        last = min(q.to_line, q.from_line + AUDIO_LINES - 1)
        with self._db() as db:
            deponent = db.execute("SELECT deponent FROM depositions WHERE deposition_id = ?", (q.deposition_id,)).fetchone()
            rows = db.execute(
                "SELECT page, line, speaker, COALESCE(audio_text, text) AS text FROM transcript_lines"
                " WHERE deposition_id = ? AND page = ? AND line BETWEEN ? AND ? ORDER BY line",
                (q.deposition_id, q.page, q.from_line, last),
            ).fetchall()
        return Passages(deponent=deponent["deponent"] if deponent else "", passages=[Passage(**dict(r)) for r in rows])

    @tool(Effect.IRREVERSIBLE, "Query a case-law source for cases; the source charges its price per query, if within max_cost_usd.")
    def query_case_law(self, q: CaseLawQuery, key: str) -> CaseLawResults:
        """Charge once per key, and only a price within what the call was allowed to spend."""
        with self._transaction() as db:
            prior = db.execute("SELECT * FROM case_law_queries WHERE idempotency_key = ?", (key,)).fetchone()
            if prior is not None:
                return self._results(db, prior, created=False)
            source = db.execute("SELECT * FROM case_law_sources WHERE source = ?", (q.source,)).fetchone()
            if source is None:
                raise RecordRefused(f"no case-law source {q.source}; nothing was charged")
            if source["price_usd"] > q.max_cost_usd:
                raise RecordRefused(f"{q.source} charges {source['price_usd']:.2f} USD a query, above the"
                                    f" {q.max_cost_usd:.2f} USD this query may cost; nothing was charged")
            found = words(q.query)
            cited = [r["citation"] for r in db.execute(
                f"SELECT citation FROM case_law WHERE rank <= ? AND ({matching('holding', found)})"
                " ORDER BY year DESC, citation LIMIT 5",
                (source["rank"], *found),
            ).fetchall()]
            db.execute(
                "INSERT INTO case_law_queries (query_id, idempotency_key, source, query, charged_usd, citations)"
                " VALUES (?,?,?,?,?,?)",
                ("CLQ-" + key_digest(key), key, q.source, q.query, source["price_usd"], json.dumps(cited)),
            )
            row = db.execute("SELECT * FROM case_law_queries WHERE idempotency_key = ?", (key,)).fetchone()
            return self._results(db, row, created=True)

    @staticmethod
    def _results(db: sqlite3.Connection, row: sqlite3.Row, *, created: bool) -> CaseLawResults:
        cited = json.loads(row["citations"])
        cases = [db.execute("SELECT citation, court, year, holding FROM case_law WHERE citation = ?", (c,)).fetchone()
                 for c in cited]
        return CaseLawResults(query_id=row["query_id"], source=row["source"], charged_usd=row["charged_usd"],
                              created=created, cases=[CaseLaw(**dict(c)) for c in cases])
