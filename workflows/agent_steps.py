"""The `agent` step: hand one ambiguous step to a bounded agent, as a child workflow.

A mixin of the engine's `Process`. The child is handed names, the goal and
what the run has left of its caps, never a policy: it takes its declaration
and policy from the worker itself (workflows/bounded_agent.py), so a caller
who starts one cannot widen them. Its cost comes back into the run's, and its
report (answer or trail) into the ledger.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

from workflows.agents import Agent, AgentReport, AgentTask, Allowance
from workflows.ledger import StepKind
from workflows.outcome import RunOutcome
from workflows.visibility import Shown

O = TypeVar("O", bound=BaseModel)


class AgentSteps:
    async def agent(self, step: str, agent: Agent[O], goal: str, context: BaseModel) -> AgentReport[O]:
        """Run `agent` on `goal`; returns its report: `done` with its answer (the agent's output type), or `escalated` with its trail."""
        started = await self._before_step(step, llm=True)
        task = AgentTask(
            process=self.name, agent=agent.name, goal=goal, context=context.model_dump(mode="json"),
            allowance=self._allowance_left(), started_by=self._starter,
        )
        entry = dict(step=step, kind=StepKind.AGENT, name=agent.name, tier=agent.tier, started_at=started,
                     input={"goal": goal, "context": task.context})
        self._publish(settle=True)  # the run waits for its agent: its cost as of now, not a batch behind
        try:
            outcome = await workflow.execute_child_workflow(
                "baton-agent", task, id=f"{workflow.info().workflow_id}/{step}",
                result_type=RunOutcome[AgentReport], static_summary=Shown(f"{step} · agent {task.grantee} ({agent.tier})"),
            )
        except ChildWorkflowError as err:
            self._fail(entry, 1, err)
        report = outcome.result
        self._cost += report.cost_usd
        self._llm_calls += report.llm_calls
        self._tool_calls += report.tool_calls
        try:
            typed = report.answering(agent.output)
        except ValidationError as err:  # the child validated it as this very model: only a foreign child's answer fails
            self._fail({**entry, "cost_usd": report.cost_usd}, report.turns, err, counted=True)
        self._record(
            **entry, cost_usd=report.cost_usd, tokens_in=report.tokens_in, tokens_out=report.tokens_out,
            attempts=report.turns, outcome=report.status, detail=report.reason, decision=report.model_dump(mode="json"),
        )
        return typed

    def _allowance_left(self) -> Allowance:
        """What the run has left of each of its caps: the most its agent may spend."""
        run = self._budget

        def left(cap: str, used: float) -> float | None:
            limit = getattr(run, cap)
            return None if limit is None else max(0, limit - used)

        return Allowance(
            max_cost_usd=run.max_cost_usd - self._cost,
            max_llm_calls=left("max_llm_calls", self._llm_calls),
            max_tool_calls=left("max_tool_calls", self._tool_calls),
            max_wall_clock=None if run.max_wall_clock is None else self._wall_clock_left(run.max_wall_clock),
            max_approval_idle=run.max_approval_idle,
        )
