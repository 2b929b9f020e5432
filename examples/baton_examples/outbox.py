"""The outbox: e-mail queued for delivery, shared by the processes that write to people.

Sending is irreversible (an e-mail cannot be unsent), so every message is keyed
UNIQUE by the caller's idempotency key: a retried call queues it once.
"""

from __future__ import annotations

from pydantic import EmailStr, Field

from baton_examples.store import Store, key_digest
from workflows.api import PERSONAL, Contract, Effect, tool

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    message_id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, recipient TEXT NOT NULL,
    subject TEXT NOT NULL, body TEXT NOT NULL, queued_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""

TABLES = frozenset({"outbox"})


class Email(Contract):
    to: EmailStr = Field(json_schema_extra=PERSONAL)
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)


class OutboxMessage(Contract):
    message_id: str
    queued: bool = Field(description="False when the idempotency key had already queued it")


class Outbox(Store):
    @tool(Effect.IRREVERSIBLE, "Queue an e-mail in the outbox for delivery.")
    def send_email(self, e: Email, key: str) -> OutboxMessage:
        message_id = "M-" + key_digest(key)
        with self._db() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO outbox (message_id, idempotency_key, recipient, subject, body)"
                " VALUES (?,?,?,?,?)",
                (message_id, key, e.to, e.subject, e.body),
            ).rowcount
        return OutboxMessage(message_id=message_id, queued=inserted == 1)
