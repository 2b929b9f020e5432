"""`python -m tests.crash_worker --config FILE`: the real Baton worker, with pause points for kill -9.

Test-only. It builds the worker exactly as `python -m worker` does
(`worker.registration.baton_worker`: every process, every activity, baton.toml),
connected through envconfig (TEMPORAL_ADDRESS) to BATON_TASK_QUEUE, and wraps
two seams so a test can land a kill -9 at a chosen point:

- a tool named in BATON_CRASH_TOOLS (comma-separated) does its real work (the
  write commits), then writes a marker file and sleeps BATON_CRASH_PAUSE_S
  before returning: a kill then lands after the commit and before Temporal
  hears of it, the nastiest point;
- a model call whose output type is named in BATON_CRASH_MODELS (e.g.
  `WelcomeEmail`) gets its offline answer, writes a marker and sleeps inside
  `complete`; with BATON_CRASH_RUNS (workflow ids), only in those runs; with
  BATON_CRASH_MODELS_AFTER_TOOLS=1 only once its conversation holds a tool
  result (an agent between two turns).

BATON_CRASH_FULL_PRICE=1 bills every offline answer its whole
`max_output_tokens`, so what a request costs is its worst case, known from the
model's prices (spend caps across runs count it to the cent).

BATON_CRASH_SLOW_S (for chaos) adds that many seconds after every write and
irreversible tool call and inside every model call, so random kills often land
inside a step. Markers go to BATON_CRASH_MARKERS (a directory), one JSON file
per paused call: `{kind}-{name}-{uuid}.json` holding the idempotency key, the
attempt and the pid. These variables are read here only, never by product code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
import uuid
from pathlib import Path

from temporalio import activity

from activities.llm.catalog import ModelSpec
from activities.llm.conversation import Conversation
from activities.llm.offline import OfflineProvider
from activities.llm.provider import Completion, Usage
from activities.tools.activity import ToolActivities
from activities.tools.registry import TOOLS
from activities.tools.contracts import ToolCall, ToolResult
from worker.config import load
from worker.connection import connect, task_queue
from worker.exit import exit_now
from worker.registration import baton_worker
from worker.shutdown import until_interrupted


def _names(var: str) -> set[str]:
    return {n.strip() for n in os.environ.get(var, "").split(",") if n.strip()}


PAUSE_TOOLS = _names("BATON_CRASH_TOOLS")
PAUSE_MODELS = _names("BATON_CRASH_MODELS")
PAUSE_RUNS = _names("BATON_CRASH_RUNS")  # pause only in these runs (workflow ids); every run when empty
FULL_PRICE = os.environ.get("BATON_CRASH_FULL_PRICE") == "1"  # bill every answer its whole max_output_tokens
PAUSE_AFTER_TOOLS = os.environ.get("BATON_CRASH_MODELS_AFTER_TOOLS") == "1"
PAUSE_S = float(os.environ.get("BATON_CRASH_PAUSE_S", "600"))
SLOW_S = float(os.environ.get("BATON_CRASH_SLOW_S", "0"))
MARKERS = Path(os.environ.get("BATON_CRASH_MARKERS", "."))


def mark(kind: str, name: str, **detail) -> None:
    """Say where we are, atomically (a test polls for the file, then kills us)."""
    body = json.dumps({"kind": kind, "name": name, "pid": os.getpid(), **detail})
    path = MARKERS / f"{kind}-{name}-{uuid.uuid4().hex[:8]}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(body)
    tmp.rename(path)


class PausingTools(ToolActivities):
    @activity.defn(name="run_tool")
    def run_tool(self, call: ToolCall) -> ToolResult:
        result = super().run_tool(call)  # the real call: a write has committed by now
        if call.tool in PAUSE_TOOLS:
            mark("tool", call.tool, key=call.idempotency_key, attempt=activity.info().attempt,
                 workflow_id=activity.info().workflow_id)
            time.sleep(PAUSE_S)
        elif SLOW_S and TOOLS[call.tool].needs_idempotency_key:
            time.sleep(SLOW_S)
        return result


class PausingOffline(OfflineProvider):
    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        completion = await super().complete(conversation, model)
        if FULL_PRICE:  # what it costs is then its worst case, known from the config's prices alone
            completion = completion.model_copy(update={"usage": Usage(input=0, output=conversation.max_output_tokens)})
        info = activity.info()
        if conversation.output_name in PAUSE_MODELS and (not PAUSE_RUNS or info.workflow_id in PAUSE_RUNS) and (
            not PAUSE_AFTER_TOOLS or any(m.role == "tool" for m in conversation.messages)
        ):
            mark("model", conversation.output_name, attempt=info.attempt, workflow_id=info.workflow_id)
            await asyncio.sleep(PAUSE_S)
        elif SLOW_S:
            await asyncio.sleep(SLOW_S)
        return completion


async def serve(config_file: Path) -> None:
    config = load(config_file, demo=True)  # the shipped processes with their shipped grants, as `--demo` runs them
    client = await connect()
    providers = {"offline": PausingOffline(config.offline_scripts())}
    async with baton_worker(client, config, tools_class=PausingTools, providers=providers):
        print(f"crash-worker polling {task_queue()!r} pid={os.getpid()}", flush=True)
        await until_interrupted()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.crash_worker", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args.config))
    exit_now(0)


if __name__ == "__main__":
    main()
