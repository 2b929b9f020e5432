"""What the benchmarks run: a Baton process of N model steps, and its bare-temporalio twin.

The twin has the same shape with nothing of Baton in it: N activities in a row,
each with the retry policy and timeouts a Baton model step gets, on a worker with
the same settings. The difference between the two is what Baton costs per step.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import activity, workflow

from workflows.agents import Agent, AgentCaps, AgentReport
from workflows.engine import Process
from workflows.outcome import RunOutcome, RunState
from workflows.retry_policies import LLM_RETRY
from workflows.support_triage import SupportRequest, SupportTriage, Triaged

STEPS_PROCESS = "bench-steps"


class StepsRequest(BaseModel):
    steps: int = Field(ge=1)


class Note(BaseModel):
    """A model step's answer: small, like a classification or a short extraction."""

    text: str = Field(min_length=1, max_length=200, examples=["ok"])


@workflow.defn(name=STEPS_PROCESS)
class BatonSteps(Process):
    """N model steps in a row, each on the fast tier of the offline provider."""

    name = STEPS_PROCESS

    @workflow.run
    async def run(self, request: StepsRequest) -> RunOutcome[Note]:
        return await self.execute(lambda: self._steps(request), None)

    async def _steps(self, request: StepsRequest) -> RunOutcome[Note]:
        note = Note(text="none")
        for i in range(request.steps):
            note = await self.llm(f"step_{i + 1}", f"Answer ok to request {i + 1}", Note)
        return self.end(RunState.COMPLETED, "done", note)


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
                retry_policy=LLM_RETRY,
            )
            done += 1
        return done


# ----- the unbounded agent loop of benchmarks/cost.py -------------------------------------

LOOP_TURNS = 40  # "unbounded": agent caps raised this high; the looping script runs until it reaches them
UNBOUNDED_TRIAGE = "bench-support-triage-unbounded"
UNBOUNDED_CAPS = AgentCaps(
    max_turns=LOOP_TURNS, max_tool_calls=LOOP_TURNS, max_cost_usd=100.0, ttl=timedelta(hours=1),
)


@workflow.defn(name=UNBOUNDED_TRIAGE)
class UnboundedTriage(SupportTriage):
    """Support triage whose agents' caps are raised very high: what an agent loop costs without walls.

    It keeps the process name `support-triage`, so its grants and budget are the shipped process's.
    """

    @workflow.run
    async def run(self, request: SupportRequest) -> RunOutcome[Triaged]:
        return await self.execute(lambda: self._triage(request), request.budget)

    async def agent(self, step: str, agent: Agent, goal: str, context: BaseModel) -> AgentReport:
        return await super().agent(step, replace(agent, caps=UNBOUNDED_CAPS), goal, context)
