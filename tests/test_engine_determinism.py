"""The engine modules and the examples' contracts and rules the sandbox passes through must stay deterministic without it.

Passed through (worker/registration.py PASSTHROUGH; the examples' workflow
modules import their contracts and rules within `imports_passed_through`),
they load once per worker
instead of once per run, and the sandbox no longer intercepts what they call.
This check stands in for it: no clock, randomness, I/O, environment or
threads, and no module state a run could change and the next one see.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from worker.registration import ENGINE, PASSTHROUGH

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
EXAMPLES = ROOT / "examples" / "baton_examples"

FORBIDDEN_IMPORTS = {
    "os", "sys", "random", "secrets", "time", "socket", "subprocess", "threading", "multiprocessing",
    "sqlite3", "httpx", "requests", "urllib", "shutil", "tempfile", "pathlib", "uuid", "logging",
}
FORBIDDEN_CALLS = {
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("asyncio", "sleep"), ("asyncio", "wait_for"), ("os", "environ"), ("os", "getenv"),
}
FORBIDDEN_BUILTINS = {"open", "input", "exec", "eval", "__import__"}


def problems(source: str) -> list[str]:
    """What in `source` would make a workflow non-deterministic, or leak state between runs."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FORBIDDEN_IMPORTS:
            found.append(f"imports from {node.module}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in FORBIDDEN_CALLS:
                found.append(f"uses {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_BUILTINS:
            found.append(f"calls {node.func.id}()")
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            found.append(f"rebinds {', '.join(node.names)} ({type(node).__name__.lower()})")
    for node in tree.body:  # module state a run could mutate: lists, dicts and sets bound at module level
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)):
            found.append(f"module-level mutable {type(value).__name__.lower()} at line {node.lineno}")
    return found


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
        "import random\nfrom datetime import datetime\nSEEN = {}\n"
        "def f():\n    global SEEN\n    return datetime.now(), open('x')\n"
    )
    assert sorted(problems(planted)) == [
        "calls open()", "imports random", "module-level mutable dict at line 3", "rebinds SEEN (global)",
        "uses datetime.now",
    ]


def test_every_module_that_defines_a_workflow_still_loads_in_the_sandbox():
    defining = {p for root in (WORKFLOWS, EXAMPLES) for p in root.rglob("*.py") if "@workflow.defn" in p.read_text()}
    assert len(defining) > 3 and not defining & set(PASSED_THROUGH)
    assert not any(m.startswith("baton_examples") for m in PASSTHROUGH)
