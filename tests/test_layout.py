"""Dependencies point one way (DESIGN.md "Three parts, kept apart"): the CLI builds on the worker, never back.

The worker is what a team deploys; `client/` is the SDK and CLI on top of it. A
worker module importing `client/` (even inside a function) would make the two
one tangle again, in which neither can change without the other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

WORKER = sorted((ROOT / "worker").glob("*.py"))


def imported(source: str) -> list[str]:
    """Every module `source` imports, at module level or inside a function."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
    return found


def from_client(source: str) -> list[str]:
    return [name for name in imported(source) if name.split(".")[0] == "client"]


@pytest.mark.parametrize("path", WORKER, ids=lambda p: p.name)
def test_no_worker_module_imports_the_client(path: Path):
    assert from_client(path.read_text(encoding="utf-8")) == []


def test_loading_every_worker_module_loads_no_client_module():
    """The same, through whatever workflows/ and activities/ import in turn: a fresh interpreter, as a worker starts."""
    modules = [f"worker.{path.stem}" for path in WORKER if path.stem != "__init__"]
    loaded = subprocess.run(
        [sys.executable, "-c", "import importlib, sys\n"
         f"for name in {modules!r}: importlib.import_module(name)\n"
         "print(sorted(m for m in sys.modules if m.split('.')[0] == 'client'))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "[]"


def test_the_check_finds_an_import_of_the_client_anywhere_in_a_module():
    source = "import client.sdk\nfrom worker import config\n\ndef later():\n    from client.codec import KeyRing\n"
    assert from_client(source) == ["client.sdk", "client.codec"]
