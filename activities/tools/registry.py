"""The tool registry: every tool's name, typed arguments, result and declared effect.

A tool is declared where it is implemented, by `@tool(effect, description)` on
a method of the system of record it talks to (the shipped examples' systems,
or a team's package): its arguments and result are the method's annotations.
Declaring registers it here, once per worker, so workflows know, before
scheduling, what a tool may do: `read` tools only look; `write` tools change a
system of record and must carry an idempotency key; `irreversible` tools reach
the outside world (an e-mail cannot be unsent) and carry one too.

A package's tool is handed its key, so a retry is safe. A tool that cannot
take one (an MCP server's tool that is neither idempotent nor told the key) is
`at_most_once`: it gets one attempt, and an attempt whose outcome is unknown is
handed to a person (workflows/engine.py), never repeated blindly.

A write's key is per run step (`run_step_key`: workflow id and step), which
makes a retry safe. What must hold across calls and runs (an order's refunds
never exceed what was paid) is the system of record's to enforce, in the same
transaction as the write: a key per business object would let the first call,
rogue or not, stand for every later one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Generic, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., BaseModel])


class Effect(StrEnum):
    READ = "read"
    WRITE = "write"
    IRREVERSIBLE = "irreversible"


@dataclass(frozen=True)
class ToolSpec(Generic[A, R]):
    name: str
    effect: Effect
    args: type[A]
    result: type[R]
    description: str
    origin: str = ""  # module:qualname of the implementation, so a second import of it is known for the same tool
    retry_safe: bool = True  # a repeat does no harm: it reads, is idempotent, or honours the key it is sent

    @property
    def at_most_once(self) -> bool:
        """A change that a second attempt could make twice: one attempt, and an unknown outcome goes to a person."""
        return not self.retry_safe and self.effect is not Effect.READ

    @property
    def needs_idempotency_key(self) -> bool:
        return self.effect is not Effect.READ

    def idempotency_key(self, run_step_key: str) -> str | None:
        """The key a call carries: none to read, else its run step's (what must hold across calls, the system enforces)."""
        return run_step_key if self.needs_idempotency_key else None


class SystemsSettings(BaseModel):
    """`[systems]`: where the systems of record keep their data, handed to each package's `systems` factory."""

    model_config = ConfigDict(extra="forbid")
    db: Path = Path(".baton/systems.db")
    seed: Path | None = Path("examples/systems.json")


class DuplicateTool(ValueError):
    pass


TOOLS: dict[str, ToolSpec] = {}  # filled as tools are declared (imported), before any worker starts


def register(spec: ToolSpec) -> ToolSpec:
    """Add `spec`; the same implementation imported again keeps its first spec, another one under its name is refused."""
    known = TOOLS.get(spec.name)
    if known is not None and known.origin != spec.origin:
        raise DuplicateTool(f"tool {spec.name!r} is declared twice: by {known.origin} and by {spec.origin}")
    return TOOLS.setdefault(spec.name, spec)


def tool(effect: Effect, description: str) -> Callable[[F], F]:
    """Declare the method below as a tool: `def NAME(self, args: Args, key: str | None) -> Result`.

    The tool's name is the method's. The worker calls it on the package's
    systems object with the validated arguments and the call's idempotency key
    (None only for reads). The method keeps its own type, so a workflow's
    `self.tool(step, Systems.NAME, args)` is typed by it (`declared` finds the spec).
    """

    def declare(impl: F) -> F:
        hints = get_type_hints(impl)
        params = [p for p in inspect.signature(impl).parameters if p != "self"]
        if len(params) != 2 or "return" not in hints:
            raise TypeError(f"tool {impl.__qualname__} must take (args, key) and declare its result type")
        args, result = hints[params[0]], hints["return"]
        for kind, cls in (("arguments", args), ("result", result)):
            if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
                raise TypeError(f"tool {impl.__qualname__}: its {kind} must be a pydantic model, not {cls!r}")
        spec = ToolSpec(impl.__name__, effect, args, result, description, f"{impl.__module__}:{impl.__qualname__}")
        impl.tool_spec = register(spec)  # type: ignore[attr-defined]
        return impl

    return declare


def tools_of(systems: object) -> list[str]:
    """The tools a systems object implements: its `@tool` methods, by name."""
    return sorted(
        member.tool_spec.name for _, member in inspect.getmembers(type(systems))
        if isinstance(getattr(member, "tool_spec", None), ToolSpec)
    )


def declared(tool: object) -> ToolSpec:
    """The spec of a tool given by its spec, its `@tool` method or its name."""
    if isinstance(tool, ToolSpec):
        return tool
    if isinstance(tool, str):
        return spec_of(tool)
    spec = getattr(tool, "tool_spec", None)
    if not isinstance(spec, ToolSpec):
        raise TypeError(f"{tool!r} is no tool: declare it with @tool(effect, description), or name it")
    return spec


def spec_of(name: str) -> ToolSpec:
    """The declared tool `name`; KeyError names the tools this worker knows."""
    try:
        return TOOLS[name]
    except KeyError:
        raise KeyError(f"no tool {name!r} is declared (known: {', '.join(sorted(TOOLS)) or 'none'})") from None
