"""Runs parked for a person: memory per parked run, approval -> next step latency, drain time.

K onboarding runs on the review route (KYC: politically exposed person, distinct
applicants) park on the compliance review. Worker memory per parked run is this
process's RSS after all K are parked minus before they started, over K (the
worker keeps each parked run in its workflow cache; temporalio caches 1,000 by
default, so past that, parked runs are evicted and replayed when approved).
Then every run is approved with the SDK (`Baton.approve`, the `decide` update,
at most --concurrency at once); latency is, from each run's history, the update's
accepted event to the next step's ActivityTaskScheduled (the welcome e-mail), and
drain time is the first approval to the last run completed.

The floor is measured the same way: K bare temporalio workflows (two no-op
activities, a wait for one update, one more activity) parked on the same
server with the same worker settings. Each side runs in a process of its own,
so neither inherits the other's freed memory.

    python -m benchmarks.parked [--parked 500] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from temporalio.api.enums.v1 import EventType

from benchmarks.bare import BareParked, BareRequest
from benchmarks.harness import (
    APPROVER, applicant, bare_worker, config, dev_server, history, machine, pct, queue, rss_kb, seed_with, table,
)
from client.sdk import Baton
from worker.registration import baton_worker
from workflows import search_attributes as sa
from workflows.outcome import RunState

ACCEPTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
REQUEST = "compliance_review"


async def bounded(limit: int, jobs):
    gate = asyncio.Semaphore(limit)

    async def one(job):
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


async def parked_count(baton: Baton) -> int:
    query = f"{sa.AWAITING_APPROVAL.name} = true AND TaskQueue = '{baton.queue}'"
    return (await baton.client.count_workflows(query)).count


def latency_ms(events: list) -> float:
    """The decide update's accepted event -> the next activity scheduled after it."""
    accepted = next(e for e in events if e.event_type == ACCEPTED)
    nxt = next(e for e in events if e.event_type == SCHEDULED and e.event_id > accepted.event_id)
    return (nxt.event_time.ToDatetime() - accepted.event_time.ToDatetime()).total_seconds() * 1000


async def measure_baton(k: int, concurrency: int) -> dict:
    """K onboarding runs parked on the compliance review, then approved."""
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        tmp = Path(tmp)
        people = [applicant(f"P-{i:05d}") for i in range(k + 1)]
        cfg = config(tmp, seed=seed_with(tmp, people, pep=True))
        async with dev_server() as client:
            q = queue("parked")
            async with baton_worker(client, cfg, queue=q):
                baton = Baton(client, q)
                warm = await baton.start("onboarding", people[0])  # warm-up: one run through the whole route
                while await parked_count(baton) < 1:
                    await asyncio.sleep(0.2)
                await baton.approve(warm, by=APPROVER, request_id=REQUEST)
                await baton.result(warm)
                gc.collect()
                before = rss_kb()
                started = time.perf_counter()
                ids = await bounded(concurrency, [baton.start("onboarding", p) for p in people[1:]])
                while await parked_count(baton) < k:
                    await asyncio.sleep(0.5)
                park_s = time.perf_counter() - started
                gc.collect()
                after = rss_kb()
                started = time.perf_counter()
                await bounded(concurrency, [
                    baton.approve(i, by=APPROVER, request_id=REQUEST, comment="benchmark") for i in ids
                ])
                approved_s = time.perf_counter() - started
                outcomes = await bounded(concurrency, [baton.result(i) for i in ids])
                drain_s = time.perf_counter() - started
                if any(o.state is not RunState.COMPLETED for o in outcomes):
                    raise RuntimeError("a parked run did not complete after its approval")
                latencies = [latency_ms(events) for events in await bounded(concurrency, [history(client, i) for i in ids])]
    return {"per_run_kb": (after - before) / k, "before_kb": before, "after_kb": after, "park_s": park_s,
            "approved_s": approved_s, "drain_s": drain_s, "latencies": latencies}


