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

    python -m benchmarks.parked [--parked 500] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path

from temporalio.api.enums.v1 import EventType

from benchmarks.harness import (
    APPROVER, applicant, config, dev_server, history, machine, pct, queue, rss_kb, seed_with, table,
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


async def measure(k: int, concurrency: int) -> str:
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
    per_run_kb = (after - before) / k
    p50, p99 = pct(latencies, 50), pct(latencies, 99)
    rows = [
        ("worker RSS before / after parking (MB)", f"{before / 1024:.0f} / {after / 1024:.0f}", ""),
        ("RSS per parked run (KB)", f"{per_run_kb:.1f}", f"<= 50: {'met' if per_run_kb <= 50 else 'NOT met'}"),
        ("time to start and park all (s)", f"{park_s:.1f}", ""),
        ("approval -> next step scheduled, p50 (ms)", f"{p50:.1f}", f"<= 50: {'met' if p50 <= 50 else 'NOT met'}"),
        ("approval -> next step scheduled, p99 (ms)", f"{p99:.1f}", ""),
        ("approving all (s)", f"{approved_s:.1f}", ""),
        ("drain: first approval -> last run completed (s)", f"{drain_s:.1f}", f"{k / drain_s:.1f} runs/s"),
    ]
    return "\n".join([
        f"parked: {k} onboarding runs parked on {REQUEST} (in-memory dev server), approved with the SDK, "
        f"at most {concurrency} at once",
        table("", ["figure", "value", "goal / note"], rows).lstrip("\n"),
        "RSS: this process (worker and client), after gc; temporalio caches up to 1,000 runs per worker by default",
        machine(),
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parked", type=int, default=500, help="runs parked at once (K); 3000 for the full figure")
    p.add_argument("--concurrency", type=int, default=50, help="starts / approvals in flight at once")
    args = p.parse_args()
    print(asyncio.run(measure(args.parked, args.concurrency)))


if __name__ == "__main__":
    main()
