"""What Baton adds per model step, against bare temporalio on the same server in the same run.

A Baton process of N model steps (benchmarks/processes.py: `self.llm` on the
offline provider, which answers with no artificial latency) against a bare
workflow of N no-op activities with a model step's retry policy and timeouts,
each on its own worker with the same settings. After a warm-up, rounds run the
two one after the other, alternating which goes first. A run's time is the
server's: its first history event to its last.

    python -m benchmarks.overhead [--steps 20] [--rounds 15] [--warmup 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.client import Client

from benchmarks.harness import (
    UNCAPPED, bare_worker, config, dev_server, history, machine, median, pct, plain, queue, run_seconds, table,
)
from benchmarks.bare import BareRequest, BareSteps
from benchmarks.processes import STEPS_PROCESS, BatonSteps, StepsRequest
from worker.config import BatonConfig
from worker.registration import baton_worker
from workflows import search_attributes as sa
from workflows.outcome import RunState
from temporalio.common import SearchAttributePair, TypedSearchAttributes


class Runner:
    def __init__(self, client: Client, cfg: BatonConfig, baton_queue: str, bare_queue: str) -> None:
        self.client, self.cfg, self.baton_queue, self.bare_queue = client, cfg, baton_queue, bare_queue

    async def baton(self, steps: int) -> tuple[float, float, int, float]:
        """One Baton run: (server seconds, client seconds, history events, CPU seconds of this process)."""
        run_id = f"{STEPS_PROCESS}-{uuid.uuid4().hex[:8]}"
        cpu = time.process_time()
        started = time.perf_counter()
        outcome = await self.client.execute_workflow(
            BatonSteps.run, StepsRequest(steps=steps), id=run_id, task_queue=self.baton_queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.PROCESS, STEPS_PROCESS)]),
        )
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        if outcome.state is not RunState.COMPLETED or outcome.steps != steps:
            raise RuntimeError(f"the Baton run did not complete its {steps} steps: {outcome.state} {outcome.reason}")
        events = await history(self.client, run_id)
        return run_seconds(events), wall, len(events), cpu

    async def bare(self, steps: int) -> tuple[float, float, int, float]:
        run_id = f"bench-bare-{uuid.uuid4().hex[:8]}"
        request = BareRequest(
            steps=steps, start_to_close_s=self.cfg.llm_timeout_s(),
            schedule_to_close_s=UNCAPPED.max_wall_clock.total_seconds(),
        )
        cpu = time.process_time()
        started = time.perf_counter()
        done = await plain(self.client).execute_workflow(BareSteps.run, request, id=run_id, task_queue=self.bare_queue)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        if done != steps:
            raise RuntimeError(f"the bare run did {done} of {steps} steps")
        events = await history(self.client, run_id)
        return run_seconds(events), wall, len(events), cpu


async def measure(steps: int, rounds: int, warmup: int) -> str:
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        cfg = config(Path(tmp), budgets={STEPS_PROCESS: UNCAPPED})
        async with dev_server() as client:
            baton_q, bare_q = queue("baton"), queue("bare")
            async with baton_worker(client, cfg, queue=baton_q, extra_workflows=(BatonSteps,)), \
                    bare_worker(client, bare_q):
                r = Runner(client, cfg, baton_q, bare_q)
                for _ in range(warmup):
                    await r.baton(steps)
                    await r.bare(steps)
                one_baton, one_bare = (await r.baton(1))[2], (await r.bare(1))[2]
                a, b = [], []  # (server s, client s, events) per round: Baton, bare
                for i in range(rounds):
                    if i % 2:
                        b.append(await r.bare(steps))
                        a.append(await r.baton(steps))
                    else:
                        a.append(await r.baton(steps))
                        b.append(await r.bare(steps))
    return report(steps, rounds, warmup, a, b, one_baton, one_bare)


def report(steps: int, rounds: int, warmup: int, a: list, b: list, one_a: int, one_b: int) -> str:
    ms = lambda runs, k: [x[k] * 1000 / steps for x in runs]  # per step, ms
    sa_, sb = ms(a, 0), ms(b, 0)
    ca, cb = ms(a, 1), ms(b, 1)
    added = [x - y for x, y in zip(sa_, sb)]
    added_client = [x - y for x, y in zip(ca, cb)]
    ua, ub = ms(a, 3), ms(b, 3)
    ev_a, ev_b = a[0][2], b[0][2]
    per_a, per_b = (ev_a - one_a) / (steps - 1), (ev_b - one_b) / (steps - 1)
    rows = [
        ("per-step latency, median (ms, server)", median(sb), median(sa_), median(added), median(sa_) / median(sb)),
        ("per-step latency, p95 (ms, server)", pct(sb, 95), pct(sa_, 95), pct(added, 95), pct(sa_, 95) / pct(sb, 95)),
        ("per-step latency, median (ms, client)", median(cb), median(ca), median(added_client), median(ca) / median(cb)),
        ("worker+client CPU per step, median (ms)", median(ub), median(ua), median(ua) - median(ub),
         median(ua) / median(ub)),
        ("history events per run", ev_b, ev_a, ev_a - ev_b, ev_a / ev_b),
        ("history events per step (marginal)", per_b, per_a, per_a - per_b, per_a / per_b),
        ("history events fixed per run", ev_b - per_b * steps, ev_a - per_a * steps,
         (ev_a - per_a * steps) - (ev_b - per_b * steps), ""),
    ]
    head = (f"overhead: {steps} model steps per run, {rounds} interleaved rounds after {warmup} warm-up; "
            f"added = (Baton run - bare run) / steps, paired per round; CPU: this process (worker and client), "
            f"not the dev server")
    goal = (f"goal: ratio <= 1.15 -> {median(sa_) / median(sb):.2f} "
            f"({'met' if median(sa_) / median(sb) <= 1.15 else 'NOT met'}); "
            f"events/step <= bare + 2 -> {per_a:.1f} vs {per_b:.1f} "
            f"({'met' if per_a <= per_b + 2 else 'NOT met'}); "
            f"at {per_a:.1f} events/step a run reaches Temporal's 51,200-event limit after ~{int(51200 / per_a):,} steps")
    return "\n".join([
        head,
        table("", ["figure", "bare temporalio", "Baton", "Baton - bare", "Baton / bare"], rows).lstrip("\n"),
        goal,
        machine(),
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="model steps per run (>= 2)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved A/B rounds measured")
    p.add_argument("--warmup", type=int, default=3, help="A/B rounds run first and not measured")
    args = p.parse_args()
    if args.steps < 2:
        p.error("--steps must be at least 2 (events per step are measured as a difference)")
    print(asyncio.run(measure(args.steps, args.rounds, args.warmup)))


if __name__ == "__main__":
    main()
