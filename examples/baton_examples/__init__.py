"""Baton's shipped processes, written only against `workflows.api`, exactly as a team's package is.

Installed as its own distribution (examples/pyproject.toml) and found by the
worker, the CLI and the replayer through the `baton.processes` entry point
(`baton_examples.package:package`), the same way a team's package is found
(or named in baton.toml's `[plugins] packages`). Each process keeps its
workflow, contracts, rules and tools in its own folder; the SQLite systems
of record its tools talk to are `systems.py`.

This file imports nothing: a workflow module loads in the sandbox with its
parent packages, and a contract imported here would be loaded there a second
time, as another class than the one its process declared.
"""
