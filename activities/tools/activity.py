"""The one activity through which every tool call passes.

It re-validates the arguments against the tool's declared type, refuses a
write without an idempotency key, and dispatches to the system of record.
Bad arguments are not retried: no retry turns an invalid call into a valid one.
"""

from __future__ import annotations

import time

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.tools.catalog import TOOLS
from activities.tools.contracts import ToolCall, ToolResult
from activities.tools.systems import SystemsOfRecord


class ToolActivities:
    def __init__(self, systems: SystemsOfRecord) -> None:
        self._systems = systems

    @activity.defn(name="run_tool")
    def run_tool(self, call: ToolCall) -> ToolResult:
        spec = TOOLS.get(call.tool)
        if spec is None:
            raise ApplicationError(f"unknown tool {call.tool!r}", type="UnknownTool", non_retryable=True)
        if spec.needs_idempotency_key and not call.idempotency_key:
            raise ApplicationError(
                f"{spec.effect} tool {call.tool!r} called without an idempotency key",
                type="MissingIdempotencyKey",
                non_retryable=True,
            )
        try:
            args = spec.args.model_validate(call.args)
        except ValidationError as err:
            raise ApplicationError(
                f"invalid arguments for {call.tool!r}: {err}", type="InvalidToolArgs", non_retryable=True
            )
        started = time.perf_counter()
        output = getattr(self._systems, spec.name)(args, call.idempotency_key)
        return ToolResult(
            output=output.model_dump(mode="json"),
            latency_ms=(time.perf_counter() - started) * 1000,
            attempt=activity.info().attempt,
        )
