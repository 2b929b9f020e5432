"""The tool registry: every tool's name, typed arguments, result and declared effect.

Workflows import this to know, before scheduling, what a tool may do: `read`
tools only look; `write` tools change a system of record and must carry an
idempotency key; `irreversible` tools reach the outside world (an e-mail
cannot be unsent) and carry one too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from activities.tools import records


class Effect(StrEnum):
    READ = "read"
    WRITE = "write"
    IRREVERSIBLE = "irreversible"


@dataclass(frozen=True)
class ToolSpec:
    name: str
    effect: Effect
    args: type[BaseModel]
    result: type[BaseModel]
    description: str

    @property
    def needs_idempotency_key(self) -> bool:
        return self.effect is not Effect.READ


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "verify_identity",
            Effect.READ,
            records.IdentityQuery,
            records.IdentityCheck,
            "Match an applicant's name and document against the KYC register.",
        ),
        ToolSpec(
            "pull_credit",
            Effect.READ,
            records.CreditQuery,
            records.CreditReport,
            "Read the applicant's credit score and open defaults.",
        ),
        ToolSpec(
            "create_crm_record",
            Effect.WRITE,
            records.NewCustomer,
            records.CrmRecord,
            "Create the customer in the CRM.",
        ),
        ToolSpec(
            "send_email",
            Effect.IRREVERSIBLE,
            records.Email,
            records.OutboxMessage,
            "Queue an e-mail in the outbox for delivery.",
        ),
    )
}
