"""`baton new process NAME`: the skeleton it writes passes its own test, as a team would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from activities.personal import AUDIT_KEY_ENV
from tests.conftest import ROOT

BATON = Path(sys.executable).with_name("baton")


def baton_new(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(BATON), "new", "process", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def clean_env() -> dict[str, str]:
    """The shell of someone who just installed Baton: no keys of the suite's."""
    return {k: v for k, v in os.environ.items() if k not in (AUDIT_KEY_ENV, "BATON_KEYS", "BATON_CONFIG")}


def test_the_skeleton_passes_its_own_test(tmp_path):
    made = baton_new("expense-claim", "--dir", str(tmp_path), "--json")
    assert made.returncode == 0, made.stderr
    project = tmp_path / "expense-claim"
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()) == [
        "baton.toml", "example.json", "expense_claim/__init__.py", "expense_claim/contracts.py",
        "expense_claim/plugin.py", "expense_claim/tools.py", "expense_claim/workflow.py", "pyproject.toml",
        "tests/test_expense_claim.py",
    ]
    ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                         capture_output=True, text=True, timeout=240, env=clean_env())
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "2 passed" in ran.stdout


@pytest.mark.parametrize(
    "name, says",
    [
        ("Expense Claim", "'Expense Claim' is not a process name"),
        ("9-lives", "'9-lives' is not a process name"),
        ("expense_claim", "'expense_claim' is not a process name"),
        ("class", "would make a package named 'class', which Python or Baton already uses"),
        ("onboarding", "a process named 'onboarding' is already installed"),
    ],
)
def test_a_bad_name_is_refused_in_one_line_and_nothing_is_written(tmp_path, name, says):
    refused = baton_new(name, "--dir", str(tmp_path))
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and says in refused.stderr, refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_refused_and_left_as_it_was(tmp_path):
    (tmp_path / "expense-claim").mkdir()
    (tmp_path / "expense-claim" / "mine.txt").write_text("keep me")
    refused = baton_new("expense-claim", "--dir", str(tmp_path))
    assert refused.returncode == 2
    assert refused.stderr == f"baton: {tmp_path / 'expense-claim'} already exists: choose another NAME or --dir\n"
    assert [p.name for p in (tmp_path / "expense-claim").iterdir()] == ["mine.txt"]
