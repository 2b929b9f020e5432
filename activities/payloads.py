"""Large payloads kept out of workflow history, by content address.

An agent's tool can return pages of text. Put into history on every turn, that
text would carry a long conversation toward Temporal's 50 MB / 51,200-event
limits; instead the tool activity stores it here and history holds only its
digest and a preview. The model activity reads it back when it builds the
conversation, so the model still sees every word. Content-addressed, so a
retried activity writes the same row again harmlessly.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class PayloadSettings(BaseModel):
    """`[payloads]` in baton.toml."""

    model_config = ConfigDict(extra="forbid")

    db: Path = Path(".baton/payloads.db")
    inline_max_bytes: int = Field(default=4096, ge=256, description="larger agent tool outputs stay out of history")


class PayloadStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS payloads (ref TEXT PRIMARY KEY, body TEXT NOT NULL)")

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def put(self, body: str) -> str:
        ref = "sha256:" + hashlib.sha256(body.encode()).hexdigest()
        conn = self._db()
        try:
            conn.execute("INSERT OR IGNORE INTO payloads VALUES (?, ?)", (ref, body))
        finally:
            conn.close()
        return ref

    def get(self, ref: str) -> str:
        conn = self._db()
        try:
            row = conn.execute("SELECT body FROM payloads WHERE ref = ?", (ref,)).fetchone()
        finally:
            conn.close()
        if row is None:
            raise KeyError(f"payload {ref} is not in {self.path}")
        return row[0]
