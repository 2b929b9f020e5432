"""Small processes that exist only to drive engine behaviour the shipped ones do not show."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.engine import Process
from workflows.outcome import ModelOutputInvalid, RunOutcome, RunState


class Draft(BaseModel):
    headline: str = Field(min_length=5, max_length=60)
    words: int = Field(ge=1)


class DraftRequest(BaseModel):
    topic: str
    unbounded_retries: bool = False


@workflow.defn(name="test-drafting")
class Drafting(Process):
    """Drafts with the model; a draft the model never gets right goes to a person."""

    name = "test-drafting"

    @workflow.run
    async def run(self, request: DraftRequest) -> RunOutcome[Draft]:
        return await self.execute(lambda: self._draft(request), None)

    async def _draft(self, request: DraftRequest) -> RunOutcome[Draft]:
        retry = RetryPolicy() if request.unbounded_retries else RetryPolicy(maximum_attempts=3)
        try:
            draft = await self.llm("draft", f"Draft a headline about {request.topic}", Draft, retry=retry)
        except ModelOutputInvalid as bad:
            review = await self.approval(
                "write_by_hand",
                ask=f"The model could not draft a valid headline ({bad.problem}). Write one?",
                context=request,
                approvers=["editors"],
                timeout=timedelta(hours=1),
            )
            return self.end(RunState.REJECTED, f"escalated to a person: {review.status.value}")
        return self.end(RunState.COMPLETED, "drafted", draft)
