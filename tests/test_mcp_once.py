"""MCP writes are done once: retried only with Baton's key or when idempotent, else at most once, an unknown outcome to a person.

Through Temporal and the official SDK's server (tests/mcp_server.py), over
stdio and streamable HTTP. A lost answer is the server answering only after
the worker's read timeout (`timeout_s`); the server's journal counts what it
was asked to do, so a second payment or note would be seen.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from activities.tools.grants import Grant
from activities.tools.mcp_servers import McpServerSettings, McpSettings, McpToolSettings
from activities.tools.registry import TOOLS
from client.sdk import Baton, UnknownRun
from tests.conftest import REVIEWERS, running_worker
from activities.llm.scripted import CallTool, ModelTurn
from client.testkit import process_test_env
from tests.mcp_process import AgentPayment, McpAgentProcess, McpCall, McpCallProcess, Paid
from tests.stack_process import free_port
from tests.test_mcp_tools import SERVER, wait_for_port
from worker.config import BatonConfig, install_mcp_tools
from workflows.outcome import RunState

READ_TIMEOUT_S = 2.0  # the worker's wait for an answer; the server's lost answers take longer (LOST_S)
KEYED = {"add_note": McpToolSettings(effect="write", idempotency_key_argument="request_key"),
         "add_note_by_meta": McpToolSettings(effect="write", idempotency_key_in_meta=True)}


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal.jsonl"


def calls(journal: Path, tool: str) -> list[dict]:
    lines = journal.read_text().splitlines() if journal.exists() else []
    return [e for e in map(json.loads, lines) if e["tool"] == tool]


@pytest.fixture(params=["stdio", "http"])
def server(request: pytest.FixtureRequest, journal: Path) -> Iterator[McpServerSettings]:
    """The server over each transport, journaling to this test's file, with a short read timeout."""
    if request.param == "stdio":
        yield McpServerSettings(command=sys.executable, args=[str(SERVER), "stdio", "--journal", str(journal)],
                                timeout_s=READ_TIMEOUT_S, tools=KEYED)
        return
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), "http", str(port), "--journal", str(journal)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(proc, port)
        yield McpServerSettings(url=f"http://127.0.0.1:{port}/mcp", timeout_s=READ_TIMEOUT_S, tools=KEYED)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def with_server(config: BatonConfig, server: McpServerSettings, *tools: str) -> BatonConfig:
    return config.model_copy(update={
        "mcp": McpSettings(servers={"crm": server}),
        "grants": {**config.grants, "test-mcp-call": Grant(tools=[f"crm.{t}" for t in tools])},
    })


async def start(time_env, w, call: McpCall) -> tuple[Baton, str]:
    handle = await time_env.client.start_workflow(
        McpCallProcess.run, call, id=f"mcp-{uuid.uuid4().hex[:8]}", task_queue=w.task_queue)
    return Baton(time_env.client, w.task_queue), handle.id


async def parked_on(baton: Baton, run_id: str, request_id: str) -> None:
    """Wait (time-skipping) until the run asks `request_id`."""
    for _ in range(600):
        try:
            status = await baton.status(run_id)
        except UnknownRun:  # an agent's child, not started yet
            await asyncio.sleep(0.05)
            continue
        if any(r.id == request_id for r in status.open_requests):
            return
        assert status.state.value == "running", status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never asked {request_id}")


async def test_effects_and_retry_safety_come_from_annotations_and_config(journal):
    await install_mcp_tools(BatonConfig(mcp=McpSettings(servers={"crm": McpServerSettings(
        command=sys.executable, args=[str(SERVER), "stdio"], tools=KEYED)})))
    once = {name.removeprefix("crm."): spec.at_most_once for name, spec in TOOLS.items() if name.startswith("crm.")}
    assert once == {"lookup_customer": False, "tag_customer": False, "big_report": False, "whoami": False,
                    "wire_money": True, "post_payment": True, "flaky_payment": True,
                    "add_note": False, "add_note_by_meta": False}


