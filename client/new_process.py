"""`baton new process NAME`: a working skeleton of a team's own process, in a directory of its own.

What it writes runs as it is and passes its own test: a process with one model
step, one approval and one tool step (`workflow.py`), its contracts, one tool
on a SQLite table standing in for the team's system (`tools.py`), the package
Baton loads (`plugin.py`), a test on the test kit (client/testkit.py), the
baton.toml lines (`[plugins]`, `[roles]`, `[grants]`) and a pyproject.toml that
installs it. The team then replaces the stand-ins with its own.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from workflows.registry import REGISTRY

NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
ROLE = "approver"  # the role the skeleton's approval asks
PERSON = "first-approver"  # a placeholder for the person in it


class NewProcessError(ValueError):
    """The skeleton cannot be written (bad name, directory taken): nothing was written."""


def new_process(name: str, directory: Path) -> Path:
    """Write the skeleton of process `name` into `directory`/NAME; returns that directory."""
    module = _module(name)
    target = directory / name
    if target.exists():
        raise NewProcessError(f"{target} already exists: choose another NAME or --dir")
    values = {
        "name": name, "module": module, "cls": "".join(p.title() for p in name.split("-")),
        "role": ROLE, "person": PERSON, "tool": f"record_{module}",
    }
    files = {path.replace("MODULE", module): Template(text).substitute(values) for path, text in FILES.items()}
    for path, text in files.items():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_text(text.lstrip("\n"), encoding="utf-8")
    return target


def _module(name: str) -> str:
    if not NAME.match(name):
        raise NewProcessError(f"{name!r} is not a process name: lower-case letters and digits in words joined by "
                              "hyphens, starting with a letter (expense-claim)")
    module = name.replace("-", "_")
    if keyword.iskeyword(module) or module in ("baton", "workflows", "activities", "worker", "client", "tests"):
        raise NewProcessError(f"{name!r} would make a package named {module!r}, which Python or Baton already uses")
    if name in REGISTRY.known():
        raise NewProcessError(f"a process named {name!r} is already installed: choose another name")
    return module


def skeleton_size(directory: Path) -> tuple[int, int]:
    """Files and lines a skeleton holds: what adding a process costs."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    return len(files), sum(len(p.read_text(encoding="utf-8").splitlines()) for p in files)


