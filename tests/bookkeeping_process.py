"""A process that only keeps books: it records many ledger entries in one run, counting what each one reads back."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, Field
from temporalio import workflow

from workflows.engine import Process
from workflows.ledger import LedgerEntry, StepKind
from workflows.outcome import RunOutcome, RunState

PROCESS = "test-bookkeeping"


class Books(BaseModel):
    entries: int = Field(gt=100)


class Reads(BaseModel):
    """Ledger entries read back while recording the first and the last `window` entries, and the steps counted."""

    window: int
    early: int
    late: int
    steps: int


class CountingLedger(list):
    """A ledger that counts the entries any scan of it visits."""

    visits = 0

    def __iter__(self) -> Iterator[LedgerEntry]:
        for entry in super().__iter__():
            self.visits += 1
            yield entry


@workflow.defn(name=PROCESS)
class Bookkeeping(Process):
    name = PROCESS

    @workflow.run
    async def run(self, books: Books) -> RunOutcome[Reads]:
        return await self.execute(lambda: self._keep(books), None)

    async def _keep(self, books: Books, window: int = 50) -> RunOutcome[Reads]:
        ledger = CountingLedger()
        self._adopt_ledger(ledger)
        visits = []
        for i in range(books.entries):
            if i in (window, books.entries - window):
                visits.append(ledger.visits)
            refused = i % 2 == 0  # half are refusals, which spend no step
            self._record(step=f"s{i}", kind=StepKind.TOOL, name="lookup_order", started_at=workflow.now(),
                         outcome="refused" if refused else "ok", input={"i": i})
        reads = Reads(window=window, early=visits[0], late=ledger.visits - visits[1], steps=self._steps_taken())
        return self.end(RunState.COMPLETED, "kept", reads)
