"""The floor: bare temporalio, N no-op activities in a row, nothing of Baton.

Each activity has the retry policy and timeouts a Baton model step gets
(RETRY equals workflows.retry_policies.LLM_RETRY; the harness checks it). This
module imports only temporalio and pydantic, so the workflow sandbox re-imports
nothing of Baton for a bare run.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy

RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=4,
)


class BareRequest(BaseModel):
    steps: int
    start_to_close_s: float  # what a Baton model step gets: the worker's llm_timeout_s
    schedule_to_close_s: float  # what a Baton step gets: the wall-clock cap's remainder


@activity.defn(name="bench_noop")
async def noop(i: int) -> int:
    return i


@workflow.defn(name="bench-bare")
class BareSteps:
    """N no-op activities in a row, with a Baton model step's retry policy and timeouts."""

    @workflow.run
    async def run(self, request: BareRequest) -> int:
        done = 0
        for i in range(request.steps):
            await workflow.execute_activity(
                noop,
                i,
                start_to_close_timeout=timedelta(seconds=request.start_to_close_s),
                schedule_to_close_timeout=timedelta(seconds=request.schedule_to_close_s),
                retry_policy=RETRY,
            )
            done += 1
        return done


class ParkedShape(BaseModel):
    """A parked run's route: the activities before its decision and after it (a Baton route's, counted)."""

    before: int = 2
    after: int = 1


@workflow.defn(name="bench-bare-parked")
class BareParked:
    """The floor of a parked run: no-op activities, a wait for one update, more no-op activities.

    As many before and after the decision as the Baton route it is the floor of
    (benchmarks/parked.py counts them from a Baton run's history), so an
    approval sets off as much work on either side.
    """

    def __init__(self) -> None:
        self._approved = False

    @workflow.run
    async def run(self, request: BareRequest, shape: ParkedShape) -> int:
        options = dict(
            start_to_close_timeout=timedelta(seconds=request.start_to_close_s),
            schedule_to_close_timeout=timedelta(seconds=request.schedule_to_close_s), retry_policy=RETRY,
        )
        for i in range(shape.before):
            await workflow.execute_activity(noop, i, **options)
        await workflow.wait_condition(lambda: self._approved)
        for i in range(shape.after):
            await workflow.execute_activity(noop, shape.before + i, **options)
        return shape.before + shape.after

    @workflow.update
    def approve(self, by: str) -> str:
        self._approved = True
        return by