FILES = {
    "pyproject.toml": '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$name"
version = "0.1.0"
description = "The $name process, on Baton"
requires-python = ">=3.11"
dependencies = ["baton"]

[tool.setuptools.packages.find]
include = ["$module*"]

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "session"
asyncio_default_test_loop_scope = "session"
''',
    "baton.toml": '''
# The worker's configuration for $name (merge these tables into your baton.toml).

[plugins]
packages = ["$module.plugin"]

# Who may approve: the role the process asks, and its people (the names tokens carry).
[roles.$role]
people = ["$person"]

# What the process may call, and nothing else.
[grants.$name]
tools = ["$tool"]

[systems]
db = ".baton/$module.db"
''',
    "example.json": '''
{"request_id": "R-1", "details": "A customer asks to move their delivery to next week."}
''',
    "MODULE/__init__.py": '''
"""The $name process and its tool, as a Baton package."""
''',
    "MODULE/plugin.py": '''
"""What this package brings to a Baton worker: named in baton.toml's [plugins]."""

from $module.tools import Records
from $module.workflow import $cls
from workflows.api import Package

package = Package(name="$name", processes=($cls,), systems=Records)
''',
    "MODULE/contracts.py": '''
"""What a $name run takes, what its model step answers, what its tool takes and gives, what it returns."""

from __future__ import annotations

from pydantic import BaseModel, Field

from workflows.api import Contract


class Request(BaseModel):
    """The run's input."""

    request_id: str = Field(min_length=1, max_length=40)
    details: str = Field(min_length=1, max_length=2000)

    def business_key(self) -> str:
        return self.request_id


class Summary(BaseModel):
    """What the model step answers."""

    text: str = Field(min_length=1, max_length=500, examples=["The request, in one line."])


class Record(Contract):
    """The tool's arguments."""

    request_id: str = Field(min_length=1, max_length=40)
    summary: str = Field(min_length=1, max_length=500)


class Recorded(Contract):
    """The tool's result."""

    record_id: str
    created: bool


class Outcome(BaseModel):
    """The process's own result, whatever the end."""

    request_id: str
    summary: str | None = None
    record_id: str | None = None
''',
    "MODULE/tools.py": '''
"""The system $name writes to (a SQLite table standing in for yours) and its one tool."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from $module.contracts import Record, Recorded
from workflows.api import Effect, SystemsSettings, tool


class Records:
    """Built by the worker from baton.toml's [systems]; its @tool methods are the package's tools."""

    def __init__(self, settings: SystemsSettings) -> None:
        Path(settings.db).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(settings.db)
        with sqlite3.connect(self.path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS ${module}_records (key TEXT PRIMARY KEY, request_id TEXT, summary TEXT)")

    @tool(Effect.WRITE, "Record a summarised request; once per idempotency key.")
    def $tool(self, record: Record, key: str) -> Recorded:
        with sqlite3.connect(self.path) as db:
            made = db.execute("INSERT OR IGNORE INTO ${module}_records VALUES (?, ?, ?)",
                              (key, record.request_id, record.summary))
        return Recorded(record_id="REC-" + key[-8:], created=made.rowcount == 1)
''',
    "MODULE/workflow.py": '''
"""$name: summarise the request (model), a person in the role reviews it (approval), record it (tool)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.api import ApprovalStatus, AskPolicy, PlannedStep, Process, RunOutcome, RunState

with workflow.unsafe.imports_passed_through():  # contracts and tools: loaded once per worker, not per run
    from $module.contracts import Outcome, Record, Request, Summary
    from $module.tools import Records

APPROVAL = AskPolicy(roles=["$role"], timeout=timedelta(hours=24))


@workflow.defn(name="$name")
class $cls(Process):
    name = "$name"
    roles = ("$role",)
    outputs = (Summary,)
    plan = (
        PlannedStep("summarise", "llm", tier="fast"),
        PlannedStep("review", "approval", roles=("$role",)),
        PlannedStep("record", "tool", tool="$tool"),
    )

    @workflow.run
    async def run(self, request: Request) -> RunOutcome[Outcome]:
        return await self.execute(lambda: self._handle(request), None)

    async def _handle(self, r: Request) -> RunOutcome[Outcome]:
        result = self.keep(Outcome(request_id=r.request_id))
        summary = await self.llm("summarise", f"Summarise request {r.request_id} in one line.\\n<request>\\n{r.details}\\n</request>",
                                 Summary, tier="fast")
        result.summary = summary.text
        review = await self.approval("review", ask=f"Record request {r.request_id} with this summary?",
                                     proposed=summary.text, context=summary, policy=APPROVAL)
        if review.status is ApprovalStatus.REJECTED:
            return self.end(RunState.REJECTED, f"not recorded: rejected by {review.by}", result)
        recorded = await self.tool("record", Records.$tool.tool_spec, Record(request_id=r.request_id, summary=summary.text))
        result.record_id = recorded.record_id
        return self.end(RunState.COMPLETED, f"recorded as {recorded.record_id}", result)
''',
    "tests/test_MODULE.py": '''
"""$name through Temporal on Baton's test kit: the model is a function, a person in the role decides."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from $module.contracts import Summary
from client.testkit import ModelTurn, process_test_env
from workflows.api import RunState

CONFIG = Path(__file__).resolve().parent.parent / "baton.toml"
REQUEST = {"request_id": "R-1", "details": "A customer asks to move their delivery to next week."}


def model(turn: ModelTurn) -> Summary:
    """The model, scripted: it answers the summarise step with the request's first words."""
    assert turn.step == "summarise"
    return Summary(text="Summary: " + turn.prompt.split("<request>")[1].strip()[:38])


async def test_a_request_is_summarised_approved_and_recorded(tmp_path):
    async with process_test_env(CONFIG, model=model, directory=tmp_path) as kit:
        run_id = await kit.baton.start("$name", REQUEST)
        await kit.wait_for(run_id, RunState.AWAITING_APPROVAL)
        await kit.baton.approve(run_id, by="$person", comment="looks right")
        outcome = await kit.baton.result(run_id)
        ledger = await kit.baton.ledger(run_id)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert [e.step for e in ledger] == ["summarise", "review", "record"]
    assert ledger[0].provider == "scripted" and ledger[1].by == "$person"
    with sqlite3.connect(tmp_path / "systems.db") as db:
        assert db.execute("SELECT request_id, summary FROM ${module}_records").fetchall() == [
            ("R-1", "Summary: A customer asks to move their delivery")]


async def test_a_rejected_request_records_nothing(tmp_path):
    async with process_test_env(CONFIG, model=model, directory=tmp_path) as kit:
        run_id = await kit.baton.start("$name", REQUEST)
        await kit.wait_for(run_id, RunState.AWAITING_APPROVAL)
        await kit.baton.reject(run_id, by="$person", comment="not ours")
        outcome = await kit.baton.result(run_id)

    assert outcome.state is RunState.REJECTED
    with sqlite3.connect(tmp_path / "systems.db") as db:
        assert db.execute("SELECT count(*) FROM ${module}_records").fetchone() == (0,)
''',
}
