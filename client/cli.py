"""`baton`: start runs, watch them, decide approvals, and run the local stack.

Tables for people by default, `--json` for scripts. Bad input (unknown
process or run, unreadable or invalid input, a refused decision) prints one
line naming the problem and exits 2, having started nothing. `baton run
--wait` exits with the status of the run's end (EXIT_BY_STATE), so scripts
can branch on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from pydantic import TypeAdapter
from temporalio.client import WorkflowFailureError

from client import render
from workflows.budget import span
from client.commands import approval_commands
from activities.personal import NoAuditKey
from client.credentials import NoCredential
from client.new_process import NewProcessError
from client.sdk import (
    Baton,
    InputError,
    Refused,
    UnknownRun,
    process_spec,
    read_input,
    validate_input,
)
from worker.codec_server import CODEC_PORT_OFFSET
from worker.devserver import DEFAULT_PORT
from worker.exit import exit_now
from workflows.registry import REGISTRY
from workflows.ledger import LedgerEntry
from workflows.outcome import RunState

EXIT_BAD_INPUT = 2
EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE  # 141: what a shell reports for `yes | head -1`
EXIT_BY_STATE = {  # `baton run --wait`: how the run ended (1: Baton could not do it, 2: bad input)
    RunState.COMPLETED: 0,
    RunState.REJECTED: 3,
    RunState.ESCALATED: 4,
    RunState.TIMED_OUT: 5,
    RunState.BUDGET_EXCEEDED: 6,
    RunState.FAILED: 7,
}
EXIT_ENDED_IN_TEMPORAL = 8  # terminated, cancelled or timed out by Temporal: no Baton end at all


def emit(args: argparse.Namespace, data, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


async def cmd_run(args: argparse.Namespace) -> int:
    process_spec(args.process)
    value = validate_input(args.process, read_input(args.input))  # before any connection
    baton = await Baton.connect()
    run_id = await baton.start(args.process, value, run_id=args.id)
    if not args.wait:
        emit(args, {"run_id": run_id}, f"started {run_id}\n  baton status {run_id}")
        return 0
    try:
        outcome = await baton.result(run_id)
    except WorkflowFailureError as err:  # terminated, cancelled, timed out: Temporal ended it, not Baton
        print(f"baton: {run_id} was ended by Temporal, not by Baton: {_temporal_end(err)}", file=sys.stderr)
        return EXIT_ENDED_IN_TEMPORAL
    ledger = await baton.ledger(run_id)
    emit(
        args,
        {"run_id": run_id, **outcome.model_dump(mode="json"), "ledger": _dump_ledger(ledger)},
        render.outcome_text(run_id, outcome) + "\n" + render.ledger_table(ledger),
    )
    return EXIT_BY_STATE[outcome.state]


async def cmd_status(args: argparse.Namespace) -> int:
    baton = await Baton.connect()
    status = await baton.status(args.run)
    text = render.status_text(args.run, status)
    data = status.model_dump(mode="json")
    cap = status.budget.across_runs if status.budget else None
    if cap is not None:  # its process's cap across runs: the window every run of it shares
        window = await baton.spend_window(status.process.partition("/")[0], cap)
        text += "\n" + render.spend_line(cap, window)
        data["spend_window"] = window.model_dump(mode="json") if window else None
    for r in status.open_requests:
        text += "\n\nanswer with:\n" + "\n".join(f"  {c}" for c in approval_commands(args.run, r.id))
    emit(args, data, text)
    return 0


async def cmd_ledger(args: argparse.Namespace) -> int:
    baton = await Baton.connect()
    ledger = await baton.ledger(args.run)
    text = render.ledger_table(ledger) if ledger else render.no_steps(args.run, await baton.status(args.run))
    emit(args, _dump_ledger(ledger), text)
    return 0


async def cmd_login(args: argparse.Namespace) -> int:
    """A token for a named person from the local issuer, stored for `baton approve` and `baton run`."""
    from client.login import login

    login(args.person, args.issuer)
    emit(args, {"subject": args.person, "token_file": ".baton/token"},
         f"logged in as {args.person}: token stored in .baton/token (BATON_TOKEN, when set, comes first)")
    return 0


async def cmd_decide(args: argparse.Namespace) -> int:
    baton = await Baton.connect()
    decide = baton.approve if args.command == "approve" else baton.reject
    verdict = await decide(args.run, by=args.by, request_id=args.request, comment=args.comment)
    word = "approved" if verdict.approved else "rejected"
    emit(args, verdict.model_dump(mode="json"), f"{args.run}: {verdict.request_id} {word} by {verdict.by}")
    return 0


async def cmd_inbox(args: argparse.Namespace) -> int:
    inbox = await (await Baton.connect()).inbox(role=args.role, process=args.process)
    data = [
        {"run_id": i.run_id, "process": i.process, **i.request.model_dump(mode="json")} for i in inbox.items
    ]
    text = render.inbox_table(inbox.items)
    for run_id in inbox.unreadable:
        text += f"\n{run_id}: waiting, but no worker answered for its details"
    emit(args, {"requests": data, "unreadable": inbox.unreadable}, text)
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    status = await (await Baton.connect()).status(args.run)
    text = render.status_text(args.run, status)
    for r in status.open_requests:
        text += "\n\n" + render.request_text(r)
        text += "\nanswer with:\n" + "\n".join(f"  {c}" for c in approval_commands(args.run, r.id))
    emit(args, status.model_dump(mode="json"), text)
    return 0


async def cmd_runs(args: argparse.Namespace) -> int:
    runs = await (await Baton.connect()).runs(
        status=args.status, process=args.process, subject=args.subject, limit=args.limit
    )
    emit(args, [r.__dict__ for r in runs], render.runs_table(runs))
    return 0


async def cmd_dev(args: argparse.Namespace) -> int:
    from worker.shutdown import until_interrupted
    from worker.stack import address_hint, local_stack

    sys.stdout.reconfigure(line_buffering=True)  # the banner reaches a log or a pipe while the stack runs
    async with local_stack(config_file=args.config, db=args.db, port=args.port, ui_port=args.ui_port,
                           demo=args.demo) as stack:
        server = stack.server
        if server.reused:
            print(f"Temporal server already at {stack.target}: reusing it (its data file is its own)")
        else:
            print(f"Temporal dev server started at {stack.target} (pid {server.process.pid}, data: {server.db})")
        print(f"Web UI: {server.ui_url}")
        if steps := stack.codec_steps():
            print(steps)
        if hint := address_hint(stack.target):
            print(f"Other shells reach it with {hint}, e.g. `{hint} baton inbox`")
        version = f" as version {stack.version.to_canonical_string()} (made current)" if stack.version else ""
        print(f"Worker polling{version}; Ctrl-C stops " + ("the worker." if server.reused else "both."))
        await until_interrupted()
    print("stopped.")
    return 0


async def cmd_codec_server(args: argparse.Namespace) -> int:
    """Serve /encode and /decode for the Web UI and the CLI, to holders of a verified token (worker/codec_server.py)."""
    from activities.oidc import IdentitySettings
    from worker.codec import configured_keys
    from worker.codec_server import CodecServer, trusted_issuer
    from worker.config import ConfigError, load
    from worker.issuer import AUDIENCE, DIRECTORY
    from worker.shutdown import until_interrupted

    args.origin = args.origin or ["http://localhost:8233", "http://127.0.0.1:8233"]
    keys = configured_keys()
    if keys is None:
        raise ConfigError("no encryption key: set BATON_KEYS or BATON_KEY_FILE (or run it where `baton dev` ran)")
    identity = load(args.config, demo=args.demo).identity
    if identity is None:  # the local stack's issuer, as `baton login` finds it
        url = DIRECTORY / "url"
        if not url.exists():
            raise ConfigError("no [identity] in baton.toml and no local issuer has run here: start `baton dev`")
        identity = IdentitySettings(issuer=url.read_text().strip(), audience=AUDIENCE)
    trusted = await trusted_issuer(identity)
    with CodecServer(keys, trusted, origins=args.origin, role=args.role, port=args.port) as server:
        print(f"Codec server at {server.url} for the Web UI at {', '.join(args.origin)} (tokens from {identity.issuer}; "
              f"browsers sign in at {server.url}/login)", flush=True)
        await until_interrupted()
    return 0


async def cmd_tools(args: argparse.Namespace) -> int:
    """The inventory a governance review asks for first; reads code and baton.toml, never Temporal."""
    from client.inventory import build
    from worker.config import install_mcp_tools, load

    if args.process:
        process_spec(args.process)
    config = load(args.config, demo=args.demo)
    await install_mcp_tools(config)  # an MCP server's tools are known once it is asked
    inventory = build(config, args.process)
    emit(args, inventory.model_dump(mode="json"), render.inventory_table(inventory))
    return 0


async def cmd_audit(args: argparse.Namespace) -> int:
    """A run's audit export, reconstructed from its history (no worker needed; no server with --history)."""
    from client.audit import audit, audit_text, export_json
    from worker.connection import configured_converter
    from client.run_record import ReplayFailed, history_from_file, run_record, run_record_from_history

    _quiet_replays()
    try:
        if args.history:
            record = await run_record_from_history(history_from_file(args.run, args.history), configured_converter())
        else:
            record = await run_record((await Baton.connect()).client, args.run)
    except ReplayFailed as err:
        print(f"baton: {err}", file=sys.stderr)
        return 1
    data = audit(record)
    print(export_json(data) if args.json else audit_text(data))
    return 0


