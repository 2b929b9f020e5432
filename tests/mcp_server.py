"""An MCP server the tests start, built with the official SDK's own server (MCPServer, FastMCP before mcp 2).

Run as `python tests/mcp_server.py stdio [--journal FILE] [--hold FILE]` or
`... http PORT [--journal FILE] [--hold FILE]`. Its tools cover each effect
Baton derives from MCP annotations: a read-only lookup, an idempotent
non-destructive write, and ones that say nothing (so Baton must treat them as
irreversible and, unless told otherwise, run them at most once).

The journal (JSON lines) is the server's memory across processes (a stdio
server lives for one session): every call it received, with the idempotency
key it was given, so a test counts what was done. While the hold file exists,
`post_payment` waits after journaling, so a test can kill the worker mid-call.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("crm-stand-in")
JOURNAL: Path | None = None
HOLD: Path | None = None
META_KEY = "baton/idempotency-key"
LOST_S = 8  # longer than the tests' client read timeout: the answer is as good as lost

CUSTOMERS = {"c-1": {"name": "Ada Ltd", "tier": "gold"}}


def journal(tool: str, **seen) -> list[dict]:
    """Append this call; return every earlier call of `tool` (before this one)."""
    earlier = [json.loads(line) for line in JOURNAL.read_text().splitlines()] if JOURNAL and JOURNAL.exists() else []
    if JOURNAL is not None:
        with JOURNAL.open("a") as f:
            f.write(json.dumps({"tool": tool, "pid": os.getpid(), **seen}) + "\n")
            f.flush()
    return [e for e in earlier if e["tool"] == tool]


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


@server.tool()
def post_payment(account: str, amount_usd: float) -> str:
    """Post a payment (no annotations: irreversible, at most once). Waits while the hold file exists."""
    journal("post_payment", account=account, amount_usd=amount_usd)
    while HOLD is not None and HOLD.exists():
        time.sleep(0.05)
    return f"posted {amount_usd} to {account}"


@server.tool()
def flaky_payment(account: str, amount_usd: float) -> str:
    """Post a payment; the first call for an account answers only after the caller gave up."""
    if not journal("flaky_payment", account=account, amount_usd=amount_usd):
        time.sleep(LOST_S)  # posted, but the caller's read timeout passes first: it cannot know
    return f"posted {amount_usd} to {account}"


@server.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=False))
def add_note(customer_id: str, text: str, request_key: str) -> str:
    """Add a note once per request_key; the first call for a key answers only after the caller gave up."""
    return _once_per_key("add_note", request_key, customer_id=customer_id, text=text)


@server.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=False))
def add_note_by_meta(customer_id: str, text: str, ctx: Context) -> str:
    """As add_note, with the key in the request's _meta."""
    return _once_per_key("add_note_by_meta", (ctx.request_context.meta or {}).get(META_KEY), customer_id=customer_id, text=text)


def _once_per_key(tool: str, key: str | None, **seen) -> str:
    earlier = journal(tool, key=key, **seen)
    if key is None:
        return "no key given: written again"
    if not any(e["key"] == key for e in earlier):
        time.sleep(LOST_S)  # written; the caller's read timeout passes first, so it retries with the same key
        return f"written for {key}"
    return f"already written for {key}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def whoami(ctx: Context) -> str:
    """The Authorization header this request carried (HTTP only)."""
    return (ctx.headers or {}).get("authorization", "no authorization header")


if __name__ == "__main__":
    cli = argparse.ArgumentParser()
    cli.add_argument("transport", choices=["stdio", "http"])
    cli.add_argument("port", nargs="?", type=int)
    cli.add_argument("--journal", type=Path)
    cli.add_argument("--hold", type=Path)
    a = cli.parse_args()
    JOURNAL, HOLD = a.journal, a.hold
    if a.transport == "http":
        server.run("streamable-http", host="127.0.0.1", port=a.port)
    else:
        server.run("stdio")
