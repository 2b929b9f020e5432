"""Finding the packages whose processes and tools a worker runs: named in baton.toml, or by an entry point.

A package is a Python module with a `package` attribute (a
`workflows.api.Package`), named in `[plugins] packages` (`"team_pkg"`, or
`"team_pkg.sub:attr"` for another attribute), or, when baton.toml names none,
advertised by an installed distribution in the `baton.processes` entry point
group (how Baton's own examples come in). Only names from the worker's own config or installed
distributions are imported: nothing a run, a caller or a model says.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

GROUP = "baton.processes"


class PluginError(ValueError):
    pass


def advertised() -> dict[str, object]:
    """The packages installed distributions advertise, by entry point name."""
    return {ep.name: _loaded(ep.value, ep.load) for ep in entry_points(group=GROUP)}


def named(spec: str) -> object:
    """The package `spec` names: `module` (its `package`) or `module:attribute`."""
    module, _, attr = spec.partition(":")
    return _loaded(spec, lambda: getattr(importlib.import_module(module), attr or "package"))


def _loaded(spec: str, load) -> object:
    try:
        return load()
    except ImportError as err:
        raise PluginError(f"cannot import {spec!r}: {err}") from None
    except AttributeError:
        raise PluginError(f"{spec!r} has no Baton package (a module-level `package = Package(...)`)") from None