async def test_a_caller_may_not_set_the_key_argument_itself():
    """Baton fills the key: a caller (or a model) that names it is refused, so it cannot reuse another call's key."""
    await install_mcp_tools(BatonConfig(mcp=McpSettings(servers={"crm": McpServerSettings(
        command=sys.executable, args=[str(SERVER), "stdio"], tools=KEYED)})))
    args = TOOLS["crm.add_note"].args
    assert args.model_validate({"customer_id": "c-1", "text": "hi"})
    with pytest.raises(ValidationError, match="request_key"):
        args.model_validate({"customer_id": "c-1", "text": "hi", "request_key": "someone-elses"})


@pytest.mark.parametrize("tool", ["add_note", "add_note_by_meta"])
async def test_a_keyed_write_whose_answer_is_lost_is_retried_with_the_same_key_and_done_once(
    time_env, config, server, journal, tool
):
    async with running_worker(time_env.client, with_server(config, server, tool), extra_workflows=(McpCallProcess,)) as w:
        baton, run_id = await start(time_env, w, McpCall(tool=f"crm.{tool}", args={"customer_id": "c-1", "text": "hi"}))
        outcome = await baton.result(run_id)
        (entry,) = [e for e in await baton.ledger(run_id) if e.step == "ask"]
    assert outcome.state is RunState.COMPLETED, outcome.reason
    sent = calls(journal, tool)
    assert len(sent) == 2 and sent[0]["key"] == sent[1]["key"] == f"{run_id}/ask"  # one key, so done once
    assert outcome.result["text"] == f"already written for {run_id}/ask"
    assert (entry.outcome, entry.attempts) == ("ok", 2)


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_an_unanswered_payment_is_not_repeated_until_a_person_says_so(time_env, config, server, journal, decision):
    payment = McpCall(tool="crm.flaky_payment", args={"account": "ACC-9", "amount_usd": 120.0},
                      approve_role="compliance", unknown_role="compliance")
    async with running_worker(time_env.client, with_server(config, server, "flaky_payment"),
                              extra_workflows=(McpCallProcess,)) as w:
        baton, run_id = await start(time_env, w, payment)
        await parked_on(baton, run_id, "ask.approval")
        await baton.approve(run_id, by=REVIEWERS[0], request_id="ask.approval")
        await parked_on(baton, run_id, "ask.unknown")
        assert len(calls(journal, "flaky_payment")) == 1  # sent once, and not again on its own
        unknown = [e for e in await baton.ledger(run_id) if e.step == "ask" and e.outcome == "unknown"]
        assert len(unknown) == 1 and "outcome unknown" in unknown[0].detail
        send = baton.approve if decision == "approve" else baton.reject
        await send(run_id, by=REVIEWERS[1], request_id="ask.unknown", comment="checked the ledger of ACC-9")
        outcome = await baton.result(run_id)
    if decision == "approve":
        assert outcome.state is RunState.COMPLETED, outcome.reason
        assert len(calls(journal, "flaky_payment")) == 2  # a person checked it had not happened, and said send again
    else:
        assert outcome.state is RunState.REJECTED, outcome.reason
        assert len(calls(journal, "flaky_payment")) == 1


async def test_an_at_most_once_tool_with_nobody_to_settle_it_is_refused_before_sending(time_env, config, journal):
    settings = McpServerSettings(command=sys.executable, args=[str(SERVER), "stdio", "--journal", str(journal)],
                                 tools={"post_payment": McpToolSettings(effect="write")})
    async with running_worker(time_env.client, with_server(config, settings, "post_payment"),
                              extra_workflows=(McpCallProcess,)) as w:
        baton, run_id = await start(time_env, w, McpCall(tool="crm.post_payment", args={"account": "A", "amount_usd": 1}))
        outcome = await baton.result(run_id)
    assert outcome.state is RunState.FAILED
    assert "runs at most once" in outcome.reason and "if_unknown" in outcome.reason
    assert calls(journal, "post_payment") == []


