"""The wire contract between a workflow's `tool` step and the tool activity."""

from __future__ import annotations

from pydantic import BaseModel


class ToolCall(BaseModel):
    step: str
    tool: str
    args: dict
    idempotency_key: str | None = None


class ToolResult(BaseModel):
    output: dict
    latency_ms: float
    attempt: int
