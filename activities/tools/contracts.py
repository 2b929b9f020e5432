"""The wire contract between a workflow's `tool` step and the tool activity."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    step: str
    tool: str
    args: dict
    idempotency_key: str | None = None
    grantee: str | None = Field(
        default=None, description="the process or agent calling; the activity checks its grant in the worker's config"
    )
    offload: bool = Field(
        default=False, description="a large output may be kept out of history, returned as a payload reference"
    )


class ToolResult(BaseModel):
    output: dict
    latency_ms: float
    attempt: int
    payload_ref: str | None = Field(default=None, description="set when the output was kept out of history")
    payload_bytes: int = 0
