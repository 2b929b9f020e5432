"""Small processes that exist only to drive the bounded agent loop where the shipped ones do not go."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.agents import Agent, AgentCaps, AgentReport
from workflows.engine import Process
from workflows.outcome import RunOutcome, RunState

PROCESS = "test-agent-loop"


class LoopTask(BaseModel):
    agent: str = Field(description="which of the process's agents runs")
    order_id: str = "O-2001"
    forge: dict | None = Field(default=None, description="start the agent child naming this process and agent instead")


class Summary(BaseModel):
    """What the test agents answer with."""

    summary: str = Field(min_length=1, max_length=300, examples=["The order was looked up."])


LOOKUP = "Look the order up, as often as you need, then summarise it. "
# Continues as new every two turns: a four-turn conversation spans two runs of the child.
SHORT_RUNS = Agent(
    name="short-runs", instructions=LOOKUP, output=Summary, supervisor_tier=None,
    caps=AgentCaps(max_turns=8, max_tool_calls=6, turns_per_run=2),
)
# Two tool calls allowed: a third proposal ends it.
TWO_CALLS = Agent(
    name="two-calls", instructions=LOOKUP, output=Summary, supervisor_tier=None,
    caps=AgentCaps(max_turns=8, max_tool_calls=2),
)
# A model that answers with floods of proposals (tests/test_agent_policy.py): no cap of its own is near.
FLOOD = Agent(
    name="flood", instructions=LOOKUP, output=Summary, supervisor_tier=None,
    caps=AgentCaps(max_turns=8, max_tool_calls=6),
)
# Opens tickets for people (a write, keyed per proposal).
TICKETS = Agent(
    name="tickets", instructions="Open a ticket for each customer named.", output=Summary, supervisor_tier=None,
    caps=AgentCaps(max_turns=4, max_tool_calls=4),
)
AGENTS = {a.name: a for a in (SHORT_RUNS, TWO_CALLS, FLOOD, TICKETS)}


@workflow.defn(name=PROCESS)
class AgentLoop(Process):
    """Hands one goal to the named agent and returns its report as the run's result."""

    name = PROCESS
    agents = (SHORT_RUNS, TWO_CALLS, FLOOD, TICKETS)

    @workflow.run
    async def run(self, task: LoopTask) -> RunOutcome[AgentReport]:
        return await self.execute(lambda: self._delegate(task), None)

    async def _delegate(self, task: LoopTask) -> RunOutcome[AgentReport]:
        agent = AGENTS[task.agent]
        if task.forge:  # a Baton process on the queue that names an agent it does not declare
            return await workflow.execute_child_workflow(
                "baton-agent", {**task.forge, "goal": "forged", "context": {}},
                id=f"{workflow.info().workflow_id}/forged_agent",
            )
        report = await self.agent(
            f"{agent.name}_agent", agent, goal=f"Loop case {agent.name}: summarise order {task.order_id}", context=task
        )
        return self.end(RunState.COMPLETED, f"agent {report.status}: {report.reason}", report)


class HandedCall(BaseModel):
    """A tool call as a workflow hands it to the tool activity, grant included (runs from before grants came from config)."""

    grantee: str
    tool: str
    args: dict
    grant: dict


@workflow.defn(name="test-hands-its-own-grant")
class HandsItsOwnGrant:
    """Schedules the tool activity directly, handing it a grant of its own making."""

    @workflow.run
    async def run(self, call: HandedCall) -> dict:
        return await workflow.execute_activity(
            "run_tool", {"step": "forged", "idempotency_key": f"{workflow.info().workflow_id}/forged", **call.model_dump()},
            result_type=dict, start_to_close_timeout=timedelta(seconds=10), retry_policy=RetryPolicy(maximum_attempts=1),
        )
