"""Concurrent runs per second: M onboarding runs (KYC clear, distinct applicants) vs M bare workflows.

The bare workflow schedules as many no-op activities as an onboarding clear run
schedules (counted from a Baton run's history), on a worker with the same
settings. Batches of M are started at once and timed from the first start to
the last result; rounds alternate which goes first. Worker peak RSS is this
process's VmHWM (worker and client), reset before each batch. Done twice:
with the dev server in memory, and on a SQLite file (`--db-filename`).

    python -m benchmarks.throughput [--runs 40] [--rounds 2]
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
    ACTIVITY_SCHEDULED, UNCAPPED, applicant, bare_worker, config, count, dev_server, history, hwm_kb, machine,
    median, plain, queue, reset_peak, seed_with, table,
)
from benchmarks.bare import BareRequest, BareSteps
from client.sdk import Baton
from worker.config import BatonConfig
from worker.registration import baton_worker
from workflows.outcome import RunState

THROUGHPUT_GOAL = 0.90  # issue 20: Baton's runs/s against bare temporalio's, on both servers
CPU_GOAL = 1.25  # issue 20: worker CPU per run against bare temporalio's


async def baton_batch(baton: Baton, applicants: list[dict]) -> float:
    started = time.perf_counter()
    ids = await asyncio.gather(*(baton.start("onboarding", a) for a in applicants))
    outcomes = await asyncio.gather(*(baton.result(i) for i in ids))
    elapsed = time.perf_counter() - started
    bad = [o for o in outcomes if o.state is not RunState.COMPLETED]
    if bad:
        raise RuntimeError(f"{len(bad)} onboarding runs did not complete: {bad[0].state} {bad[0].reason}")
    return elapsed


async def bare_batch(client: Client, task_queue: str, runs: int, request: BareRequest) -> float:
    started = time.perf_counter()
    handles = await asyncio.gather(*(
        client.start_workflow(BareSteps.run, request, id=f"bench-bare-{uuid.uuid4().hex[:10]}", task_queue=task_queue)
        for _ in range(runs)
    ))
    done = await asyncio.gather(*(h.result() for h in handles))
    elapsed = time.perf_counter() - started
    if any(d != request.steps for d in done):
        raise RuntimeError("a bare run did not do all its steps")
    return elapsed


async def phase(label: str, db_file: Path | None, cfg: BatonConfig, batches: list[list[dict]], runs: int) -> dict:
    async with dev_server(db_file) as client:
        baton_q, bare_q = queue("baton"), queue("bare")
        async with baton_worker(client, cfg, queue=baton_q), bare_worker(client, bare_q):
            baton = Baton(client, baton_q)
            probe = await baton.start("onboarding", batches[0][0])  # warm-up, and the activity count
            await baton.result(probe)
            activities = count(await history(client, probe), ACTIVITY_SCHEDULED)
            request = BareRequest(
                steps=activities, start_to_close_s=cfg.llm_timeout_s(),
                schedule_to_close_s=UNCAPPED.max_wall_clock.total_seconds(),
            )
            await baton_batch(baton, batches[0][1:])  # warm-up batch
            await bare_batch(plain(client), bare_q, runs, request)
            a, b, rss_a, rss_b, cpu_a, cpu_b = [], [], [], [], [], []
            for i, batch in enumerate(batches[1:]):
                order = ("bare", "baton") if i % 2 else ("baton", "bare")
                for which in order:
                    reset_peak()
                    cpu = time.process_time()
                    if which == "baton":
                        a.append(runs / await baton_batch(baton, batch))
                        cpu_a.append((time.process_time() - cpu) / runs * 1000)
                        rss_a.append(hwm_kb())
                    else:
                        b.append(runs / await bare_batch(plain(client), bare_q, runs, request))
                        cpu_b.append((time.process_time() - cpu) / runs * 1000)
                        rss_b.append(hwm_kb())
    return dict(label=label, activities=activities, baton=a, bare=b, rss_baton=max(rss_a), rss_bare=max(rss_b),
                cpu_baton=median(cpu_a), cpu_bare=median(cpu_b))


async def measure(runs: int, rounds: int) -> str:
    results = []
    for label, on_file in (("in memory", False), ("SQLite file", True)):
        with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
            tmp = Path(tmp)
            batches = [
                [applicant(f"T{r:02d}-{i:05d}") for i in range(runs + (1 if r == 0 else 0))] for r in range(rounds + 1)
            ]
            cfg = config(tmp, seed=seed_with(tmp, [a for batch in batches for a in batch]))
            results.append(await phase(label, tmp / "temporal.db" if on_file else None, cfg, batches, runs))
    rows = []
    for r in results:
        ratio, cpu = median(r["baton"]) / median(r["bare"]), r["cpu_baton"] / r["cpu_bare"]
        rows.append((
            r["label"], median(r["bare"]), median(r["baton"]), f"{ratio:.2f}",
            f"{'met' if ratio >= THROUGHPUT_GOAL else 'NOT met'}",
            f"{r['cpu_bare']:.1f}", f"{r['cpu_baton']:.1f}", f"{cpu:.2f}", f"{'met' if cpu <= CPU_GOAL else 'NOT met'}",
            f"{r['rss_bare'] / 1024:.0f}", f"{r['rss_baton'] / 1024:.0f}",
        ))
    a = results[0]["activities"]
    return "\n".join([
        f"throughput: batches of {runs} concurrent runs, {rounds} interleaved rounds after a warm-up batch; "
        f"onboarding (KYC clear) schedules {a} activities per run (+1 local activity, its policy), the bare workflow {a}",
        table("", ["dev server", "bare runs/s", "Baton runs/s", "Baton / bare", f"goal >= {THROUGHPUT_GOAL}",
                   "bare CPU ms/run", "Baton CPU ms/run", "CPU Baton / bare", f"goal <= {CPU_GOAL}",
                   "bare peak RSS MB", "Baton peak RSS MB"], rows).lstrip("\n"),
        "CPU: this process's (workers and client, all threads) per run, median over rounds; the dev server's is not in it",
        "peak RSS: VmHWM of this process (both workers and the client), reset before each batch",
        machine(),
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=40, help="concurrent runs per batch (M)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved A/B rounds measured")
    args = p.parse_args()
    print(asyncio.run(measure(args.runs, args.rounds)))


if __name__ == "__main__":
    main()
