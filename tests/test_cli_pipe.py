"""`baton … | head -1`: a reader that stops early ends the command quietly, whichever command it is.

Each command runs as a subprocess against the real dev server with a Baton worker polling in
the test process (tests/test_integration.py's `stack`), its stdout the write end of a pipe whose
read end is already closed: the first write fails, as it does once `head` has read its line.
That is what a shell pipeline does to a command, without its timing. The command must still
have done its work (a decision sent, a run started), then exit 141 (128 + SIGPIPE, what a
shell reports for any tool stopped by a closed pipe) with nothing on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from client.cli import EXIT_PIPE_CLOSED
from tests.conftest import ROOT, SALES_MANAGERS
from tests.test_integration import (  # noqa: F401  (stack is a fixture)
    BATON,
    CLEAR,
    COMMAND_TIMEOUT_S,
    Completed,
    Stack,
    outcome_of,
    stack,
)
from tests.test_agents import open_request
from workflows.outcome import RunState

pytestmark = pytest.mark.integration

HISTORY = ROOT / "tests" / "histories" / "sales-followup-approved.json"


async def into_closed_pipe(*args: object, env: dict[str, str]) -> Completed:
    """Run `baton ARGS` with stdout a pipe nobody reads any more, buffered as a user's would be."""
    env = {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}
    read, write = os.pipe()
    os.close(read)
    try:
        proc = await asyncio.create_subprocess_exec(
            str(BATON), *map(str, args), env=env, cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL, stdout=write, stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(write)
    _, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT_S)
    return Completed(("baton", *map(str, args)), proc.returncode, "", err.decode())


def quiet(result: Completed) -> None:
    assert (result.rc, result.err) == (EXIT_PIPE_CLOSED, ""), str(result)


async def parked_follow_up(stack: Stack) -> str:
    run_id = await stack.baton.start("sales-followup", {"deal_id": "D-501"})
    await open_request(stack.baton, run_id)
    return run_id


READS = {
    "status": ["status", "{run}"],
    "status --json": ["status", "{run}", "--json"],
    "ledger": ["ledger", "{run}"],
    "show": ["show", "{run}"],
    "inbox": ["inbox"],
    "runs": ["runs", "--json"],
    "report": ["report"],
    "audit": ["audit", "{run}"],
    "audit --history": ["audit", "sales-followup-approved", "--history", HISTORY],
    "tools": ["tools"],
    "tools --json": ["tools", "--json"],  # more than the buffer holds: the write fails inside the command
    "help": ["--help"],
}


@pytest.mark.parametrize("command", READS, ids=list(READS))
async def test_a_command_that_reads_stops_quietly_at_a_closed_pipe(stack: Stack, command: str):
    run_id = await parked_follow_up(stack)
    try:
        args = [str(a).replace("{run}", run_id) for a in READS[command]]
        quiet(await into_closed_pipe(*args, env=stack.env))
    finally:
        await stack.client.get_workflow_handle(run_id).terminate("test over")


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_a_decision_is_sent_before_the_closed_pipe_ends_the_command(stack: Stack, decision: str):
    run_id = await parked_follow_up(stack)
    quiet(await into_closed_pipe(decision, run_id, "--by", SALES_MANAGERS[0], env=stack.as_(SALES_MANAGERS[0])))
    outcome = await outcome_of(stack, run_id)
    assert outcome.state is (RunState.COMPLETED if decision == "approve" else RunState.REJECTED), outcome.reason


@pytest.mark.parametrize("wait", [False, True], ids=["start", "wait"])
async def test_a_run_is_started_before_the_closed_pipe_ends_the_command(stack: Stack, wait: bool):
    run_id = f"pipe-{os.urandom(3).hex()}"
    args = ["run", "onboarding", "--input", CLEAR, "--id", run_id, *(["--wait"] if wait else [])]
    quiet(await into_closed_pipe(*args, env=stack.env))
    outcome = await outcome_of(stack, run_id)
    assert outcome.state is RunState.COMPLETED, json.dumps(outcome.model_dump(mode="json"))
