"""Baton's connections send encrypted payloads without gRPC's gzip (worker/connection.py `grpc_compression`).

temporalio compresses every request with gzip by default. Baton's payloads are
ciphertext, which does not compress, so gzip would only cost CPU at both ends
(~8 % of a run's throughput on the local stack). Read off the wire: a relay
between the client and the dev server parses the client's HTTP/2 frames and
notes, for each request, the gRPC message's compressed flag (gRPC over HTTP/2,
"Length-Prefixed-Message"). With payloads in clear Baton keeps the SDK's default.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client

from worker.codec import KeyRing, new_key_line
from worker.connection import connect

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, PADDED = 0x0, 0x8


class Tap:
    """The compressed flag of each request's first message, per HTTP/2 stream, as the client sent it."""

    def __init__(self) -> None:
        self.flags: dict[int, int] = {}

    async def client_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(len(PREFACE)))
        while True:
            header = await reader.readexactly(9)
            payload = await reader.readexactly(int.from_bytes(header[:3], "big"))
            writer.write(header + payload)
            kind, flags = header[3], header[4]
            stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
            body = payload[1:] if flags & PADDED else payload  # a padded frame starts with its pad length
            if kind == DATA and body and stream not in self.flags:
                self.flags[stream] = body[0]


async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
    writer.close()


@asynccontextmanager
async def tapped(target: str) -> AsyncIterator[tuple[str, Tap]]:
    """A relay to `target` on a port of its own, and what it reads."""
    tap, tasks = Tap(), []
    host, port = target.rsplit(":", 1)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        tasks.extend([asyncio.create_task(tap.client_to_server(reader, up_writer)),
                      asyncio.create_task(copy(up_reader, writer))])

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", tap
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # ended by the client's close, or cancelled here


async def start_and_terminate(client: Client) -> None:
    """A start carrying a payload (encrypted by a Baton client), then its end: requests with bodies."""
    handle = await client.start_workflow("onboarding", {"applicant_id": "A-1", "name": "Ada Lovelace"},
                                         id=f"wire-{uuid.uuid4().hex[:8]}", task_queue=f"nowhere-{uuid.uuid4().hex[:6]}")
    await handle.terminate("read off the wire")


async def test_encrypted_payloads_travel_without_gzip_and_clear_ones_with_the_sdk_default(dev_env, monkeypatch):
    target = dev_env.client.service_client.config.target_host
    keys = KeyRing.parse(new_key_line(f"wire-{secrets.token_hex(4)}"), "the test's key ring")

    async with tapped(target) as (relay, default):
        await start_and_terminate(await Client.connect(relay))  # temporalio as shipped: the contrast
    async with tapped(target) as (relay, encrypted):
        await start_and_terminate(await connect(relay, keys))
    monkeypatch.setenv("BATON_ENCRYPTION", "off")
    monkeypatch.delenv("BATON_KEYS", raising=False)
    monkeypatch.delenv("BATON_KEY_FILE", raising=False)
    async with tapped(target) as (relay, clear):
        await start_and_terminate(await connect(relay))

    assert len(default.flags) >= 3 and set(default.flags.values()) == {1}, default.flags  # the tap reads the flag
    assert len(encrypted.flags) >= 3 and set(encrypted.flags.values()) == {0}, encrypted.flags
    assert len(clear.flags) >= 3 and set(clear.flags.values()) == {1}, clear.flags