async def cmd_report(args: argparse.Namespace) -> int:
    """Per process and per step figures and the reliability score, over runs found by visibility."""
    from datetime import datetime, timezone

    from client.report import parse_since, report, report_text
    from worker.config import load

    if args.process:
        process_spec(args.process)
    since = datetime.now(timezone.utc) - parse_since(args.since) if args.since else None
    config = load(args.config, demo=args.demo)
    targets = config.latency_targets()
    _quiet_replays()
    baton = await Baton.connect()
    data = await report(baton.client, queue=baton.queue, process=args.process, since=since, targets=targets,
                        limit=args.limit)
    caps = {p: c for p, c in config.spend_caps().items() if not args.process or p == args.process}
    windows = {p: await baton.spend_window(p, c) for p, c in caps.items()}
    data["spend_caps"] = [
        {"process": p, "max_cost_usd": c.max_cost_usd, "window": span(c.window),
         "current": windows[p].model_dump(mode="json") if windows[p] else None}
        for p, c in caps.items()
    ]
    if args.json:
        from client.audit import export_json

        print(export_json(data))
    else:
        print(report_text(data))
        for p, c in caps.items():
            print(f"{p}: {render.spend_line(c, windows[p])}")
    return 0


def _quiet_replays() -> None:
    """A history that does not replay is reported in one line; the SDK's own traceback is noise here."""
    import logging

    logging.getLogger("temporalio").setLevel(logging.CRITICAL)


