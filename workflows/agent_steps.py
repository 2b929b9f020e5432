"""The `agent` step: hand one ambiguous step to a bounded agent, as a child workflow.

A mixin of the engine's `Process`. The child gets the run's policy (tiers,
roles, grants) with a budget cut to the agent's caps and to what the run has
left; its cost comes back into the run's, and its report (answer or trail)
into the ledger. The loop itself is workflows/bounded_agent.py.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

from workflows.agents import Agent, AgentReport, AgentTask
from workflows.ledger import StepKind
from workflows.outcome import RunOutcome

with workflow.unsafe.imports_passed_through():
    from activities.llm.output_type import type_path
    from activities.policy import Budget

STEPS_PER_TURN = 4  # a turn, a tool call, a review, an approval: a safety net under the named caps


class AgentSteps:
    async def agent(self, step: str, agent: Agent, goal: str, context: BaseModel) -> AgentReport:
        """Run `agent` on `goal`; returns its report, `done` (see `answer_as`) or `escalated` with its trail."""
        started = await self._before_step(step, llm=True)
        budget = self._agent_budget(agent)
        task = AgentTask(
            process=self.name, agent=agent.name, goal=goal, context=context.model_dump(mode="json"),
            instructions=agent.instructions, output_type=type_path(agent.output), tier=agent.tier, caps=agent.caps,
            approvals=agent.approvals, facts=agent.facts, supervisor_tier=agent.supervisor_tier,
            policy=self._policy.model_copy(update={"budget": budget}),
        )
        entry = dict(step=step, kind=StepKind.AGENT, name=agent.name, tier=agent.tier, started_at=started,
                     input={"goal": goal, "context": task.context})
        try:
            outcome = await workflow.execute_child_workflow(
                "baton-agent", task, id=f"{workflow.info().workflow_id}/{step}",
                result_type=RunOutcome[AgentReport], static_summary=f"{step} · agent {task.grantee} ({agent.tier})",
            )
        except ChildWorkflowError as err:
            self._fail(entry, 1, err)
        report = outcome.result
        self._cost += report.cost_usd
        self._llm_calls += report.llm_calls
        self._tool_calls += report.tool_calls
        self._record(
            **entry, cost_usd=report.cost_usd, tokens_in=report.tokens_in, tokens_out=report.tokens_out,
            attempts=report.turns, outcome=report.status, detail=report.reason, decision=report.model_dump(mode="json"),
        )
        return report

    def _agent_budget(self, agent: Agent) -> Budget:
        """The agent's caps, cut to what the run has left of each of its own."""
        run, caps = self._budget, agent.caps

        def left(cap: str, used: float) -> float | None:
            limit = getattr(run, cap)
            return None if limit is None else max(0, limit - used)

        return Budget(
            max_cost_usd=min(caps.max_cost_usd, run.max_cost_usd - self._cost),
            max_steps=STEPS_PER_TURN * caps.max_turns + 1,
            max_llm_calls=left("max_llm_calls", self._llm_calls),
            max_tool_calls=left("max_tool_calls", self._tool_calls),
            max_wall_clock=None if run.max_wall_clock is None else run.max_wall_clock - self._elapsed(),
            max_approval_idle=run.max_approval_idle,
        )
