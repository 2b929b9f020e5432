"""`python -m worker` as a user runs it: envconfig connection, baton.toml, graceful stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from activities.tools.systems import SystemsOfRecord
from client.sdk import Baton
from tests.conftest import ROOT, SEED
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
        sys.executable, "-m", "worker", cwd=ROOT, env=worker_env(dev_env, queue, config),
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