async def cmd_new(args: argparse.Namespace) -> int:
    """A team's own process, as a skeleton that passes its own test (client/new_process.py)."""
    from client.new_process import new_process, skeleton_size

    target = new_process(args.name, args.dir)
    files, lines = skeleton_size(target)
    emit(args, {"directory": str(target), "files": files, "lines": lines},
         f"wrote {target} ({files} files, {lines} lines); next:\n  cd {target}\n  pip install -e .\n"
         "  python -m pytest")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from client.demo import demo

    sys.stdout.reconfigure(line_buffering=True)  # each run's story as it happens, in a log or a pipe too
    return await demo(port=args.port, ui_port=args.ui_port, db=args.db)


def _temporal_end(err: WorkflowFailureError) -> str:
    """`terminated`, `cancelled`, `timeout`: how Temporal ended a run, from the cause's type."""
    return type(err.cause).__name__.removesuffix("Error").lower() if err.cause else "failed"


def _dump_ledger(ledger: list[LedgerEntry]) -> list:
    return TypeAdapter(list[LedgerEntry]).dump_python(ledger, mode="json")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="baton", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str, json: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        if json:
            c.add_argument("--json", action="store_true", help="machine-readable output")
        c.set_defaults(func=func)
        return c

    c = command("run", cmd_run, "start a run of a process")
    c.add_argument("process", help=f"one of: {', '.join(sorted(REGISTRY.known()))}")
    c.add_argument("--input", type=Path, required=True, help="JSON file with the process input")
    c.add_argument("--id", help="run id (the workflow id); default: PROCESS-KEY-RANDOM")
    c.add_argument("--wait", action="store_true", help="wait for the run to end and print its ledger")

    for name, func, help in (("status", cmd_status, "a run's state, step, cost and open approvals"),
                             ("ledger", cmd_ledger, "a run's per-step ledger")):
        command(name, func, help).add_argument("run", help="run id")

    for name in ("approve", "reject"):
        c = command(name, cmd_decide, f"{name} a run's open approval request")
        c.add_argument("run", help="run id")
        c.add_argument("--by", help="a cross-check: must be the subject of your token (BATON_TOKEN or `baton login`)")
        c.add_argument("--request", help="request id (needed when several are open)")
        c.add_argument("--comment", default="", help="why")

    c = command("login", cmd_login, "get a token for a person from `baton dev`'s local issuer (kept in .baton/token)")
    c.add_argument("person", help="who you are: a name in baton.toml's [roles] tables, or any other name (no roles)")
    c.add_argument("--issuer", help="the local issuer's URL (default: the one `baton dev` runs, from .baton/issuer/url)")

    c = command("inbox", cmd_inbox, "every open approval request across runs, oldest first")
    c.add_argument("--role", help="only requests this role is asked")
    c.add_argument("--process", help="only this process")

    command("show", cmd_show, "a run's open approval requests with their context").add_argument("run", help="run id")

    c = command("runs", cmd_runs, "list Baton runs, newest first")
    c.add_argument("--status", help="running, awaiting_approval, completed, rejected, ...")
    c.add_argument("--process", help="only this process")
    c.add_argument("--subject", help="only runs about this person (their e-mail; matched by its keyed digest)")
    c.add_argument("--limit", type=int, default=50)

    # dev and demo are for a person (a stack to keep up, a guided tour): no --json; scripts use
    # `run --wait --json`, `report --json` and `audit --json` for the same facts.
    c = command("dev", cmd_dev, "run Temporal's dev server and a worker until Ctrl-C", json=False)
    stack_options(c, port=DEFAULT_PORT)
    config_options(c)

    c = command("codec-server", cmd_codec_server, "decode payloads for the Web UI and the temporal CLI, "
                "for callers with a token from the identity provider", json=False)
    c.add_argument("--port", type=int, default=DEFAULT_PORT + CODEC_PORT_OFFSET,
                   help=f"its HTTP port on loopback (default {DEFAULT_PORT + CODEC_PORT_OFFSET})")
    c.add_argument("--origin", action="append", help="the Web UI's origin, allowed by CORS (repeatable; "
                   "default http://localhost:8233 and http://127.0.0.1:8233)")
    c.add_argument("--role", help="a role the caller's token must carry (default: any verified person)")
    config_options(c, what="for [identity] ")

    c = command("demo", cmd_demo, "run every shipped process on the example inputs, on a local Temporal "
                "(or the one TEMPORAL_ADDRESS / TEMPORAL_PROFILE names)", json=False)
    stack_options(c, port=None)

    c = command("new", cmd_new, "write a skeleton of your own process, with its tool, test and config lines")
    c.add_argument("kind", choices=["process"], help="what to write (a process)")
    c.add_argument("name", help="the process's name: lower-case words joined by hyphens (expense-claim)")
    c.add_argument("--dir", type=Path, default=Path("."), help="where its directory goes (default: here)")

    c = command("audit", cmd_audit, "a run's audit export: steps, decisions, approvals, refusals, budget")
    c.add_argument("run", help="run id")
    c.add_argument("--history", type=Path, help="read the run's history from this JSON file instead of Temporal")

    c = command("report", cmd_report, "per process and per step figures, and the reliability score")
    c.add_argument("--process", help="only this process")
    c.add_argument("--since", help="only runs started this recently: 30m, 24h, 7d")
    c.add_argument("--limit", type=int, default=1000, help="at most this many runs")
    config_options(c, what="for [slo] targets ")

    c = command("tools", cmd_tools, "what each process may do: steps, models, tools, grants, people, budgets")
    config_options(c)
    c.add_argument("--process", help="only this process (the tool catalog is always whole)")
    return p