async def measure_bare(k: int, concurrency: int) -> dict:
    """K bare workflows parked on one update each, then approved: the floor."""
    request = BareRequest(steps=0, start_to_close_s=60, schedule_to_close_s=3600)
    async with dev_server() as client:
        q = queue("bare-parked")
        async with bare_worker(client, q):
            async def start(i: int):
                return await client.start_workflow(BareParked.run, request, id=f"{q}-{i}", task_queue=q)

            async def parked(handle) -> bool:
                return await handle.query(BareParked.parked)

            warm = await start(-1)
            while not await parked(warm):
                await asyncio.sleep(0.2)
            await warm.execute_update(BareParked.approve, APPROVER)
            await warm.result()
            gc.collect()
            before = rss_kb()
            started = time.perf_counter()
            handles = await bounded(concurrency, [start(i) for i in range(k)])
            while not all(await bounded(concurrency, [parked(h) for h in handles])):
                await asyncio.sleep(0.5)
            park_s = time.perf_counter() - started
            gc.collect()
            after = rss_kb()
            started = time.perf_counter()
            await bounded(concurrency, [h.execute_update(BareParked.approve, APPROVER) for h in handles])
            approved_s = time.perf_counter() - started
            await bounded(concurrency, [h.result() for h in handles])
            drain_s = time.perf_counter() - started
            latencies = [latency_ms(events) for events in await bounded(concurrency, [history(client, h.id) for h in handles])]
    return {"per_run_kb": (after - before) / k, "before_kb": before, "after_kb": after, "park_s": park_s,
            "approved_s": approved_s, "drain_s": drain_s, "latencies": latencies}


def run_phase(phase: str, k: int, concurrency: int) -> dict:
    """One side in a fresh process, so its memory figure owes nothing to the other's."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.parked", "--phase", phase, "--parked", str(k), "--concurrency", str(concurrency)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(k: int, concurrency: int) -> str:
    bare, baton = run_phase("bare", k, concurrency), run_phase("baton", k, concurrency)
    b50, b99, p50, p99 = (pct(bare["latencies"], 50), pct(bare["latencies"], 99),
                          pct(baton["latencies"], 50), pct(baton["latencies"], 99))
    kb = baton["per_run_kb"]
    rows = [
        ("worker RSS before / after parking (MB)", f"{bare['before_kb'] / 1024:.0f} / {bare['after_kb'] / 1024:.0f}",
         f"{baton['before_kb'] / 1024:.0f} / {baton['after_kb'] / 1024:.0f}", "", ""),
        ("RSS per parked run (KB)", f"{bare['per_run_kb']:.1f}", f"{kb:.1f}", f"{kb / bare['per_run_kb']:.2f}",
         f"<= 50: {'met' if kb <= 50 else 'NOT met'}"),
        ("time to start and park all (s)", f"{bare['park_s']:.1f}", f"{baton['park_s']:.1f}",
         f"{baton['park_s'] / bare['park_s']:.2f}", ""),
        ("approval -> next step scheduled, p50 (ms)", f"{b50:.1f}", f"{p50:.1f}", f"{p50 / b50:.2f}",
         f"<= 50: {'met' if p50 <= 50 else 'NOT met'}"),
        ("approval -> next step scheduled, p99 (ms)", f"{b99:.1f}", f"{p99:.1f}", f"{p99 / b99:.2f}", ""),
        ("drain: first approval -> last run completed (s)", f"{bare['drain_s']:.1f}", f"{baton['drain_s']:.1f}",
         f"{baton['drain_s'] / bare['drain_s']:.2f}", f"{k / baton['drain_s']:.1f} Baton runs/s"),
    ]
    return "\n".join([
        f"parked: {k} runs parked for one decision (Baton: onboarding on {REQUEST}; bare: a workflow waiting on an "
        f"update), in-memory dev server, at most {concurrency} starts / approvals at once",
        table("", ["figure", "bare temporalio", "Baton", "Baton / bare", "goal / note"], rows).lstrip("\n"),
        "RSS: the worker-and-client process of each side, after gc; temporalio caches up to 1,000 runs per worker",
        machine(),
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parked", type=int, default=500, help="runs parked at once (K); 3000 for the full figure")
    p.add_argument("--concurrency", type=int, default=50, help="starts / approvals in flight at once")
    p.add_argument("--phase", choices=["bare", "baton"], help=argparse.SUPPRESS)  # one side, in its own process
    args = p.parse_args()
    if args.phase:
        measure = measure_bare if args.phase == "bare" else measure_baton
        print(json.dumps(asyncio.run(measure(args.parked, args.concurrency))))
        return
    print(report(args.parked, args.concurrency))


if __name__ == "__main__":
    main()