async def test_an_http_servers_headers_come_from_the_environment(time_env, config, monkeypatch):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), "http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(proc, port)
        monkeypatch.setenv("BATON_TEST_MCP_TOKEN", "Bearer s3cret-from-env")
        settings = McpServerSettings(url=f"http://127.0.0.1:{port}/mcp",
                                     headers_from_env={"Authorization": "BATON_TEST_MCP_TOKEN"})
        async with running_worker(time_env.client, with_server(config, settings, "whoami"),
                                  extra_workflows=(McpCallProcess,)) as w:
            baton, run_id = await start(time_env, w, McpCall(tool="crm.whoami", args={}))
            outcome = await baton.result(run_id)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert outcome.result["text"] == "Bearer s3cret-from-env"


def paying_model(turn: ModelTurn):
    """Propose the payment once; answer when the tool has answered or was refused."""
    if not turn.results("crm.flaky_payment"):
        return CallTool(name="crm.flaky_payment", arguments={"account": "ACC-9", "amount_usd": 120.0})
    return Paid(summary="done")


async def run_agent(time_env, issuer, config, tmp_path, agent: str, decide_unknown: str | None):
    config = with_server(config, McpServerSettings(
        command=sys.executable, args=[str(SERVER), "stdio", "--journal", str(tmp_path / "journal.jsonl")],
        timeout_s=READ_TIMEOUT_S), "flaky_payment")
    config = config.model_copy(update={"grants": {**config.grants, f"test-mcp-agent/{agent}": Grant(tools=["crm.flaky_payment"])}})
    async with process_test_env(config, model=paying_model, env=time_env, issuer=issuer, directory=tmp_path / "kit",
                                extra_workflows=(McpAgentProcess,)) as kit:
        handle = await time_env.client.start_workflow(
            McpAgentProcess.run, AgentPayment(agent=agent), id=f"mcp-agent-{uuid.uuid4().hex[:6]}",
            task_queue=kit.worker.task_queue)
        child = f"{handle.id}/{agent}_agent"
        if decide_unknown is not None:
            await parked_on(kit.baton, child, "turn-1.crm.flaky_payment.approval")
            await kit.baton.approve(child, by=REVIEWERS[0], request_id="turn-1.crm.flaky_payment.approval")
            await parked_on(kit.baton, child, "turn-1.crm.flaky_payment.unknown")
            assert len(calls(tmp_path / "journal.jsonl", "flaky_payment")) == 1
            send = kit.baton.approve if decide_unknown == "approve" else kit.baton.reject
            await send(child, by=REVIEWERS[1], request_id="turn-1.crm.flaky_payment.unknown")
        outcome = await kit.baton.result(handle.id)
    return outcome.result, calls(tmp_path / "journal.jsonl", "flaky_payment")


@pytest.mark.parametrize("decision, sent", [("approve", 2), ("reject", 1)])
async def test_an_agents_unanswered_payment_waits_for_a_person(time_env, issuer, config, tmp_path, decision, sent):
    report, journal = await run_agent(time_env, issuer, config, tmp_path, "payer", decision)
    assert len(journal) == sent
    kinds = [(t["kind"], t["tool"]) for t in report["trail"]]
    assert ("unknown", "crm.flaky_payment") in kinds
    assert (("observed", "crm.flaky_payment") in kinds) == (decision == "approve")


async def test_an_agent_may_not_call_an_at_most_once_tool_nobody_could_settle(time_env, issuer, config, tmp_path):
    report, journal = await run_agent(time_env, issuer, config, tmp_path, "unguarded", None)
    assert journal == []
    (refused,) = [t for t in report["trail"] if t["kind"] == "refused"]
    assert "runs at most once" in refused["detail"]
