"""The local stack as a user runs it: `baton dev` and `baton demo` as real processes, side by side.

- Two stacks on different ports (`--port/--ui-port`, each with its own data file) run at once,
  and each one's runs stay on its own server.
- A second server on a data file in use is refused in one line while the first keeps working;
  once the first is killed with kill -9, a new one starts on the same file and finds its runs.
- The demo uses the server the connection settings name (TEMPORAL_ADDRESS) and starts none.
- Only a client that would not find the stack by default is told the `TEMPORAL_ADDRESS=…` it needs.

Each process is started in its own session, its stdout in a file, and killed (as a group)
whatever happens, so no server outlives a test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from client.login import issue
from activities.spend import ENTITY
from activities.personal import AUDIT_KEY_ENV, LOCAL_AUDIT_KEY
from client.sdk import Baton
from tests.conftest import ROOT
from tests.stack_process import free_port
from worker.codec import read_key_file
from worker.connection import connect
from worker.devserver import port_in_use, why_it_stopped
from workflows.outcome import RunState

pytestmark = pytest.mark.integration

BATON = Path(sys.executable).with_name("baton")
CLEAR = json.loads((ROOT / "examples" / "onboarding" / "clear.json").read_text())
DEMO_RUNS = len(json.loads((ROOT / "examples" / "demo.json").read_text())["runs"])
START_S = 90  # a dev server and a worker coming up, on a machine shared with other tests
DEMO_S = 240  # every shipped process, to its end


@dataclass
class Proc:
    """`baton ARGS` in its own session; stdout and stderr in files, read while it runs."""

    args: tuple[str, ...]
    proc: asyncio.subprocess.Process
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def __str__(self) -> str:
        return f"`baton {' '.join(self.args)}` ({self.proc.returncode})\n--- stdout\n{self.stdout()}--- stderr\n{self.stderr()}"

    async def line(self, pattern: str, timeout: float = START_S) -> re.Match:
        """Wait for a line of stdout matching `pattern` (the process must stay up meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            found = re.search(pattern, self.stdout(), re.MULTILINE)
            if found:
                return found
            if self.proc.returncode is not None:
                raise AssertionError(f"exited before printing {pattern!r}: {self}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"no {pattern!r} within {timeout}s: {self}")

    async def ended(self, timeout: float) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"still running after {timeout}s: {self}") from None

    async def interrupt(self) -> int:
        """Ctrl-C, as a person stops `baton dev`."""
        self.proc.send_signal(signal.SIGINT)
        return await self.ended(60)

    def kill_group(self) -> None:
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
async def procs() -> AsyncIterator[list[Proc]]:
    """Every `baton` process a test starts, killed at the end if it is still running."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill_group()
        await p.proc.wait()


def env_without_temporal(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The user's environment with no Temporal or Baton settings, and a baton.toml whose files are in tmp.

    Python's stdout is left buffered, as in a user's shell: what `baton dev` prints for the
    person starting it must reach them while it runs, not when it stops.
    """
    config = tmp_path / f"baton-{os.urandom(3).hex()}.toml"
    text = (ROOT / "baton.toml").read_text()
    for name in ("systems", "payloads"):
        text = text.replace(f'db = ".baton/{name}.db"', f'db = "{config.with_suffix("")}-{name}.db"')
    text = text.replace('"examples/', f'"{ROOT}/examples/')  # so it serves from any directory
    config.write_text(text)
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("TEMPORAL_", "BATON_", "OTEL_")) and k != "PYTHONUNBUFFERED"  # a user's buffering
    }
    return {**env, "BATON_CONFIG": str(config), **extra}


async def baton(
    procs: list[Proc], tmp_path: Path, *args: object, env: dict[str, str], stdout: int | None = None,
    cwd: Path = ROOT, program: tuple[str, ...] = (str(BATON),),
) -> Proc:
    name = f"{len(procs)}-{args[0]}"
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = await asyncio.create_subprocess_exec(
            *program, *map(str, args), cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=o if stdout is None else stdout, stderr=e, start_new_session=True,
        )
    p = Proc(tuple(map(str, args)), proc, out, err)
    procs.append(p)
    return p


