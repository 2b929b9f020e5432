"""One way to reach Temporal, shared by the SDK, the CLI and the worker.

Connection settings come from Temporal's own environment configuration
(`temporalio.envconfig`: the `TEMPORAL_*` variables and the profiles in
`temporal.toml`), so the same code reaches the local dev server, a
self-hosted cluster or Temporal Cloud unchanged. Payloads go through Baton's
data converter (worker/converter.py): pydantic, so every contract stays a typed
model, and bad input fails a run rather than its workflow task; encrypted with
the configured keys (worker/codec.py), and refused without one; encrypted, they
travel without gRPC's gzip, which ciphertext does not repay. With a codec,
headers go through it too (`header_codec_behavior`): Temporal leaves them in
clear by default, and a start's header carries its starter's bearer token
(client/credentials.py). When tracing is
on (OTEL_TRACES_EXPORTER, worker/telemetry.py, or a tracer provider the host
application installed), every client carries Temporal's tracing interceptor,
which workers built from it inherit. Off, there is none: its no-op spans cost a
sixth of a worker's CPU per run (benchmarks/throughput.py).
"""

from __future__ import annotations

import dataclasses
import os
import re

from opentelemetry import trace
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig
from temporalio.service import GrpcCompression

from activities.payloads import PayloadSettings
from worker import telemetry
from worker.codec import KeyRing, KeyRingError, configured_keys
from worker.config import ConfigError, payload_settings
from worker.converter import data_converter
from worker.payload_store import payload_storage

DEFAULT_TARGET = "localhost:7233"


def task_queue() -> str:
    """The task queue Baton's workers poll and its clients start runs on."""
    return os.environ.get("BATON_TASK_QUEUE", "baton")


def connect_options() -> dict:
    options = dict(ClientConfig.load_client_connect_config())
    options.setdefault("target_host", DEFAULT_TARGET)
    return options


class EncryptionKeyError(ConfigError):
    """No usable key, and nobody said to run in clear: Baton refuses rather than write personal data in clear."""


def configured_converter(keys: KeyRing | None = None, payloads: PayloadSettings | None = None) -> DataConverter:
    """The converter every Baton client and worker uses: encrypting with the configured keys (worker/codec.py),
    large payloads in the store `payloads` names (baton.toml's [payloads] unless given; worker/payload_store.py).

    With no key, Baton refuses to connect: a run's input, prompts and answers
    would sit in clear in Temporal's history. `BATON_ENCRYPTION=off` runs in
    clear anyway (tests on their own servers); every worker then warns in its log.
    """
    try:
        keys = keys or configured_keys()
    except KeyRingError as err:
        raise EncryptionKeyError(str(err)) from None
    storage = payload_storage(payloads or payload_settings())
    if keys is not None:
        return data_converter(keys, storage)
    if os.environ.get("BATON_ENCRYPTION") != "off":
        raise EncryptionKeyError(
            "no encryption key: set BATON_KEYS (id:base64-key,...) or BATON_KEY_FILE, or run `baton dev` here "
            "(it creates .baton/keys); BATON_ENCRYPTION=off runs with payloads in clear")
    return data_converter(None, storage)  # a worker on it says so in its log (worker/registration.py)


def grpc_compression(converter: DataConverter) -> GrpcCompression:
    """No gzip on a connection whose payloads are encrypted; temporalio's default (gzip) in clear.

    A request's bulk is then ciphertext, which does not compress, and gzip still
    costs both ends CPU on every request and response: on the local stack, turning
    it off took ~4 ms of the worker's CPU and ~4 ms of the server's off each
    onboarding run, ~8 % more runs a second (README "Performance").
    """
    return GrpcCompression.NONE if converter.payload_codec is not None else GrpcCompression.GZIP


def header_behavior(converter: DataConverter) -> HeaderCodecBehavior:
    """Headers through the codec whenever there is one: a header holds a bearer token, and Temporal's default
    (NO_CODEC) would keep it in clear in the history. A header written in clear before still decodes
    (the codec passes on what it did not seal), so runs started before keep their starter."""
    return HeaderCodecBehavior.CODEC if converter.payload_codec is not None else HeaderCodecBehavior.NO_CODEC


def sealing_headers(client: Client) -> Client:
    """`client`, encoding its headers with its codec: a client built elsewhere keeps Temporal's default.

    A worker takes the behaviour from its client, so one on a client that leaves
    headers in clear would hand a run its encrypted starter token undecoded.
    """
    config = client.config()
    wanted = header_behavior(config["data_converter"])
    if config["header_codec_behavior"] == wanted:
        return client
    config["header_codec_behavior"] = wanted
    return Client(**config)


def storing_payloads(client: Client, payloads: PayloadSettings) -> Client:
    """`client`, storing and reading large payloads where the worker's config says: its config is the one trusted."""
    config = client.config()
    config["data_converter"] = dataclasses.replace(config["data_converter"], external_storage=payload_storage(payloads))
    return Client(**config)


async def connect(target: str | None = None, keys: KeyRing | None = None) -> Client:
    """Connect as envconfig says, or to `target` (the local dev stack) when given; `keys` over the configured ones."""
    options = connect_options()
    if target is not None:
        options = {"target_host": target, "namespace": options.get("namespace", "default")}
    telemetry.install("baton-client", client=True)  # no-op when the worker installed first
    converter = configured_converter(keys)
    try:
        return await Client.connect(
            **options, data_converter=converter, header_codec_behavior=header_behavior(converter),
            grpc_compression=grpc_compression(converter), interceptors=[tracing_interceptor()] if tracing_on() else [],
        )
    except RuntimeError as err:
        found = re.search(r'message: "([^"]+)"', str(err))
        raise ConnectionError(
            f"cannot reach Temporal at {options['target_host']} "
            f"(namespace {options.get('namespace', 'default')}): {found[1] if found else err}. "
            "Start one with `baton dev`, or set TEMPORAL_ADDRESS / TEMPORAL_PROFILE."
        ) from err


def tracing_on(tracer_provider: trace.TracerProvider | None = None) -> bool:
    """Whether spans would go anywhere: a provider was given, or one is installed globally."""
    return tracer_provider is not None or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def tracing_interceptor(tracer_provider: trace.TracerProvider | None = None) -> TracingInterceptor:
    """Temporal's spans for client calls, workflows and activities (global tracer unless given one)."""
    return TracingInterceptor(trace.get_tracer("temporalio", tracer_provider=tracer_provider))


def is_traced(client: Client) -> bool:
    """Whether workers built from `client` inherit a tracing interceptor (they must not get two)."""
    return any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"])


def traced(client: Client, tracer_provider: trace.TracerProvider | None = None) -> Client:
    """`client` with the tracing interceptor added, for clients built elsewhere (the test servers')."""
    if is_traced(client):
        return client
    config = client.config()
    config["interceptors"] = [*config["interceptors"], tracing_interceptor(tracer_provider)]
    return Client(**config)
