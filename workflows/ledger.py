"""The per-step ledger: what each step was, what it cost, and what it decided."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.llm.contracts import ModelCall


class StepKind(StrEnum):
    LLM = "llm"
    TOOL = "tool"
    RULE = "rule"
    APPROVAL = "approval"
    AGENT = "agent"
    BUDGET = "budget"  # a budget decision: an override clamped, an extension asked; never a step


class LedgerEntry(BaseModel):
    seq: int
    step: str
    kind: StepKind
    name: str
    outcome: str
    started_at: datetime
    latency_ms: float = 0.0
    attempts: int = 1
    tier: str | None = None
    provider: str | None = None
    model: str | None = None  # the label in baton.toml, which may mean another model later
    requested_model: str | None = None  # the provider's model name the label meant when the step ran
    reported_model: str | None = None  # the model the provider's response said answered
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    cost_estimated: bool = False  # some of cost_usd is a worst case: a model request reported no valid usage
    effect: str | None = None
    idempotency_key: str | None = None
    decision: dict | None = None
    by: str | None = None  # who decided: a verified token's subject (or, in runs before tokens, the name given)
    issuer: str | None = None  # the identity provider that signed the decider's token
    kid: str | None = None  # the key it signed with
    comment: str | None = None
    detail: str = ""
    input_digest: str | None = None  # runs before keyed digests: unkeyed sha256 of the input (never exported)
    output_digest: str | None = None  # runs before keyed digests: unkeyed sha256 of `decision` (never exported)
    input: dict | None = None  # the step's input (before keyed digests: only where the policy kept full values)
    calls: list[ModelCall] = []  # every model request of an llm step, failed ones included

    @property
    def counts_as_step(self) -> bool:
        """Refusals (of decisions or tool proposals) and escalations are recorded but spend no step."""
        if self.outcome == "refused" or self.kind is StepKind.BUDGET:
            return False
        return not (self.kind is StepKind.APPROVAL and self.outcome == "escalated")