async def make_demo(procs, tmp_path, env: dict[str, str], **variables: object) -> Proc:
    """`make demo NAME=VALUE…`, as the README says; the venv is taken as installed (-o: never rebuilt here)."""
    settings = [f"{name}={value}" for name, value in variables.items()]
    return await baton(procs, tmp_path, "demo", *settings, env=env, program=("make", "-s", "-o", ".venv/.installed"))


async def dev(procs, tmp_path, port: int, db: Path | None, env: dict[str, str]) -> tuple[Proc, int]:
    """`baton dev` on `port` and `db` (default: the port's own file under tmp_path), up and polling;
    returns it and its server's pid."""
    data = ("--db", db) if db else ()
    p = await baton(procs, tmp_path, "dev", "--port", port, "--ui-port", free_port(), *data, env=env, cwd=tmp_path)
    started = await p.line(r"started at 127\.0\.0\.1:\d+ \(pid (\d+)")
    await p.line(r"^Worker polling")
    return p, int(started[1])


async def completes_a_run(target: str, home: Path) -> str:
    """Start a run on the stack at `target` (its own worker, queue `baton`; run in `home`) and see it end.

    The run is started as `requester`, with a token from that stack's local issuer.
    """
    token = await asyncio.to_thread(issue, "requester", None, home / ".baton" / "issuer")

    async def requester(by: str | None) -> str:
        return token

    keys = read_key_file(home / ".baton" / "keys")  # the key that stack made: what a shell in `home` uses
    baton_ = Baton(await connect(target, keys), "baton", tokens=requester)
    run_id = await baton_.start("onboarding", CLEAR)
    outcome = await asyncio.wait_for(baton_.result(run_id), START_S)
    assert outcome.state is RunState.COMPLETED, outcome.reason
    return run_id


async def workflow_ids(target: str, query: str = "") -> set[str]:
    client = await connect(target)
    return {wf.id async for wf in client.list_workflows(query or None)}


async def gone(pid: int, timeout: float = 60) -> None:
    """Wait until process `pid` has exited (a zombie counts: it holds no files any more)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"process {pid} still running {timeout}s after its owner was killed")


# ----- two stacks, side by side ------------------------------------------------------------


async def test_two_stacks_on_different_ports_run_side_by_side(procs, tmp_path):
    first_port, demo_port, demo_ui = free_port(), free_port(), free_port()
    first, _ = await dev(procs, tmp_path, first_port, None, env_without_temporal(tmp_path))
    assert f"TEMPORAL_ADDRESS=127.0.0.1:{first_port}" in first.stdout(), str(first)
    assert f".baton/temporal-{first_port}.db" in first.stdout(), str(first)  # its port's own data file

    demo = await make_demo(procs, tmp_path, env_without_temporal(tmp_path),
                           PORT=demo_port, UI_PORT=demo_ui, DB=tmp_path / "demo" / "temporal.db")
    assert await demo.ended(DEMO_S) == 0, str(demo)
    out = demo.stdout()
    assert f"{DEMO_RUNS} of {DEMO_RUNS} runs ended as expected" in out, str(demo)
    assert f"TEMPORAL_ADDRESS=127.0.0.1:{demo_port}" in out and f"http://localhost:{demo_ui}/" in out, str(demo)
    assert not port_in_use("127.0.0.1", demo_port), "the demo's server outlived the demo"
    assert (tmp_path / ".baton" / f"temporal-{first_port}.db").exists() and (tmp_path / "demo" / "temporal.db").exists()

    run_id = await completes_a_run(f"127.0.0.1:{first_port}", tmp_path)  # the first stack never noticed
    assert await workflow_ids(f"127.0.0.1:{first_port}") == {run_id}  # none of the demo's runs
    assert await first.interrupt() == 0, str(first)
    assert not port_in_use("127.0.0.1", first_port)


async def test_a_versioned_dev_stack_makes_its_own_build_current_so_runs_run_on_it(procs, tmp_path):
    """With [worker] deployment set, `baton dev`'s worker is the only build: it is made current, or no run would start.

    Restarted as the next build on the same data file, the new build is made current in turn.
    """
    env = env_without_temporal(tmp_path)
    config = Path(env["BATON_CONFIG"])
    config.write_text(config.read_text().replace("[worker]\n", '[worker]\ndeployment = "baton-dev"\n', 1))
    port = free_port()
    for build_id in ("dev-1", "dev-2"):
        stack, _ = await dev(procs, tmp_path, port, None, {**env, "BATON_BUILD_ID": build_id})
        assert f"version baton-dev.{build_id} (made current)" in stack.stdout(), str(stack)
        run_id = await completes_a_run(f"127.0.0.1:{port}", tmp_path)
        history = await (await connect(f"127.0.0.1:{port}")).get_workflow_handle(run_id).fetch_history()
        assert {e.workflow_task_completed_event_attributes.deployment_version.build_id
                for e in history.events if e.HasField("workflow_task_completed_event_attributes")} == {build_id}
        assert await stack.interrupt() == 0, str(stack)


def test_a_client_is_told_the_address_only_when_it_would_not_find_the_server(tmp_path):
    """On Temporal's default address a client needs nothing; elsewhere, or when it is pointed elsewhere, it does."""
    from worker.connection import DEFAULT_TARGET
    from worker.stack import address_hint

    bare = {"TEMPORAL_CONFIG_FILE": str(tmp_path / "no-profiles.toml")}  # not this machine's profiles
    default_port = int(DEFAULT_TARGET.rsplit(":", 1)[1])
    assert address_hint(f"127.0.0.1:{default_port}", env=bare) is None
    assert address_hint(f"127.0.0.1:{default_port + 67}", env=bare) == f"TEMPORAL_ADDRESS=127.0.0.1:{default_port + 67}"
    pointed_elsewhere = {**bare, "TEMPORAL_ADDRESS": "elsewhere.example:7233"}
    assert address_hint(f"127.0.0.1:{default_port}", env=pointed_elsewhere) == f"TEMPORAL_ADDRESS=127.0.0.1:{default_port}"


