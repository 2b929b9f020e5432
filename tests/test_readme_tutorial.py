"""README's "Write your own process", followed block by block: README drift fails here.

The blocks run as written, in bash, from a directory laid out as Baton's
checkout (its .venv and examples linked), so `--dir ..` lands in tmp_path.
The one change: the dev stack gets a free port (`--port`), and the second
terminal finds it by TEMPORAL_ADDRESS, so the test never meets another stack.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from activities.personal import AUDIT_KEY_ENV
from tests.conftest import ROOT
from tests.stack_process import free_port


def block(marker: str) -> str:
    """The ```sh block right after `<!-- tutorial:MARKER -->` in README.md."""
    found = re.search(rf"<!-- tutorial:{marker} -->\n```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert found, f"README.md has no tutorial:{marker} block"
    return found.group(1)


def bash(script: str, cwd: Path, env: dict, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    here = tmp_path / "baton"
    here.mkdir()
    for name in (".venv", "examples"):
        (here / name).symlink_to(ROOT / name)
    return here


@pytest.mark.integration
def test_the_tutorial_runs_as_written(checkout, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (AUDIT_KEY_ENV, "BATON_KEYS", "BATON_CONFIG", "VIRTUAL_ENV")}
    setup = block("new")
    made = bash(setup, checkout, env)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    assert "2 passed" in made.stdout
    project = tmp_path / "expense-claim"

    exports = "\n".join(line for line in setup.splitlines() if line.startswith("export"))
    exports = exports.replace("$PWD/.venv", f"{checkout}/.venv").replace('"$PWD"', f'"{project}"')
    port = free_port()
    dev = subprocess.Popen(["bash", "-c", f"{exports}\n{block('dev').strip()} --port {port}"], cwd=project, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_worker(dev)
        ran = bash(f"{exports}\nexport TEMPORAL_ADDRESS=127.0.0.1:{port}\n{_with_waits(block('run'))}", project, env)
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(timeout=60)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "review approved by first-approver" in ran.stdout
    for step in ("summarise", "review", "record"):
        assert step in ran.stdout


def _wait_for_worker(dev: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = dev.stdout.readline()
        if "Worker polling" in line:
            return
        if not line and dev.poll() is not None:
            break
    raise AssertionError(f"baton dev did not start its worker (exit {dev.poll()})")


def _with_waits(script: str) -> str:
    """A person reads the inbox before approving: wait until the run has parked, as they would."""
    return script.replace(
        "baton login first-approver",
        "for _ in $(seq 100); do baton status expense-claim-R-1 | grep -q awaiting_approval && break; sleep 0.2; done\n"
        "baton login first-approver",
    )
