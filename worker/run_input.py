"""A run's arguments checked before its process sees them: what would crash its task fails the run.

Baton's converter (worker/converter.py) fails a run whose input does not decode
into its model. Two starts get past any converter: no input at all (`temporal
workflow start --type onboarding` without `--input`), and a payload whose
encoding holds no JSON (`binary/null`), which Temporal decodes to None whatever
the type. The process's first line would then raise TypeError or
AttributeError and fail the workflow task on every retry: a run that never ends.
Checked here, on the worker and in Baton's replayer alike (it sits beside the converter), such a run ends at
once as an invalid input, like one the converter refused.

It also hands the run the token its start carried in the STARTER_HEADER header
(client/credentials.py puts it there), for the run to verify and record who
started it (workflows/engine.py): a header, because a workflow sees no other
part of its start but its arguments. And it hands the run its arguments, so
the engine knows which of their values are personal data (workflows/personal.py)
whatever the process's `run` does with them.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from activities.identity import STARTER_HEADER
from worker.converter import invalid_input


class RunInputCheck(Interceptor):
    """Give every workflow the argument check below."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _CheckedRun


class _CheckedRun(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        problem = mismatch(getattr(input.type, "name", input.type.__name__), input.run_fn, input.args)
        if problem:
            raise invalid_input("input", problem)
        instance = workflow.instance()
        take = getattr(instance, "take_starter_token", None)
        if take is not None:
            take(_starter_token(input.headers.get(STARTER_HEADER)))
        learn = getattr(instance, "learn_personal", None)
        if learn is not None:
            learn(*input.args)  # its personal fields stay off what Temporal shows undecoded
        return await super().execute_workflow(input)


def _starter_token(header: Any) -> str | None:
    """The header's token as text; anything else a caller put there is no token."""
    if header is None:
        return None
    try:
        token = workflow.payload_converter().from_payload(header, str)
    except Exception:  # noqa: BLE001 (a caller can put any bytes in a header: none may crash the task)
        return None
    return token if isinstance(token, str) else None


def mismatch(name: str, run_fn: Any, args: Sequence[Any]) -> str | None:
    """Why `args` cannot be the arguments of `run_fn` (None when they can): their count, or a model left empty."""
    params = [p for p in inspect.signature(run_fn).parameters.values() if p.name != "self"]
    required = [p for p in params if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    named = ", ".join(p.name for p in params)
    if not len(required) <= len(args) <= len(params):
        return f"{name} takes {len(required)} argument(s) ({named}), got {len(args)}"
    hints = typing.get_type_hints(run_fn)
    for param, arg in zip(params, args):
        if arg is None and _is_model(hints.get(param.name)):
            return f"{param.name}: no value (a payload with no JSON in it)"
    return None


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, BaseModel)

