"""The SQLite file every example system of record lives in, shared by the domain mixins.

One file, many domains: tests and the demo read a single database to see what
really happened. Each domain (onboarding, outbox, support desk, sales CRM)
subclasses `Store` for the connection and derives ids with `key_digest`, so an
id depends only on the idempotency key, never on the worker that wrote it.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Store:
    """One SQLite connection per worker thread, kept: a tool call costs its statements, not a connection.

    WAL with synchronous=NORMAL: a commit survives the worker being killed
    (kill -9 loses nothing committed); only the machine losing power can take
    the last commits back, the trade a system of record's own database makes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        yield conn

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
