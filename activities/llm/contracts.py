"""The wire contract between a workflow's `llm` step and the model activity.

Only plain data crosses. The output type travels as its import path, so the
activity validates answers (and asks for repairs) with the very pydantic model
the workflow will validate against again, deterministically, on replay too.
Prompts and answers stay in history; keys, URLs and prices never enter it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from activities.llm.conversation import Message, ToolSchema, ToolUse


class LlmRequest(BaseModel):
    """One model call as a process step asks for it."""

    step: str
    tier: str = Field(description="Named tier (fast, strong, ...) resolved by the worker's config")
    model: str | None = Field(default=None, description="Explicit model label; overrides the tier")
    system: str = ""
    prompt: str
    output_type: str = Field(description="the stable name of the step's pydantic output model (activities/llm/output_type.py)")
    tools: list[ToolSchema] = []
    history: list[Message] = Field(
        default=[], description="an agent's turns after the prompt: its proposals and the tool results"
    )
    max_output_tokens: int = Field(default=1024, gt=0)
    budget_remaining_usd: float | None = Field(
        default=None, description="what the run may still spend; a call whose worst case exceeds it is not sent"
    )
    personal: bool = Field(
        default=False, description="the prompt carries personal data: only models with personal_data = true are asked"
    )
    process: str | None = Field(
        default=None, description="whose cross-run spend cap the call counts against (activities/spend.py)"
    )
    over_cap: bool = Field(
        default=False, description="a person approved going over the cross-run cap: reserved even past it"
    )


# Never sent: "over_budget" (its worst case would overrun the run's budget) and
# "withheld" (a step carrying personal data, a model not allowed to receive it).
CallOutcome = Literal["ok", "tool_use", "invalid", "unavailable", "rejected", "over_budget", "withheld"]
NOT_SENT = ("over_budget", "withheld")


class ModelCall(BaseModel):
    """One request to one model (or one that was refused before sending, see NOT_SENT), for the ledger."""

    model: str = Field(description="the label in baton.toml")
    provider: str
    requested_model: str | None = Field(default=None, description="the provider's model name sent")
    reported_model: str | None = Field(default=None, description="the model the response says answered")
    attempt: int = Field(description="Temporal's attempt number of the step")
    turn: int = Field(default=0, description="0 = the first ask, 1.. = repair turns")
    outcome: CallOutcome
    status: int | None = None
    error: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    cost_estimate: str = Field(
        default="", description="why cost_usd is the request's worst case, not its reported usage; empty if reported"
    )
    latency_ms: float = 0.0


class LlmResult(BaseModel):
    """What the model said, who said it, every call it took, and what they cost in all."""

    output: dict | None = None
    tool_uses: list[ToolUse] = []
    tier: str
    model: str
    provider: str
    requested_model: str | None = None  # defaults: results recorded before these fields still load
    reported_model: str | None = None
    tokens_in: int
    tokens_out: int
    cached_tokens: int = 0
    cost_usd: float
    latency_ms: float
    attempt: int
    calls: list[ModelCall] = []

    @property
    def failed(self) -> list[ModelCall]:
        return [c for c in self.calls if c.outcome not in ("ok", "tool_use")]
