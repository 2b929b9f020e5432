"""What the sandbox passes through must stay deterministic without it: the engine, the examples' rules, and process modules.

Passed through (worker/registration.py PASSTHROUGH; the examples' workflow
modules import their contracts and rules within `imports_passed_through`; and
each process module worker/passthrough.py's check clears at worker start),
they load once per worker instead of once per run, and the sandbox no longer
intercepts what they call. The check stands in for it: no clock, randomness,
I/O, environment or threads, and no module or class state a run could change
and the next one see. A process module it refuses, a team's as Baton's own,
stays in the sandbox, which still catches what it calls.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Worker

from worker.passthrough import problems, process_modules
from worker.registration import ENGINE, PASSTHROUGH, workflow_runner
from workflows.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
EXAMPLES = ROOT / "examples" / "baton_examples"


# The examples' tools modules are passed through too, for their argument and result types; their
# methods (SQLite) run only in the tool activity, never in a workflow.
EXAMPLE_RULES = [*EXAMPLES.glob("*/contracts.py"), *EXAMPLES.glob("*/kyc.py"), *EXAMPLES.glob("*/rules.py")]
PASSED_THROUGH = sorted([WORKFLOWS / f"{m}.py" for m in ENGINE] + EXAMPLE_RULES, key=str)


@pytest.mark.parametrize("path", PASSED_THROUGH, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_passed_through_module_calls_nothing_nondeterministic(path: Path):
    assert problems(path.read_text()) == []


def test_every_engine_module_is_passed_through_and_every_example_rule_is_checked():
    assert all(f"workflows.{m}" in PASSTHROUGH for m in ENGINE)
    assert len(EXAMPLE_RULES) == 7  # five processes' contracts, onboarding's KYC rules, prior authorization's policy rules


def test_the_check_finds_what_the_sandbox_would_have_caught():
    planted = (
        "import random\nimport datetime\nSEEN = {}\n"
        "@workflow.defn\nclass P:\n    runs = []\n    seen: dict = {}\nclass Fields(BaseModel):\n    trail: list = []\n"
        "def f():\n    global SEEN\n    return datetime.datetime.now(), open('x')\n"
    )
    assert sorted(problems(planted)) == [
        "calls open()", "class-level mutable dict at line 7", "class-level mutable list at line 6", "imports random",
        "module-level mutable dict at line 3", "rebinds SEEN (global)", "uses datetime.now",
    ]


def test_every_shipped_process_module_is_passed_through():
    REGISTRY.load()
    modules = {cls.__module__ for cls in REGISTRY.workflows()} - {"workflows.bounded_agent"}
    assert len(modules) >= 3 and set(process_modules(REGISTRY.workflows(), PASSTHROUGH)) >= modules


# A team's package, as it would install it: a process module, and a module of rules it imports in the sandbox.
TEAM_PROCESS = """
    from temporalio import workflow
    from {package}.rules import verdict

    TOKEN = object()  # built once per import: the run hands back which copy of the module it ran

    @workflow.defn(name="{package}")
    class Team:
        @workflow.run
        async def run(self) -> str:
            return f"{{verdict()}} {{id(TOKEN)}}"
"""
CLEAN_RULES = "def verdict() -> str:\n    return 'clear'\n"
RANDOM_RULES = "import random\n\ndef verdict() -> str:\n    return 'clear' if random.random() < 2 else 'review'\n"


def team_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rules: str) -> type:
    """A fresh package of a team's in `tmp_path`, imported as a worker imports a plugin: its workflow class."""
    package = f"team_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "rules.py").write_text(rules)
    (tmp_path / package / "workflow.py").write_text(textwrap.dedent(TEAM_PROCESS.format(package=package)))
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__(f"{package}.workflow")
    return sys.modules[f"{package}.workflow"].Team


async def run_team(env, cls: type) -> tuple[str | None, list]:
    """Run `cls` once on a worker with Baton's sandbox: its result (None if its first task failed) and history."""
    queue = f"team-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[cls], workflow_runner=workflow_runner([cls])):
        handle = await env.client.start_workflow(cls.run, id=f"{queue}-run", task_queue=queue)
        for _ in range(100):
            events = (await handle.fetch_history()).events
            if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in events):
                await handle.terminate()
                return None, events
            if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED for e in events):
                return await handle.result(), events
            await asyncio.sleep(0.1)
    raise AssertionError("the team's run neither completed nor failed a task")


async def test_a_teams_clean_process_module_loads_once_per_worker(time_env, tmp_path, monkeypatch):
    cls = team_package(tmp_path, monkeypatch, CLEAN_RULES)
    assert process_modules([cls], PASSTHROUGH) == (cls.__module__,)
    result, _ = await run_team(time_env, cls)
    assert result == f"clear {id(sys.modules[cls.__module__].TOKEN)}"  # the worker's own copy, not a per-run import


async def test_a_teams_process_module_importing_random_stays_in_the_sandbox_which_catches_it(
    dev_env, tmp_path, monkeypatch, caplog
):
    """On the dev server: the time-skipping one stops skipping time for later tests after a run terminated mid-task."""
    cls = team_package(tmp_path, monkeypatch, RANDOM_RULES)
    assert process_modules([cls], PASSTHROUGH) == ()
    assert f"{cls.__module__.rpartition('.')[0]}.rules: imports random" in caplog.text
    result, events = await run_team(dev_env, cls)
    failed = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert result is None and "random" in failed[0].workflow_task_failed_event_attributes.failure.message
