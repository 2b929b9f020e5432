"""Tools from MCP servers (issue 19, item 1, first slice): listed with their effects, granted or refused, called.

The servers are the official SDK's own (tests/mcp_server.py, MCPServer), started
by the tests over stdio (the worker spawns it per session) and streamable HTTP
(a process of its own on a free port).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from activities.tools.grants import Grant
from activities.tools.mcp_servers import McpServerSettings, McpSettings
from activities.tools.registry import TOOLS, Effect
from client.cli import parser
from client.sdk import Baton
from tests.conftest import running_worker
from tests.mcp_process import McpCall, McpCallProcess
from tests.stack_process import free_port
from worker.config import BatonConfig, ConfigError, install_mcp_tools
from workflows.outcome import RunState

SERVER = Path(__file__).with_name("mcp_server.py")
EFFECTS = {
    "lookup_customer": Effect.READ,        # readOnlyHint
    "tag_customer": Effect.WRITE,          # destructiveHint false + idempotentHint
    "wire_money": Effect.IRREVERSIBLE,     # no annotations: unknown is irreversible
    "big_report": Effect.READ,
    "whoami": Effect.READ,
    "post_payment": Effect.IRREVERSIBLE,
    "flaky_payment": Effect.IRREVERSIBLE,
    "add_note": Effect.IRREVERSIBLE,       # destructiveHint false, but not idempotent: a repeat would add a second
    "add_note_by_meta": Effect.IRREVERSIBLE,
}


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The MCP server over streamable HTTP, in its own process; its endpoint's URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), "http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(proc, port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_for_port(proc: subprocess.Popen, port: int, timeout_s: float = 20) -> None:
    """Until the server accepts connections; RuntimeError if it exits or takes longer."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the MCP test server did not start on port {port}") from None
            time.sleep(0.1)


def stdio() -> McpServerSettings:
    return McpServerSettings(command=sys.executable, args=[str(SERVER), "stdio"])


@pytest.fixture(params=["stdio", "http"])
def server(request: pytest.FixtureRequest) -> McpServerSettings:
    """The same server over each transport."""
    if request.param == "stdio":
        return stdio()
    return McpServerSettings(url=request.getfixturevalue("http_server"))


async def test_a_servers_tools_are_listed_with_their_effects(server: McpServerSettings):
    config = BatonConfig(mcp=McpSettings(servers={"crm": server}))
    await install_mcp_tools(config)
    assert {name: TOOLS[f"crm.{name}"].effect for name in EFFECTS} == EFFECTS


async def test_baton_tools_lists_them_with_effects_the_config_may_override(tmp_path, capsys):
    toml = tmp_path / "baton.toml"
    toml.write_text(f"""
[mcp.servers.crm]
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(SERVER))}, "stdio"]
tools = {{ lookup_customer = {{ effect = "irreversible" }} }}

[grants.sales-followup]
tools = ["crm.tag_customer"]
""")
    args = parser().parse_args(["tools", "--json", "--demo", "--config", str(toml)])
    assert await args.func(args) == 0
    catalog = {t["name"]: t for t in json.loads(capsys.readouterr().out)["tools"]}
    listed = {name.removeprefix("crm."): t["effect"] for name, t in catalog.items() if name.startswith("crm.")}
    assert listed == {**EFFECTS, "lookup_customer": "irreversible"}
    assert catalog["crm.tag_customer"]["granted_to"] == ["sales-followup"]
    assert catalog["crm.wire_money"]["idempotency"].startswith("at most once")  # no annotations: never repeated blindly
    assert catalog["crm.tag_customer"]["idempotency"] == "per step"


@pytest.mark.parametrize("table, message", [
    ({}, "give either command (stdio) or url"),
    ({"command": "x", "url": "http://h/mcp"}, "give either command (stdio) or url"),
    ({"url": "http://h/mcp", "headers_from_env": {"Authorization": "Bearer abc"}}, "no environment variable name"),
    ({"command": "x", "headers_from_env": {"A": "B"}}, "headers_from_env is for a url server"),
    ({"url": "ftp://h/mcp"}, "should match pattern"),
])
def test_a_bad_server_table_is_refused_when_read(table: dict, message: str):
    with pytest.raises(ValidationError, match=re.escape(message)):
        McpSettings.model_validate({"servers": {"crm": table}})


async def test_a_server_that_cannot_be_listed_stops_the_start_in_one_line(tmp_path):
    config = BatonConfig(mcp=McpSettings(servers={"crm": McpServerSettings(command=str(tmp_path / "absent"))}))
    with pytest.raises(ConfigError, match=r"^mcp\.servers\.crm: cannot list its tools") as caught:
        await install_mcp_tools(config)
    assert "\n" not in str(caught.value)


async def test_a_header_from_an_unset_variable_stops_the_start(http_server: str, monkeypatch):
    monkeypatch.delenv("BATON_TEST_MCP_TOKEN", raising=False)
    settings = McpServerSettings(url=http_server, headers_from_env={"Authorization": "BATON_TEST_MCP_TOKEN"})
    with pytest.raises(ConfigError, match="BATON_TEST_MCP_TOKEN is not set"):
        await install_mcp_tools(BatonConfig(mcp=McpSettings(servers={"crm": settings})))


async def test_a_grant_of_a_tool_the_server_does_not_list_is_refused_at_start():
    """Reading the file cannot know a server's tools; listing them at start judges the grant, and refuses it."""
    config = BatonConfig(mcp=McpSettings(servers={"crm": stdio()}),
                         grants={"sales-followup": Grant(tools=["crm.no_such_tool"])})
    assert config.bad_grants() == []
    with pytest.raises(ConfigError, match=r"^grants\.sales-followup\.tools: no tool 'crm\.no_such_tool'"):
        await install_mcp_tools(config)


async def run_call(time_env, config: BatonConfig, call: McpCall):
    async with running_worker(time_env.client, config, extra_workflows=(McpCallProcess,)) as w:
        handle = await time_env.client.start_workflow(
            McpCallProcess.run, call, id=f"mcp-{uuid.uuid4().hex[:8]}", task_queue=w.task_queue)
        return await Baton(time_env.client, w.task_queue).result(handle.id)


async def test_a_granted_read_tool_is_called_through_a_process(time_env, config, server):
    config = config.model_copy(update={
        "mcp": McpSettings(servers={"crm": server}),
        "grants": {**config.grants, "test-mcp-call": Grant(tools=["crm.lookup_customer"])},
    })
    outcome = await run_call(time_env, config, McpCall(tool="crm.lookup_customer", args={"customer_id": "c-1"}))
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert "Ada Ltd" in outcome.result["text"]


async def test_an_ungranted_tool_is_refused_before_it_is_sent(time_env, config, server):
    config = config.model_copy(update={
        "mcp": McpSettings(servers={"crm": server}),
        "grants": {**config.grants, "test-mcp-call": Grant(tools=["crm.lookup_customer"])},
    })
    outcome = await run_call(time_env, config, McpCall(tool="crm.big_report", args={"lines": 3}))
    assert outcome.state is RunState.FAILED
    assert "crm.big_report is not granted to test-mcp-call" in outcome.reason


async def test_a_large_answer_is_cut_to_the_bound(time_env, config):
    config = config.model_copy(update={
        "mcp": McpSettings(servers={"crm": stdio()}),
        "grants": {**config.grants, "test-mcp-call": Grant(tools=["crm.big_report"])},
    })
    outcome = await run_call(time_env, config, McpCall(tool="crm.big_report", args={"lines": 50_000}))
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert outcome.result["truncated"] is True
    assert len(outcome.result["text"]) == 16_000
