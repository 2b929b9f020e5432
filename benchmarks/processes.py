"""What the benchmarks run on Baton: a process of N model steps, and support triage with unbounded agents.

Their bare-temporalio twin is in benchmarks/bare.py, a module of its own so that
the sandbox imports nothing of Baton for it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from types import MappingProxyType

from pydantic import BaseModel, Field
from temporalio import workflow

from workflows.agents import Agent, AgentCaps, AgentReport
from workflows.engine import Process
from workflows.outcome import RunOutcome, RunState
from baton_examples.support_triage.contracts import SupportRequest, Triaged
from baton_examples.support_triage.workflow import SupportTriage

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
    outputs = (Note,)

    @workflow.run
    async def run(self, request: StepsRequest) -> RunOutcome[Note]:
        return await self.execute(lambda: self._model_steps(request), None)

    async def _model_steps(self, request: StepsRequest) -> RunOutcome[Note]:
        note = Note(text="none")
        for i in range(request.steps):
            note = await self.llm(f"step_{i + 1}", f"Answer ok to request {i + 1}", Note)
        return self.end(RunState.COMPLETED, "done", note)


# ----- the unbounded agent loop of benchmarks/cost.py -------------------------------------

LOOP_TURNS = 40  # "unbounded": agent caps raised this high; the looping script runs until it reaches them
UNBOUNDED_TRIAGE = "bench-support-triage-unbounded"
UNBOUNDED_CAPS = AgentCaps(
    max_turns=LOOP_TURNS, max_tool_calls=LOOP_TURNS, max_cost_usd=100.0, ttl=timedelta(hours=1),
)


# Read-only, so the worker's check passes this module through the sandbox as it does the shipped ones
# (a benchmark must not pay a per-run import Baton's own processes no longer pay).
UNBOUNDED_AGENTS = MappingProxyType({a.name: replace(a, caps=UNBOUNDED_CAPS) for a in SupportTriage.agents})


@workflow.defn(name=UNBOUNDED_TRIAGE)
class UnboundedTriage(SupportTriage):
    """Support triage whose agents' caps are raised very high: what an agent loop costs without walls.

    A process of its own name that declares its own agents: an agent's caps come
    from what its process declares, as the worker reads it (worker/agent_policy.py),
    never from what a run hands it. benchmarks/cost.py grants them as triage's are.
    """

    name = UNBOUNDED_TRIAGE
    agents = tuple(UNBOUNDED_AGENTS.values())

    @workflow.run
    async def run(self, request: SupportRequest) -> RunOutcome[Triaged]:
        return await self.execute(lambda: self._triage(request), request.budget)

    async def agent(self, step: str, agent: Agent, goal: str, context: BaseModel) -> AgentReport:
        return await super().agent(step, UNBOUNDED_AGENTS[agent.name], goal, context)
