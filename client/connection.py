"""One way to reach Temporal, shared by the SDK, the CLI and the worker.

Connection settings come from Temporal's own environment configuration
(`temporalio.envconfig`: the `TEMPORAL_*` variables and the profiles in
`temporal.toml`), so the same code reaches the local dev server, a
self-hosted cluster or Temporal Cloud unchanged. Payloads go through the
pydantic data converter so every contract stays a typed model.
"""

from __future__ import annotations

import os
import re

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

DEFAULT_TARGET = "localhost:7233"


def task_queue() -> str:
    """The task queue Baton's workers poll and its clients start runs on."""
    return os.environ.get("BATON_TASK_QUEUE", "baton")


def connect_options() -> dict:
    options = dict(ClientConfig.load_client_connect_config())
    options.setdefault("target_host", DEFAULT_TARGET)
    return options


async def connect(target: str | None = None) -> Client:
    """Connect as envconfig says, or to `target` (the local dev stack) when given."""
    options = connect_options()
    if target is not None:
        options = {"target_host": target, "namespace": options.get("namespace", "default")}
    try:
        return await Client.connect(**options, data_converter=pydantic_data_converter)
    except RuntimeError as err:
        found = re.search(r'message: "([^"]+)"', str(err))
        raise ConnectionError(
            f"cannot reach Temporal at {options['target_host']} "
            f"(namespace {options.get('namespace', 'default')}): {found[1] if found else err}. "
            "Start one with `baton dev`, or set TEMPORAL_ADDRESS / TEMPORAL_PROFILE."
        ) from err