# ----- one data file, one server ------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a server dies with its owner on Linux only (PR_SET_PDEATHSIG)")
async def test_a_second_server_on_a_data_file_in_use_is_refused_until_the_first_is_killed(procs, tmp_path):
    db = tmp_path / "shared" / "temporal.db"
    env = env_without_temporal(tmp_path)
    first_port = free_port()
    first, server_pid = await dev(procs, tmp_path, first_port, db, env)

    second_port = free_port()
    second = await baton(procs, tmp_path, "dev", "--port", second_port, "--ui-port", free_port(), "--db", db, env=env)
    assert await second.ended(START_S) == 1, str(second)
    lines = second.stderr().splitlines()
    assert len(lines) == 1 and str(db) in lines[0] and "in use" in lines[0] and str(server_pid) in lines[0], str(second)
    assert not port_in_use("127.0.0.1", second_port), "a second server was started"

    before = await completes_a_run(f"127.0.0.1:{first_port}", tmp_path)  # the first still works
    # `baton dev` made the local audit key, owner-only; `baton audit` keys its digests with it, no setup.
    assert oct((tmp_path / LOCAL_AUDIT_KEY).stat().st_mode & 0o777) == "0o600"
    keyless = {k: v for k, v in env.items() if k not in (AUDIT_KEY_ENV, "BATON_AUDIT_KEY_FILE")}
    keyless["TEMPORAL_ADDRESS"] = f"127.0.0.1:{first_port}"
    audited = await baton(procs, tmp_path, "audit", before, "--json", env=keyless, cwd=tmp_path)
    assert await audited.ended(START_S) == 0, str(audited)
    assert "ShardOwnershipLost" not in db.with_suffix(".log").read_text(errors="replace")

    first.proc.kill()  # kill -9 of `baton dev` alone: its server must not outlive it
    await first.ended(30)
    await gone(server_pid)

    third_port = free_port()
    third, _ = await dev(procs, tmp_path, third_port, db, env)
    assert before in await workflow_ids(f"127.0.0.1:{third_port}")  # the same data, served again
    await completes_a_run(f"127.0.0.1:{third_port}", tmp_path)
    assert await third.interrupt() == 0, str(third)


# ----- the demo on a server it is given --------------------------------------------------------


