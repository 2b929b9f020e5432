"""A process that calls one MCP tool by name, to drive the tool step over MCP through Temporal."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow

from workflows.engine import Process
from workflows.outcome import RunOutcome, RunState

with workflow.unsafe.imports_passed_through():
    from activities.tools.mcp_servers import McpResult
    from activities.tools.registry import spec_of


class McpCall(BaseModel):
    tool: str  # SERVER.tool, as listed at worker start
    args: dict


@workflow.defn(name="test-mcp-call")
class McpCallProcess(Process):
    """Calls the MCP tool its input names; the grant in the worker's config decides whether it may."""

    name = "test-mcp-call"

    @workflow.run
    async def run(self, request: McpCall) -> RunOutcome[McpResult]:
        return await self.execute(lambda: self._call(request), None)

    async def _call(self, request: McpCall) -> RunOutcome[McpResult]:
        args = spec_of(request.tool).args.model_validate(request.args)
        answer = await self.tool("ask", request.tool, args)
        return self.end(RunState.COMPLETED, "answered", answer)
