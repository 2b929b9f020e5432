"""A model step sustained: 1,000 steps in a row on the local stack, against bare temporalio at its defaults.

Issue 20 item 3's "below bare Temporal's defaults": on a dev server started as
`temporal server start-dev` starts it, a sequential step takes ~12 ms for the first
twenty or so, then ~50 ms (the history service reads its one shard's task queues
at most 20 times a second: worker/devserver.py QUEUE_READS). In one run:

- bare temporalio, default `Worker`, on a default dev server: the figure to beat;
- the same bare worker on the server `baton dev` starts;
- a Baton process of N model steps (offline provider, encrypted payloads) on that server.

A step's time is the server's: from one model activity scheduled to the next.

    python -m benchmarks.steps [--steps 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from benchmarks.bare import BareRequest, BareSteps, noop
from benchmarks.harness import UNCAPPED, config, dev_server, history, machine, median, pct, plain, queue, table
from benchmarks.processes import STEPS_PROCESS, BatonSteps, StepsRequest
from worker.registration import baton_worker
from workflows import search_attributes as sa
from workflows.outcome import RunState
from temporalio.common import SearchAttributePair, TypedSearchAttributes

GOAL_MS = 15.0
SETTLED = 50  # steps after which the default server has spent its burst of reads


def step_ms(events: list, activity: str) -> list[float]:
    """Milliseconds from each `activity` scheduled to the next: one step each."""
    times = [e.event_time.ToDatetime() for e in events
             if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
             and e.activity_task_scheduled_event_attributes.activity_type.name == activity]
    return [(b - a).total_seconds() * 1000 for a, b in zip(times, times[1:])]


async def bare_run(client: Client, steps: int, timeout_s: float) -> list[float]:
    """N no-op steps on bare temporalio's default `Worker` (sandbox, pollers, cache all as shipped)."""
    q, run_id = queue("bare-default"), f"bench-bare-{uuid.uuid4().hex[:8]}"
    request = BareRequest(steps=steps, start_to_close_s=timeout_s,
                          schedule_to_close_s=UNCAPPED.max_wall_clock.total_seconds())
    bare = plain(client)
    async with Worker(bare, task_queue=q, workflows=[BareSteps], activities=[noop]):
        done = await bare.execute_workflow(BareSteps.run, request, id=run_id, task_queue=q)
    if done != steps:
        raise RuntimeError(f"the bare run did {done} of {steps} steps")
    return step_ms(await history(client, run_id), "bench_noop")


async def baton_run(client: Client, tmp: Path, steps: int) -> list[float]:
    cfg = config(tmp, budgets={STEPS_PROCESS: UNCAPPED})
    q, run_id = queue("baton"), f"{STEPS_PROCESS}-{uuid.uuid4().hex[:8]}"
    async with baton_worker(client, cfg, queue=q, extra_workflows=(BatonSteps,)):
        outcome = await client.execute_workflow(
            BatonSteps.run, StepsRequest(steps=steps), id=run_id, task_queue=q,
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.PROCESS, STEPS_PROCESS)]),
        )
    if outcome.state is not RunState.COMPLETED or outcome.steps != steps:
        raise RuntimeError(f"the Baton run did not complete its {steps} steps: {outcome.state} {outcome.reason}")
    return step_ms(await history(client, run_id), "call_model")


async def measure(steps: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        timeout_s = config(Path(tmp, "t")).llm_timeout_s()
        async with dev_server(defaults=True) as client:
            default = await bare_run(client, steps, timeout_s)
        async with dev_server() as client:
            bare = await bare_run(client, steps, timeout_s)
            baton = await baton_run(client, Path(tmp), steps)
    return {"default": default, "bare": bare, "baton": baton}


def report(steps: int, figures: dict[str, list[float]]) -> str:
    base = median(figures["default"][SETTLED:])
    rows = [
        (label, median(ms[:20]), median(ms[SETTLED:]), median(ms), pct(ms, 95), median(ms[SETTLED:]) / base)
        for label, ms in (
            ("bare temporalio, default Worker, default dev server", figures["default"]),
            ("bare temporalio, default Worker, baton dev's server", figures["bare"]),
            ("Baton model step (offline provider, encrypted), baton dev's server", figures["baton"]),
        )
    ]
    sustained = median(figures["baton"][SETTLED:])
    return "\n".join([
        f"steps: {steps} sequential steps per run; a step = one activity scheduled to the next (server time, ms); "
        f"sustained = after step {SETTLED}",
        table("", ["run", "first 20, median", "sustained, median", "all, median", "all, p95", "sustained / default"],
              rows).lstrip("\n"),
        f"goal: a Baton model step <= {GOAL_MS:.0f} ms median sustained over {steps} steps -> {sustained:.1f} ms "
        f"({'met' if sustained <= GOAL_MS else 'NOT met'}), against {base:.1f} ms for bare temporalio at its defaults",
        machine(),
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000, help=f"steps per run (> {SETTLED})")
    args = p.parse_args()
    if args.steps <= SETTLED:
        p.error(f"--steps must be above {SETTLED}")
    print(report(args.steps, asyncio.run(measure(args.steps))))


if __name__ == "__main__":
    main()
