"""An MCP server the tests start, built with the official SDK's own server (MCPServer, FastMCP before mcp 2).

Run as `python -m tests.mcp_server stdio` or `python -m tests.mcp_server http PORT`.
Its tools cover each effect Baton derives from MCP annotations: a read-only
lookup, an idempotent non-destructive write, and one that says nothing (so
Baton must treat it as irreversible).
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("crm-stand-in")

CUSTOMERS = {"c-1": {"name": "Ada Ltd", "tier": "gold"}}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def lookup_customer(customer_id: str) -> dict:
    """A customer's name and tier."""
    return CUSTOMERS.get(customer_id, {"name": "unknown", "tier": "none"})


@server.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=True))
def tag_customer(customer_id: str, tag: str) -> str:
    """Set a tag on a customer (setting it twice changes nothing)."""
    return f"{customer_id} tagged {tag}"


@server.tool()
def wire_money(to_account: str, amount_usd: float) -> str:
    """Send money; says nothing about its effects."""
    return f"sent {amount_usd} to {to_account}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def big_report(lines: int) -> str:
    """A report as long as asked."""
    return "\n".join(f"line {i}" for i in range(lines))


if __name__ == "__main__":
    if sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
