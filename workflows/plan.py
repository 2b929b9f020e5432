"""A process's plan: the steps it may take, declared next to the code that takes them.

A process writes its graph as plain Python, which nobody can list without
running it; a governance review asks first for that list (which models, which
tools, which people). So each process also carries `plan`, a static
declaration of its steps in order, which `baton tools` prints beside
baton.toml. A declaration can drift from the code, so tests/test_inventory.py
runs the routes and checks every ledger entry against it.

An irreversible tool's approval is declared as its own `approval` step, named
`<step>.approval` as the ledger names it, so every ledger entry has a match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StepKindName = Literal["llm", "tool", "rule", "approval", "agent"]


@dataclass(frozen=True)
class PlannedStep:
    """One step a process may take; which of the fields apply depends on `kind`."""

    step: str  # the step name, as the ledger records it
    kind: StepKindName
    tier: str | None = None  # llm: the tier it asks for
    tool: str | None = None  # tool: the catalog name it calls
    agent: str | None = None  # agent: the name of one of the process's `agents`
    roles: tuple[str, ...] = ()  # approval: the roles asked, escalations included, in order
    note: str = ""  # when the step is taken, if not always
