"""The wire contract between a workflow's `llm` step and the model activity.

Only plain data crosses: the output is described by its JSON schema, so the
activity never needs the workflow's pydantic class and the workflow validates
the answer itself (deterministically, on replay too).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class LlmRequest(BaseModel):
    """One model call as a process step asks for it."""

    step: str
    tier: str = Field(description="Named tier (fast, strong, ...) resolved by the worker's config")
    model: str | None = Field(default=None, description="Explicit model label; overrides the tier")
    system: str = ""
    prompt: str
    output_name: str
    output_schema: dict
    max_output_tokens: int = Field(default=1024, gt=0)


class FailedAttempt(BaseModel):
    """A candidate model that did not answer, kept for the ledger."""

    model: str
    provider: str
    error: str


class LlmResult(BaseModel):
    """What the model said, who said it, and what it cost."""

    output: dict
    tier: str
    model: str
    provider: str
    tokens_in: int
    tokens_out: int
    cached_tokens: int = 0
    cost_usd: float
    latency_ms: float
    attempt: int
    failed: list[FailedAttempt] = []
