"""Processes whose one model step counts against a cap across their runs: one per answer to a refusal."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

from workflows.api import AskPolicy, AtDeadline, OnSpendCap, Package, Process, RunOutcome, RunState

MODEL = "capped"
MAX_OUTPUT = 100  # each request's max_output_tokens: its worst case, at the model's output price  # priced by the tests at $1 per 100 output tokens, its whole max_output_tokens (tests/test_spend_cap.py)


class Ticket(BaseModel):
    text: str


class EndLabel(BaseModel):
    label: str


class WaitLabel(BaseModel):
    label: str


class AskLabel(BaseModel):
    label: str


class _Labels(Process):
    output: type[BaseModel]

    async def _label(self, ticket: Ticket) -> RunOutcome:
        label = await self.llm("label", f"Label: {ticket.text}", self.output, model=MODEL, max_output_tokens=MAX_OUTPUT)
        return self.end(RunState.COMPLETED, "labelled", label)


@workflow.defn(name="test-capped-end")
class CappedEnd(_Labels):
    name = "test-capped-end"
    outputs = (EndLabel,)
    output = EndLabel

    @workflow.run
    async def run(self, ticket: Ticket) -> RunOutcome[EndLabel]:
        return await self.execute(lambda: self._label(ticket), None)


@workflow.defn(name="test-capped-wait")
class CappedWait(_Labels):
    name = "test-capped-wait"
    outputs = (WaitLabel,)
    output = WaitLabel
    on_spend_cap = OnSpendCap.WAIT

    @workflow.run
    async def run(self, ticket: Ticket) -> RunOutcome[WaitLabel]:
        return await self.execute(lambda: self._label(ticket), None)


@workflow.defn(name="test-capped-ask")
class CappedAsk(_Labels):
    name = "test-capped-ask"
    outputs = (AskLabel,)
    output = AskLabel
    on_spend_cap = OnSpendCap.ASK
    spend_cap_approval = AskPolicy(roles=["compliance"], timeout=timedelta(hours=1), at_deadline=AtDeadline.REJECT)

    @workflow.run
    async def run(self, ticket: Ticket) -> RunOutcome[AskLabel]:
        return await self.execute(lambda: self._label(ticket), None)


CAPPED = (CappedEnd, CappedWait, CappedAsk)
package = Package(name="test-spend", processes=CAPPED)  # `[plugins] packages = ["tests.spend_processes"]`
