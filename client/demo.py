"""`baton demo` (what `make demo` runs): every shipped process on its example inputs.

It starts (or reuses) the local stack on `--port` (default 7233), or, when the
connection settings name a server (TEMPORAL_ADDRESS, a profile), runs a worker
on that one and starts nothing; then it starts each run in `examples/demo.json`,
gives the approval a parked run waits for (after printing the commands a
person would use) as the role's person, with a token from the local issuer
(the runs are started as DEMO_REQUESTER, so nobody approves their own), prints each outcome, ledger and Web UI link, and checks
every run ended in the state the manifest expects, then prints `baton report`
over the runs it made. Interactive, it keeps the stack up for browsing until
Ctrl-C; without a TTY it stops and exits. Its worker takes the demo's people
and grants where baton.toml names none (worker/config.py: never the default).
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from client.commands import approval_commands, awaiting_list_command
from client.credentials import TokenProvider, cli_token
from client.render import ledger_table, outcome_text
from client.report import report as runs_report
from client.report import report_text
from client.sdk import Baton, InputError, read_input
from worker.config import load
from worker.devserver import DEFAULT_PORT
from worker.shutdown import until_interrupted
from worker.stack import Stack, address_hint, given_server, given_stack, local_stack
from workflows.outcome import RunState

MANIFEST = Path("examples/demo.json")
DEMO_REQUESTER = "demo-requester"  # who starts the demo's runs: a person of no role
PARK_TIMEOUT_S = 60


class DemoApproval(BaseModel):
    by: str
    comment: str = ""


class DemoRun(BaseModel):
    process: str
    input: Path
    expect: RunState
    approve: DemoApproval | None = None


class Manifest(BaseModel):
    runs: list[DemoRun]


async def demo(
    manifest: Path = MANIFEST,
    interactive: bool | None = None,
    *,
    port: int | None = None,
    ui_port: int | None = None,
    db: Path | None = None,
) -> int:
    """Every run of the manifest; `port`, `ui_port` and `db` place the local server (none: 7233 and its file)."""
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    plan = Manifest.model_validate_json(manifest.read_text())
    async with stack_for(port, ui_port, db) as stack:
        print(banner(stack) + "\n")
        baton = Baton(stack.client, tokens=demo_tokens(stack))
        began = datetime.now(timezone.utc)
        run_ids = [await baton.start(r.process, read_input(r.input)) for r in plan.runs]
        for run, run_id in zip(plan.runs, run_ids):
            print(f"started {run_id:<32} {run.process} on {run.input}")
        for run, run_id in zip(plan.runs, run_ids):
            if run.approve:
                await give_approval(baton, run_id, run.approve)
        ok = 0
        for run, run_id in zip(plan.runs, run_ids):
            ok += await report(baton, stack.ui_url, run, run_id)
        print(f"\n{ok} of {len(plan.runs)} runs ended as expected.")
        await print_report(baton, began)
        if interactive:
            where = f"browse {stack.ui_url}" if stack.ui_url else f"the runs are on {stack.target}"
            print(f"\nThe stack stays up: {where}  (Ctrl-C to stop)")
            if steps := stack.codec_steps():
                print(steps)  # the runs' inputs and results are sealed: how a person reads them decoded
            await until_interrupted()
    return 0 if ok == len(plan.runs) else 1


def stack_for(port: int | None, ui_port: int | None, db: Path | None) -> AbstractAsyncContextManager[Stack]:
    """The server the connection settings name if they name one, else the local stack on `port`."""
    given = given_server()
    if not given:
        return local_stack(db=db, port=port or DEFAULT_PORT, ui_port=ui_port, demo=True)
    if port or ui_port or db:  # two answers to "which server": refuse rather than pick one
        raise InputError(
            f"TEMPORAL_ADDRESS or TEMPORAL_PROFILE names a server ({given}) and --port/--ui-port/--db "
            "start a local one: leave out one or the other"
        )
    return given_stack(demo=True)


def demo_tokens(stack: Stack) -> TokenProvider:
    """Tokens from the local issuer for the person a step names; with baton.toml's own [identity], BATON_TOKEN."""
    issuer = stack.issuer
    if issuer is None:
        return cli_token

    async def tokens(by: str | None) -> str:
        return issuer.mint(by or DEMO_REQUESTER)

    return tokens


def banner(stack: Stack) -> str:
    """Where the demo runs, and what another shell needs to reach it."""
    if stack.server is None:
        return (f"Baton demo: a worker on the Temporal server at {stack.target} "
                "(named by TEMPORAL_ADDRESS / TEMPORAL_PROFILE); nothing started")
    server = stack.server
    how = "reused the Temporal server" if server.reused else f"started Temporal's dev server (data: {server.db})"
    text = f"Baton demo: {how} at {stack.target} and a worker; Web UI {server.ui_url}"
    hint = address_hint(stack.target)
    return text + (f"\nOther shells reach it with {hint}, e.g. `{hint} baton inbox`" if hint else "")


async def give_approval(baton: Baton, run_id: str, approval: DemoApproval) -> None:
    status = None
    for _ in range(PARK_TIMEOUT_S * 5):
        status = await baton.status(run_id)
        if status.open_requests or status.state.is_final:
            break
        await asyncio.sleep(0.2)
    if not status or not status.open_requests:
        print(f"\n{run_id} did not park for approval (state {status.state.value if status else '?'})")
        return
    request = status.open_requests[0]
    print(f"\n{run_id} is parked: {request.ask}")
    print(f"  every open request:  {awaiting_list_command()}")
    print(f"  a person would `baton login {approval.by}` (or set BATON_TOKEN), then answer with either of:")
    for command in approval_commands(run_id, request.id):
        print(f"    {command}")
    verdict = await baton.approve(run_id, by=approval.by, request_id=request.id, comment=approval.comment)
    print(f"  the demo approves as {verdict.by!r}, with a token from the local issuer: {verdict.comment}")


async def report(baton: Baton, ui_url: str | None, run: DemoRun, run_id: str) -> bool:
    outcome = await baton.result(run_id)
    ledger = await baton.ledger(run_id)
    expected = outcome.state is run.expect
    mark = "ok" if expected else f"UNEXPECTED (expected {run.expect.value})"
    print(f"\n[{mark}] {outcome_text(run_id, outcome)}")
    print(ledger_table(ledger))
    if ui_url:
        print(f"Web UI: {ui_url}/{run_id}")
    return expected


async def print_report(baton: Baton, since: datetime) -> None:
    """`baton report` over this demo's runs, reconstructed from their histories."""
    targets = load(demo=True).latency_targets()
    data = await runs_report(baton.client, queue=baton.queue, since=since, targets=targets)
    print("\nbaton report --since <this demo>   (again later: `make dev`, then `baton report`)\n")
    print(report_text(data))
