"""The local stack: Temporal's dev server plus a Baton worker, in one context.

It sets up OpenTelemetry from the OTEL_* variables as a worker does (worker/telemetry.py)
and flushes it on the way out, since `baton` leaves through os._exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from client.connection import connect
from worker import telemetry
from worker.config import load
from worker.devserver import DevServer
from worker.registration import baton_worker


@dataclass
class Stack:
    server: DevServer
    client: Client


@asynccontextmanager
async def local_stack(
    *,
    config_file: Path | None = None,
    db: Path = Path(".baton/temporal.db"),
    port: int = 7233,
    ui_port: int = 8233,
) -> AsyncIterator[Stack]:
    config = load(config_file)  # a bad baton.toml fails before anything starts
    otel = telemetry.install("baton-worker")  # so does a bad OTEL_* variable
    try:
        async with DevServer(db, port=port, ui_port=ui_port) as server:
            client = await connect(server.target)
            async with baton_worker(client, config):
                yield Stack(server, client)
    finally:
        otel.flush()
