"""What a worker, the CLI and the replayer know: the processes of the packages installed, by name.

A package (Baton's own examples, or a team's) is a `Package`: its processes
(workflow classes on `Process`), the factory of the systems its tools talk to,
and the old import paths its output models were once recorded under. It is
found by activities/plugins.py (`[plugins] packages` in baton.toml, or, when
it names none, every entry point) and installed here once per process, before any worker starts:
its processes become known by name with the input model their `run` takes,
and their output models (`outputs`, and each agent's) get their stable names
(`<process>.<ClassName>`). No run ever writes to this registry; passed through
the sandbox, every run reads the one the worker filled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import BaseModel
from temporalio import workflow

from workflows.agents import SupervisorVerdict
from workflows.bounded_agent import BoundedAgent
from workflows.engine import Process

with workflow.unsafe.imports_passed_through():
    from activities import plugins
    from activities.llm import output_type
    from activities.tools.registry import SystemsSettings


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    workflow: type
    input: type[BaseModel]

    @classmethod
    def of(cls, process: type[Process]) -> ProcessSpec:
        """A process by its `name`, with the input model its `@workflow.run` method takes."""
        hints = {k: v for k, v in get_type_hints(process.run).items() if k != "return"}
        if len(hints) != 1 or not issubclass(next(iter(hints.values())), BaseModel):
            raise TypeError(f"process {process.__qualname__}: run must take one pydantic input model")
        return cls(process.name, process, next(iter(hints.values())))


@dataclass(frozen=True)
class Package:
    """What a package contributes: its processes, its systems of record, and its models' old names."""

    name: str
    processes: tuple[type[Process], ...]
    systems: Callable[[SystemsSettings], Any] | None = None  # the object whose `@tool` methods run its tools
    legacy_outputs: Mapping[str, type[BaseModel]] = field(default_factory=dict)  # old import path -> model


class Registry:
    def __init__(self) -> None:
        self.processes: dict[str, ProcessSpec] = {}
        self.packages: dict[str, Package] = {}
        self._found = False

    def install(self, package: Package) -> None:
        """Make `package`'s processes known; a name another package's process holds is refused."""
        if not isinstance(package, Package):
            raise plugins.PluginError(f"{package!r} is not a workflows.api.Package")
        if self.packages.get(package.name) is package:
            return
        for process in package.processes:
            self.add_process(process)
        for old, model in package.legacy_outputs.items():
            output_type.register(model, output_type.type_name(model), legacy=(old,))
        self.packages[package.name] = package

    def add_process(self, process: type[Process]) -> ProcessSpec:
        """Register one process of a package and name its output models."""
        spec = ProcessSpec.of(process)
        known = self.processes.get(spec.name)
        if known is not None and known.workflow is not process:
            raise plugins.PluginError(f"two processes are named {spec.name!r}: {known.workflow.__module__} and {process.__module__}")
        name_outputs(process)
        self.processes[spec.name] = spec
        return spec

    def load(self, named: Iterable[str] = ()) -> None:
        """Choose the packages: those `named` (baton.toml's `[plugins] packages`), else the advertised ones.

        Named packages replace discovery, so a team's worker runs its own package
        only, and needs roles and grants for its own processes only. Without
        names, every installed distribution's advertised package runs (chosen once).
        """
        named = list(named)
        if named:
            self._choose([plugins.named(spec) for spec in named])
        elif not self._found:
            self._choose(plugins.advertised().values())

    def _choose(self, packages: Iterable[object]) -> None:
        """Run exactly `packages` (all imported already: one that failed to import changed nothing)."""
        self._found = True
        self.processes, self.packages = {}, {}
        for package in packages:
            self.install(package)

    def known(self) -> dict[str, ProcessSpec]:
        """Every installed process by name (installing the advertised packages on first use)."""
        self.load()
        return self.processes

    def workflows(self) -> list[type]:
        """What a worker (and the replayer) registers: the processes, and the agent loop they delegate to."""
        return [*(spec.workflow for spec in self.known().values()), BoundedAgent]

    def systems(self, settings: SystemsSettings) -> list[Any]:
        """Each installed package's systems of record, opened on `settings`."""
        self.load()
        return [p.systems(settings) for p in self.packages.values() if p.systems is not None]


def name_outputs(process: type[Process]) -> None:
    """Give the models a process's model steps and agents answer their stable names, `<process>.<ClassName>`."""
    for model in (*process.outputs, *(a.output for a in process.agents)):
        output_type.register(model, f"{process.name}.{model.__name__}")


REGISTRY = Registry()
output_type.register(SupervisorVerdict, "baton.SupervisorVerdict", legacy=("workflows.agents:SupervisorVerdict",))