async def test_the_demo_runs_on_the_server_temporal_address_names(procs, tmp_path, dev_env: WorkflowEnvironment):
    target = dev_env.client.service_client.config.target_host
    queue = f"demo-{os.urandom(3).hex()}"
    env = env_without_temporal(tmp_path, TEMPORAL_ADDRESS=target, BATON_TASK_QUEUE=queue)
    demo = await baton(procs, tmp_path, "demo", env=env)
    assert await demo.ended(DEMO_S) == 0, str(demo)
    out = demo.stdout()
    assert target in out and f"{DEMO_RUNS} of {DEMO_RUNS} runs ended as expected" in out, str(demo)
    assert "TEMPORAL_ADDRESS=" not in out, str(demo)  # this shell already reaches it
    ran = await workflow_ids(target, f"TaskQueue = '{queue}'")
    runs = [i for i in ran if "/" not in i and not i.startswith(f"{ENTITY}:")]  # no agents' children, no spend cap
    assert len(runs) == DEMO_RUNS, ran


async def test_the_demo_refuses_a_port_when_temporal_address_names_a_server(procs, tmp_path):
    env = env_without_temporal(tmp_path, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    demo = await baton(procs, tmp_path, "demo", "--port", free_port(), env=env)
    assert await demo.ended(START_S) == 2, str(demo)
    (line,) = demo.stderr().splitlines()
    assert "--port" in line and "TEMPORAL_ADDRESS" in line, str(demo)


async def test_the_demo_names_the_server_it_cannot_reach_instead_of_starting_its_own(procs, tmp_path):
    port = free_port()
    demo = await baton(procs, tmp_path, "demo", env=env_without_temporal(tmp_path, TEMPORAL_ADDRESS=f"127.0.0.1:{port}"))
    assert await demo.ended(START_S) == 1, str(demo)
    (line,) = demo.stderr().splitlines()
    assert f"cannot reach Temporal at 127.0.0.1:{port}" in line and demo.stdout() == "", str(demo)


# ----- output: --json, closed pipes ------------------------------------------------------------


@pytest.mark.parametrize("command", ["demo", "dev"])
async def test_the_stack_commands_refuse_json(procs, tmp_path, command):
    """Both are for a person (a tour, a long-running stack); scripts use run/report/audit --json."""
    helped = await baton(procs, tmp_path, command, "--help", env=env_without_temporal(tmp_path))
    assert await helped.ended(30) == 0 and "--json" not in helped.stdout(), str(helped)
    refused = await baton(procs, tmp_path, command, "--json", "--port", free_port(), env=env_without_temporal(tmp_path))
    assert await refused.ended(30) == 2 and "unrecognized arguments: --json" in refused.stderr(), str(refused)


@pytest.mark.parametrize("command", ["demo", "dev"])
async def test_the_stack_stops_quietly_when_its_output_is_closed(procs, tmp_path, command):
    read, write = os.pipe()
    os.close(read)
    port = free_port()
    try:
        p = await baton(procs, tmp_path, command, "--port", port, "--ui-port", free_port(), "--db", tmp_path / "t.db",
                        env=env_without_temporal(tmp_path), stdout=write)
    finally:
        os.close(write)
    assert await p.ended(START_S) == 141 and p.stderr() == "", str(p)
    assert not port_in_use("127.0.0.1", port), "the server outlived its stack"


def test_a_dead_dev_server_is_explained_by_its_error_not_the_stack_trace_after_it(tmp_path):
    """The CLI's own words when the server fails: the ERROR or panic line, where a log's tail is only a Go trace."""
    log = tmp_path / "t.log"
    log.write_text(
        'time=2026-11-29T22:50:05.769 level=ERROR msg="error returned" component=fx error="failed listening for '
        'HTTP API on 127.0.0.1:52015: listen tcp 127.0.0.1:52015: bind: address already in use"\n'
        + "".join(f"\t/home/runner/work/cli/cli/internal/temporalcli/commands.go:{n} +0x2a9\nmain.main()\n"
                  for n in range(40))
    )
    assert "bind: address already in use" in why_it_stopped(log)
    log.write_text("panic: runtime error: invalid memory address\n\ngoroutine 1 [running]:\nmain.main()\n")
    assert why_it_stopped(log).startswith("panic: runtime error")
    log.write_text("one\ntwo\n")
    assert why_it_stopped(log) == "one | two"  # nothing said why: what there is
