"""The local stack: Temporal's dev server plus a Baton worker, in one context.

`local_stack` starts (or reuses) the dev server on a port; `given_stack` puts the
worker on the server the connection settings name instead (TEMPORAL_ADDRESS, a
profile: temporalio.envconfig, as every client reads them) and starts nothing.
Both start Baton's local identity issuer (worker/issuer.py) and point the worker's
`[identity]` at it, unless baton.toml names the organisation's own issuer. Both make the local
encryption key `.baton/keys` on first use (worker/codec.py), used unless BATON_KEYS / BATON_KEY_FILE name keys. Both set up OpenTelemetry from the OTEL_* variables as a worker does
(worker/telemetry.py) and flush it on the way out, since `baton` leaves through os._exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError, RPCStatusCode

from activities.personal import ensure_local_audit_key
from worker import telemetry
from worker.codec import configured_keys, ensure_local_key
from worker.codec_server import CODEC_PORT_OFFSET, CodecServer, trusted_issuer
from worker.config import BatonConfig, load
from worker.connection import DEFAULT_TARGET, connect
from worker.devserver import DEFAULT_PORT, UI_PORT_OFFSET, DevServer, register_search_attributes
from worker.issuer import ISSUER_PORT_OFFSET, LocalIssuer, remember_url
from worker.registration import baton_worker


@dataclass
class Stack:
    client: Client
    target: str
    server: DevServer | None = None  # None: the server is not ours, the connection settings named it
    issuer: LocalIssuer | None = None  # None: baton.toml's [identity] names the organisation's issuer
    codec: CodecServer | None = None  # None: running in clear (BATON_ENCRYPTION=off), or not our Web UI
    version: WorkerDeploymentVersion | None = None  # the worker's, made current; None: an unversioned worker

    @property
    def ui_url(self) -> str | None:
        return self.server.ui_url if self.server else None

    def codec_steps(self) -> str | None:
        """What a person does to read decoded payloads in our Web UI, which has no sign-in to send a token."""
        if self.codec is None or self.server is None or self.server.reused:
            return None  # in clear, or a server that was running keeps its own codec settings
        url = self.codec.url
        return (
            f"Codec server: {url}. To read decoded payloads in the Web UI:\n"
            f"  1. `baton login NAME`, then sign this browser in at {url}/login with the token in .baton/token\n"
            f'  2. in the Web UI, Codec Server (top right): "Use my browser setting", endpoint {url}, '
            '"Include cross-origin credentials" on, Apply'
        )


def given_server() -> str | None:
    """The address the connection settings name (TEMPORAL_ADDRESS, or the profile's), if any."""
    return ClientConfig.load_client_connect_config().get("target_host")


def address_hint(target: str, env: Mapping[str, str] | None = None) -> str | None:
    """`TEMPORAL_ADDRESS=target`, when a client with these settings (default: ours) would go elsewhere."""
    reaches = ClientConfig.load_client_connect_config(override_env_vars=env).get("target_host", DEFAULT_TARGET)
    return None if _same_address(reaches, target) else f"TEMPORAL_ADDRESS={target}"


def _same_address(a: str, b: str) -> bool:
    def norm(target: str) -> tuple[str, str]:
        host, _, port = target.rpartition(":")
        return ("127.0.0.1" if host == "localhost" else host), port

    return norm(a) == norm(b)


@asynccontextmanager
async def local_stack(
    *,
    config_file: Path | None = None,
    db: Path | None = None,
    port: int = DEFAULT_PORT,
    ui_port: int | None = None,
    demo: bool = False,
) -> AsyncIterator[Stack]:
    ui_port = ui_port or port + UI_PORT_OFFSET
    async with _worker_config(config_file, port, demo) as (config, issuer):
        with ExitStack() as stack:
            codec = await _codec_server(config, port, ui_port)
            if codec is not None:
                stack.enter_context(codec)
            async with DevServer(db, port=port, ui_port=ui_port, codec_endpoint=codec and codec.url) as server:
                client = await connect(server.target)
                async with baton_worker(client, config):
                    version = config.worker.version()
                    if version is not None:
                        await make_current(client, version)
                    yield Stack(client, server.target, server, issuer, codec, version)


async def make_current(client: Client, version: WorkerDeploymentVersion, wait_s: float = 30) -> None:
    """Make `version` its deployment's current version, once the server has seen its worker poll.

    The local stack's worker is its only build: until its version is current the
    server routes no run to it. On a real cluster, choosing the current version is
    the rollout, the operator's step (README, "Changing a process").
    """
    request = SetWorkerDeploymentCurrentVersionRequest(
        namespace=client.namespace, deployment_name=version.deployment_name, build_id=version.build_id,
        identity="baton dev",
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            await client.workflow_service.set_worker_deployment_current_version(request)
            return
        except RPCError as err:  # the version, or its task queues, not yet known: its first poll is on the way
            if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION) or loop.time() > deadline:
                raise ConnectionError(f"cannot make {version.to_canonical_string()} current: {err.message}") from err
        await asyncio.sleep(0.2)


async def _codec_server(config: BatonConfig, port: int, ui_port: int) -> CodecServer | None:
    """The codec server the local Web UI decodes through (on `port` + 3000), or None when running in clear."""
    keys = configured_keys()
    if keys is None:
        return None
    origins = [f"http://{host}:{ui_port}" for host in ("localhost", "127.0.0.1")]
    trusted = await trusted_issuer(config.identity)
    return CodecServer(keys, trusted, origins=origins, port=port + CODEC_PORT_OFFSET)


@asynccontextmanager
async def given_stack(*, config_file: Path | None = None, demo: bool = False) -> AsyncIterator[Stack]:
    """A worker on the server the connection settings name; Baton's search attributes added if missing."""
    async with _worker_config(config_file, DEFAULT_PORT, demo) as (config, issuer):
        client = await connect()
        target = client.service_client.config.target_host
        try:
            await register_search_attributes(client, client.namespace)
        except RPCError as err:
            raise ConnectionError(f"cannot register Baton's search attributes at {target}: {err.message}") from err
        async with baton_worker(client, config):
            yield Stack(client, target, issuer=issuer)


@asynccontextmanager
async def _worker_config(
    config_file: Path | None, port: int, demo: bool
) -> AsyncIterator[tuple[BatonConfig, LocalIssuer | None]]:
    """The worker's config, its [identity] the local issuer's (on `port` + 2000) unless baton.toml names one."""
    config = load(config_file, demo=demo)  # a bad baton.toml fails before anything starts
    ensure_local_audit_key()  # so `baton audit` keys its digests on this machine with no setup
    ensure_local_key()  # the local stack encrypts too: with BATON_KEYS / BATON_KEY_FILE unset, this key
    otel = telemetry.install("baton-worker")  # so does a bad OTEL_* variable
    try:
        with ExitStack() as stack:
            issuer = None
            if config.identity is None:
                issuer = stack.enter_context(LocalIssuer(config.members(), port=port + ISSUER_PORT_OFFSET))
                remember_url(issuer)
                config = config.model_copy(update={"identity": issuer.settings()})
            yield config, issuer
    finally:
        otel.flush()
