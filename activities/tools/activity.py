"""The one activity through which every tool call passes.

It checks the call against the caller's grant in the worker's own config
(never a grant the workflow hands it: a workflow's say-so is no policy, and
a grantee the config does not know is refused), re-validates the arguments
against the tool's declared type, refuses a write without an idempotency key,
and dispatches to the system of record that implements the tool (the method
of the tool's name on the worker's systems: `Implementations` gathers each
installed package's). None of these refusals is retried: no
retry turns an ungranted or invalid call into an allowed one.

A tool that runs at most once (registry: `at_most_once`) gets one attempt,
here as well as in the workflow's retry policy: a second attempt is refused
as `OutcomeUnknown`, and so is a first that failed after the call may have
been sent. Only a call known not to have left (`ToolNotSent`) or answered
with a refusal is a plain error. An agent's tool output above
`[payloads] inline_max_bytes` is marked with its size, so the agent records a
preview of it; the output itself, in this activity's result, goes to the
shared payload store, not history (worker/payload_store.py). Every
attempt, refused or not, is timed and counted on Baton's step meters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm.telemetry import StepTelemetry
from activities.tools.contracts import RecordRefused, ToolCall, ToolNotSent, ToolResult
from activities.tools.grants import Grant
from activities.tools.registry import TOOLS, tools_of


class Implementations:
    """The tools this worker can run, by name: each package's systems object answers the tools it declares."""

    def __init__(self, systems: Iterable[object], more: dict[str, Callable] | None = None) -> None:
        """`more`: tools implemented outside a package's systems (an MCP server's, by name)."""
        self._by_tool: dict[str, Callable] = dict(more or {})
        for owner in systems:
            for name in tools_of(owner):
                if name in self._by_tool:
                    raise ValueError(f"tool {name!r} is implemented twice (two packages' systems, or an MCP server)")
                self._by_tool[name] = getattr(owner, name)

    def __getattr__(self, name: str) -> Callable:
        try:
            return self.__dict__["_by_tool"][name]
        except KeyError:
            raise AttributeError(name) from None


class ToolActivities:
    def __init__(
        self, systems: object, inline_max_bytes: int = 16384,
        telemetry: StepTelemetry | None = None, grants: dict[str, Grant] | None = None,
    ) -> None:
        self._grants = grants or {}
        self._systems = systems
        self._inline_max_bytes = inline_max_bytes
        self._telemetry = telemetry or StepTelemetry()

    @activity.defn(name="run_tool")
    def run_tool(self, call: ToolCall) -> ToolResult:
        with self._telemetry.step({"baton.step": call.step, "baton.tool": call.tool}):
            return self._run(call)

    def _run(self, call: ToolCall) -> ToolResult:
        spec = TOOLS.get(call.tool)
        if spec is None:
            raise _refused(f"unknown tool {call.tool!r}", "UnknownTool")
        grant = self._grants.get(call.grantee) if call.grantee is not None else None
        if grant is None:
            raise _refused(f"{call.grantee!r} has no grant in this worker's config: {call.tool} not run", "UnknownGrantee")
        problem = grant.refusal(call.grantee, call.tool, call.args)
        if problem:
            raise _refused(problem, "ToolNotGranted")
        if spec.needs_idempotency_key and not call.idempotency_key:
            raise _refused(f"{spec.effect} tool {call.tool!r} called without an idempotency key", "MissingIdempotencyKey")
        try:
            args = spec.args.model_validate(call.args)
        except ValidationError as err:
            raise _refused(f"invalid arguments for {call.tool!r}: {err}", "InvalidToolArgs") from None
        implementation = getattr(self._systems, spec.name, None)
        if implementation is None:
            raise _refused(f"no system on this worker implements {call.tool!r}", "NoImplementation")
        if spec.at_most_once and activity.info().attempt > 1:
            raise _refused(f"{call.tool} runs at most once and attempt 1 did not answer: its outcome is unknown, "
                           "not repeated", "OutcomeUnknown")
        started = time.perf_counter()
        try:
            output = implementation(args, call.idempotency_key).model_dump(mode="json")
        except RecordRefused as err:
            raise _refused(f"{call.tool}: {err}", "RecordRefused") from None
        except ToolNotSent as err:
            raise ApplicationError(f"{call.tool}: {err}", type="ToolNotSent") from None
        except Exception as err:
            if not spec.at_most_once:
                raise
            said = " ".join(str(err).split())[:300]
            raise _refused(f"{call.tool} was sent and did not answer ({type(err).__name__}: {said}): "
                           "its outcome is unknown, not repeated", "OutcomeUnknown") from None
        result = ToolResult(output=output, latency_ms=(time.perf_counter() - started) * 1000, attempt=activity.info().attempt)
        return self._sized(result) if call.offload else result

    def _sized(self, result: ToolResult) -> ToolResult:
        """A large output marked with its size: the agent records a preview, the model gets it whole."""
        size = len(json.dumps(result.output).encode())
        return result.model_copy(update={"payload_bytes": size}) if size > self._inline_max_bytes else result


def _refused(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)