def config_options(c: argparse.ArgumentParser, what: str = "") -> None:
    """Which baton.toml, and whether the demo's people and grants fill in what it leaves out."""
    from worker.config import DEMO_HELP

    c.add_argument("--config", type=Path, help=f"baton.toml {what}(default: $BATON_CONFIG or ./baton.toml)")
    c.add_argument("--demo", action="store_true", help=DEMO_HELP)


def stack_options(c: argparse.ArgumentParser, port: int | None) -> None:
    """Where the local server goes, so a second stack can run beside the first."""
    c.add_argument("--port", type=int, default=port, help=f"the server's gRPC port (default {DEFAULT_PORT})")
    c.add_argument("--ui-port", type=int, help="its Web UI's port (default: the gRPC port + 1000)")
    c.add_argument("--db", type=Path, help="its data file (default: .baton/temporal.db on 7233, "
                   ".baton/temporal-PORT.db on another port)")


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(argv)
        sys.stdout.flush()  # the last buffered output meets a closed pipe here, not in exit_now
    except BrokenPipeError:
        code = reader_gone()
    exit_now(code)


def run(argv: list[str] | None) -> int:
    from worker.config import ConfigError

    try:
        install_plugins()
    except ConfigError as err:
        print(f"baton: {err}", file=sys.stderr)
        return 1
    try:
        args = parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error: its output is flushed by main like any other
        return int(done.code or 0)
    try:
        return asyncio.run(args.func(args))
    except (InputError, UnknownRun, Refused, NoCredential, NoAuditKey, NewProcessError) as err:
        print(f"baton: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # a ConnectionError too, but not one with the server: see main
        raise
    except Exception as err:  # connection, config and server errors: one line, not a traceback
        from worker.config import ConfigError
        from worker.devserver import DevServerError
        from worker.issuer import IssuerError

        if not isinstance(err, (ConnectionError, ConfigError, DevServerError, IssuerError)):
            raise
        print(f"baton: {err}", file=sys.stderr)
        return 1


def install_plugins() -> None:
    """Know the processes the worker runs: the packages baton.toml's `[plugins]` names, else the advertised ones."""
    from worker.config import config_path, install_plugins, plugin_packages

    install_plugins(config_path(), plugin_packages())


def reader_gone() -> int:
    """Whoever read our output has stopped (`baton report | head -1`): end quietly, as any Unix tool does.

    Python ignores SIGPIPE, so the closed pipe surfaces as BrokenPipeError at the next write.
    Whatever is still buffered goes to /dev/null, so the final flush cannot fail again; the
    exit status is the one a shell shows for a tool stopped by SIGPIPE, so a script with
    `pipefail` can tell a cut-short listing from a complete one.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_PIPE_CLOSED
