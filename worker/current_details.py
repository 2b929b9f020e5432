"""A run's current details, rendered when someone asks for them rather than after every step.

The Web UI reads a run's current details through Temporal's built-in
`__temporal_workflow_metadata` query; the SDK keeps them for that query alone
and sends them nowhere else. Setting them with `workflow.set_current_details`
after every step rendered markdown (every value escaped, the commands to answer
quoted) that almost nobody read: a fifth of the time a run spent in its
workflow code (cProfile, 160 onboarding runs). This interceptor fills them in
on the query's answer instead, from the run as it is at that moment
(`workflow.now()` is the time of its last task, as before), so they are never
stale and cost nothing unread.

A query never adds a command, so runs replay the same whichever way their
details were made.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.worker import HandleQueryInput, Interceptor, WorkflowInboundInterceptor, WorkflowInterceptorClassInput

METADATA_QUERY = "__temporal_workflow_metadata"


class DetailsWhenAsked(Interceptor):
    """Give every workflow the query hook below."""

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _DetailsOnAnswer


class _DetailsOnAnswer(WorkflowInboundInterceptor):
    async def handle_query(self, input: HandleQueryInput) -> Any:
        answer = await super().handle_query(input)
        if input.query != METADATA_QUERY or not isinstance(answer, WorkflowMetadata):
            return answer  # Baton's own queries (status, ledger) pass untouched
        render = getattr(workflow.instance(), "current_details", None)
        if callable(render):
            answer.current_details = render()
        return answer
