"""The SQLite file every example system of record lives in, shared by the domain mixins.

One file, many domains: tests and the demo read a single database to see what
really happened. Each domain (onboarding, outbox, support desk, sales CRM)
subclasses `Store` for the connection and derives ids with `key_digest`, so an
id depends only on the idempotency key, never on the worker that wrote it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.row_factory = sqlite3.Row
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front, so a check and the write it guards see one state.

        Two workers refunding the same order cannot both pass the check; an
        exception (such as RecordRefused) rolls everything back.
        """
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


def key_digest(key: str) -> str:
    """A short stable id derived from an idempotency key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12].upper()
