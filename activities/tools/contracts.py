"""The wire contract between a workflow's `tool` step and the tool activity."""

from __future__ import annotations

from pydantic import BaseModel, Field

from activities.tools.grants import Grant


class ToolCall(BaseModel):
    step: str
    tool: str
    args: dict
    idempotency_key: str | None = None
    grantee: str | None = Field(default=None, description="the process or agent the grant belongs to")
    grant: Grant | None = Field(
        default=None, description="the grant the engine checked; re-checked by the activity (None: runs from before grants)"
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
