"""`python -m worker` as a user runs it: envconfig connection, baton.toml, graceful stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from baton_examples.systems import SystemsOfRecord
from client.sdk import Baton
from tests.conftest import ROOT, SEED
from tests.fake_provider import FakeProvider, openai_answer
from tests.test_onboarding_routes import CLEAR
from workflows.outcome import RunState

pytestmark = pytest.mark.integration


def worker_env(dev_env, queue: str, config: Path) -> dict:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "BATON_TASK_QUEUE": queue,
        "BATON_CONFIG": str(config),
    }


async def test_worker_process_runs_a_process_and_stops_gracefully(dev_env, tmp_path):
    db = tmp_path / "systems.db"
    config = tmp_path / "baton.toml"
    config.write_text(f'[systems]\ndb = "{db}"\nseed = "{SEED}"\n')
    queue = f"baton-worker-{uuid.uuid4().hex[:8]}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "--demo", cwd=ROOT, env=worker_env(dev_env, queue, config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        baton = Baton(dev_env.client, queue)
        outcome = await asyncio.wait_for(baton.result(await baton.start("onboarding", CLEAR)), 60)
        assert outcome.state is RunState.COMPLETED, outcome.reason
        assert SystemsOfRecord(db).count("crm_records", applicant_id="A-1001") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    assert f"task queue '{queue}'" in out.decode()


async def test_worker_refuses_a_bad_config_with_one_line(dev_env, tmp_path):
    config = tmp_path / "baton.toml"
    config.write_text('[tiers]\nfast = ["no-such-model"]\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", cwd=ROOT, env=worker_env(dev_env, "unused", config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "no-such-model" in err.decode() and "Traceback" not in err.decode()


LOCAL_FAST = """
[systems]
db = "{db}"
seed = "{seed}"

[providers.local]
protocol = "openai"
base_url = "{url}/v1"
api_key_env = "LOCAL_LLM_KEY"

[models.local-fast]
provider = "local"
name = "llama-test"
price = {{ input = 0.20, output = 0.80, cached_input = 0.02 }}
personal_data = true  # on this machine: the welcome e-mail's prompt carries the applicant's name

[models.offline-strong]
provider = "offline"
name = "offline-strong"
price = {{ input = 3.0, output = 15.0 }}

[tiers]
fast = ["local-fast"]
strong = ["offline-strong"]
"""


async def test_baton_toml_points_the_fast_tier_at_a_local_server(dev_env, tmp_path):
    """The acceptance, as a user does it: a baton.toml file, a worker process, a run, its ledger."""
    db = tmp_path / "systems.db"
    email = {"subject": "Welcome", "body": "Dear Ada, welcome.\nThe onboarding team"}
    with FakeProvider() as fake:
        fake.script(openai_answer(email, model="llama-test", prompt_tokens=300, completion_tokens=40, cached_tokens=100))
        config = tmp_path / "baton.toml"
        config.write_text(LOCAL_FAST.format(db=db, seed=SEED, url=fake.url))
        queue = f"baton-worker-{uuid.uuid4().hex[:8]}"
        env = {**worker_env(dev_env, queue, config), "LOCAL_LLM_KEY": "local-key"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "--demo", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            baton = Baton(dev_env.client, queue)
            run_id = await baton.start("onboarding", CLEAR)
            outcome = await asyncio.wait_for(baton.result(run_id), 60)
            ledger = await baton.ledger(run_id)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)

    assert outcome.state is RunState.COMPLETED, outcome.reason + out.decode()
    step = next(e for e in ledger if e.step == "welcome_email")
    assert (step.provider, step.model, step.tokens_in, step.tokens_out, step.cached_tokens) == (
        "local", "local-fast", 300, 40, 100,
    )
    assert step.cost_usd == pytest.approx((200 * 0.20 + 100 * 0.02 + 40 * 0.80) / 1e6)
    assert fake.requests[0].body["model"] == "llama-test"
    assert fake.requests[0].headers["authorization"] == "Bearer local-key"
    assert SystemsOfRecord(db).count("outbox", subject="Welcome") == 1


async def test_worker_refuses_to_start_without_the_key_it_needs(dev_env, tmp_path):
    config = tmp_path / "baton.toml"
    config.write_text(LOCAL_FAST.format(db=tmp_path / "s.db", seed=SEED, url="http://127.0.0.1:9"))
    env = worker_env(dev_env, "unused", config)
    env.pop("LOCAL_LLM_KEY", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "--demo", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "LOCAL_LLM_KEY" in err.decode() and "Traceback" not in err.decode()
    assert len(err.decode().strip().splitlines()) == 1
