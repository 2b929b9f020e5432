"""A process that calls one MCP tool by name, to drive the tool step over MCP through Temporal.

Its input may name the role that approves the call first (`approve_role`: an
irreversible tool needs one) and the role asked when the call's outcome is
unknown (`unknown_role`). Also a package (`[plugins] packages = ["tests.mcp_process"]`),
for a worker started as its own process.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

from workflows.agents import Agent, AgentCaps, AgentReport
from workflows.api import AskPolicy, Package
from workflows.engine import Process
from workflows.outcome import RunOutcome, RunState

with workflow.unsafe.imports_passed_through():
    from activities.tools.mcp_servers import McpResult
    from activities.tools.registry import spec_of


class McpCall(BaseModel):
    tool: str  # SERVER.tool, as listed at worker start
    args: dict
    approve_role: str | None = None
    unknown_role: str | None = None
    timeout_s: float = 30


def asking(role: str | None) -> AskPolicy | None:
    return None if role is None else AskPolicy(roles=[role], timeout=timedelta(hours=1))


@workflow.defn(name="test-mcp-call")
class McpCallProcess(Process):
    """Calls the MCP tool its input names; the grant in the worker's config decides whether it may."""

    name = "test-mcp-call"

    @workflow.run
    async def run(self, request: McpCall) -> RunOutcome[McpResult]:
        return await self.execute(lambda: self._call(request), None)

    async def _call(self, request: McpCall) -> RunOutcome[McpResult]:
        args = spec_of(request.tool).args.model_validate(request.args)
        answer = await self.tool(
            "ask", request.tool, args, approval=asking(request.approve_role), if_unknown=asking(request.unknown_role),
            timeout=timedelta(seconds=request.timeout_s),
        )
        return self.end(RunState.COMPLETED, "answered", answer)


package = Package(name="test-mcp", processes=(McpCallProcess,))


class Paid(BaseModel):
    """What the paying agent answers with."""

    summary: str


PAY_APPROVAL = AskPolicy(roles=["compliance"], timeout=timedelta(hours=1))
PAYER = Agent(name="payer", instructions="Pay what the goal says, once.", output=Paid, supervisor_tier=None,
              caps=AgentCaps(max_turns=6, max_tool_calls=3), approvals={"crm.flaky_payment": PAY_APPROVAL})
UNGUARDED = Agent(name="unguarded", instructions="Pay what the goal says, once.", output=Paid, supervisor_tier=None,
                  caps=AgentCaps(max_turns=6, max_tool_calls=3))


class AgentPayment(BaseModel):
    agent: str


@workflow.defn(name="test-mcp-agent")
class McpAgentProcess(Process):
    """Hands a payment to an agent that holds an at-most-once MCP tool; its report is the run's result."""

    name = "test-mcp-agent"
    agents = (PAYER, UNGUARDED)

    @workflow.run
    async def run(self, task: AgentPayment) -> RunOutcome[AgentReport]:
        return await self.execute(lambda: self._delegate(task), None)

    async def _delegate(self, task: AgentPayment) -> RunOutcome[AgentReport]:
        agent = PAYER if task.agent == "payer" else UNGUARDED
        report = await self.agent(f"{agent.name}_agent", agent, goal="Pay 120 USD to account ACC-9", context=task)
        return self.end(RunState.COMPLETED, f"agent {report.status}: {report.reason}", report)
