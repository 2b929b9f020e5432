"""The wire contract between a workflow's `tool` step and the tool activity, and what tools are written with.

`Contract` is the base for a tool's arguments and result: exactly the declared
fields, each of exactly its type. A field it does not declare is refused, not
dropped (an `"approved_by"` a model adds must not ride along looking like an
approval); `true` is no number and `"yes"` no boolean. The JSON schema the
model is shown says the same (`additionalProperties: false`). Dates and times
are the one exception a field may make (`strict=False`): they cross Temporal
as JSON, so ISO text is their form.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Contract(BaseModel):
    """A tool's arguments or result: exactly the declared fields, each of exactly its type."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class RecordRefused(Exception):
    """A system of record declined a write that must not happen (unknown order, refund above total).

    Distinct from a failure: retrying cannot make the same request acceptable,
    so the tool activity reports it as a non-retryable typed error.
    """


class ToolNotSent(Exception):
    """The call never reached the system (no connection, no session): trying again cannot do it twice."""


class ToolCall(BaseModel):
    step: str
    tool: str
    args: dict
    idempotency_key: str | None = None
    grantee: str | None = Field(
        default=None, description="the process or agent calling; the activity checks its grant in the worker's config"
    )
    offload: bool = Field(
        default=False, description="an agent's call: a large output is marked with its size (payload_bytes)"
    )


class ToolResult(BaseModel):
    output: dict
    latency_ms: float
    attempt: int
    payload_ref: str | None = Field(
        default=None, description="runs from before External Storage: the output was in the worker's SQLite store"
    )
    payload_bytes: int = Field(default=0, description="set when the output is above [payloads] inline_max_bytes")
