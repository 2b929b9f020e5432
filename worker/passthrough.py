"""Which process modules the workflow sandbox passes through: those a static check finds deterministic.

Re-imported in the sandbox for every run, a process module (its imports, its
`@workflow.defn`, everything it builds at import) cost most of a run's worker
CPU and memory per cached run (benchmarks/throughput.py, benchmarks/parked.py).
Passed through, it loads once per worker, and the sandbox no longer intercepts
what it calls or gives each run fresh module state. This check stands in for
it, at worker start, on every process of every installed package (a team's as
Baton's own) and on each module of the same package it imports outside
`workflow.unsafe.imports_passed_through()`: no clock, randomness, I/O,
environment or threads, and no module or class state a run could change and
the next one see. A module that fails stays in the sandbox, re-imported per
run as before, and the worker says once which and why.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
from collections.abc import Iterable

FORBIDDEN_IMPORTS = {
    "os", "sys", "random", "secrets", "time", "socket", "subprocess", "threading", "multiprocessing",
    "sqlite3", "httpx", "requests", "urllib", "shutil", "tempfile", "pathlib", "uuid", "logging",
}
FORBIDDEN_CALLS = {
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("asyncio", "sleep"), ("asyncio", "wait_for"), ("os", "environ"), ("os", "getenv"),
}
FORBIDDEN_BUILTINS = {"open", "input", "exec", "eval", "__import__"}
MUTABLE = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)

log = logging.getLogger("baton.worker")


def problems(source: str) -> list[str]:
    """What in `source` would make a workflow non-deterministic, or leak state between runs."""
    tree = ast.parse(source)
    found = [p for node in ast.walk(tree) for p in _node_problems(node)]
    found += _mutable_bindings(tree.body, "module")
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        found += _mutable_bindings(cls.body, "class", annotated=_is_workflow(cls))
    return found


def _is_workflow(cls: ast.ClassDef) -> bool:
    """A `@workflow.defn` class: the one object every run of a passed-through process module shares."""
    return any("workflow.defn" in ast.unparse(d) for d in cls.decorator_list)


def _node_problems(node: ast.AST) -> list[str]:
    """One node's calls and imports the sandbox would have refused or isolated."""
    if isinstance(node, ast.Import):
        return [f"imports {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_IMPORTS]
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FORBIDDEN_IMPORTS:
        return [f"imports from {node.module}"]
    if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
        owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr  # datetime.now, datetime.datetime.now
        return [f"uses {owner}.{node.attr}"] if (owner, node.attr) in FORBIDDEN_CALLS else []
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_BUILTINS:
        return [f"calls {node.func.id}()"]
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return [f"rebinds {', '.join(node.names)} ({type(node).__name__.lower()})"]
    return []


def _mutable_bindings(body: list[ast.stmt], where: str, annotated: bool = True) -> list[str]:
    """Lists, dicts and sets bound in a module or class body: state one run could change and the next see.

    An annotated one in a class body is a field's default (pydantic and
    dataclasses give each instance its own copy), except in a workflow class.
    """
    kinds = (ast.Assign, ast.AnnAssign) if annotated else (ast.Assign,)
    return [
        f"{where}-level mutable {type(node.value).__name__.lower()} at line {node.lineno}"
        for node in body
        if isinstance(node, kinds) and isinstance(node.value, MUTABLE)
    ]


def _own_imports(tree: ast.Module, module: str) -> set[str]:
    """The modules of `module`'s own top-level package it imports in the sandbox (not within imports_passed_through)."""
    package = module.split(".")[0]
    passed = {id(n) for w in ast.walk(tree) if isinstance(w, ast.With) and _passes_through(w) for n in ast.walk(w)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in passed:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), module.rpartition(".")[0]) \
                if node.level else node.module or ""
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {n for n in names if n.split(".")[0] == package and _is_module(n)}


def _is_module(name: str) -> bool:
    """Whether `name` is a module (`from pkg.mod import Class` names both `pkg.mod` and `pkg.mod.Class`)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _passes_through(node: ast.With) -> bool:
    return any(ast.unparse(item.context_expr).endswith("imports_passed_through()") for item in node.items)


def module_problems(module: str, passed: Iterable[str] = ()) -> list[str]:
    """`module`'s problems and those of its package's modules it imports in the sandbox, each named."""
    passed = tuple(passed)
    todo, seen, found = [module], set(), []
    while todo:
        name = todo.pop()
        if name in seen or any(name == p or name.startswith(p + ".") for p in passed):
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            found.append(f"{name}: no Python source to check")
            continue
        with open(spec.origin, encoding="utf-8") as f:
            source = f.read()
        found += [f"{name}: {p}" for p in problems(source)]
        todo += sorted(_own_imports(ast.parse(source), name))
    return found


def process_modules(workflows: Iterable[type], passed: Iterable[str]) -> tuple[str, ...]:
    """The modules defining `workflows` that pass the check; each that fails is said once, and stays sandboxed."""
    passed = tuple(passed)
    chosen: list[str] = []
    for module in dict.fromkeys(cls.__module__ for cls in workflows):
        if module == "__main__" or any(module == p or module.startswith(p + ".") for p in passed):
            continue
        found = module_problems(module, passed)
        if found:
            log.warning("process module %s is re-imported in the workflow sandbox for every run (%s)",
                        module, "; ".join(found))
        else:
            chosen.append(module)
    return tuple(chosen)
