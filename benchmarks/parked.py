"""Runs parked for a person: memory per parked run, approval -> next step latency, drain time.

K onboarding runs on the review route (KYC: politically exposed person, distinct
applicants) park on the compliance review. Worker memory per parked run is this
process's RSS after all K are parked minus before they started, over K. A worker
keeps at most `[worker] max_cached_runs` runs in memory (--cache; temporalio's
default is 1,000) and evicts the least recently used, replaying it from its
history when it is woken; so memory is also given per cached run, over min(K, cache).

Then S of them (--sample) are approved one at a time with the SDK (`Baton.approve`,
the `decide` update): latency runs from the client sending the approval to the
next step's ActivityTaskStarted in the run's history (one host, one clock), so it
counts the update's delivery, the workflow task and, for an evicted run, its
replay. The other K - S are approved at once (at most --concurrency in flight):
drain time is from the first of those to the last run completed.

The floor is measured the same way: K bare temporalio workflows parked on the
same server with the same worker settings and cache, each with as many no-op
activities before its update and after it as the Baton route schedules (counted
from the Baton side's warm-up run, which therefore runs first): an approval then
sets off as much work on either side, and what the latency compares is Baton's
cost per step, not the length of the route. Each side runs in a process of its
own, so neither inherits the other's freed memory.

    python -m benchmarks.parked [--parked 500] [--cache 1000] [--sample 100] [--concurrency 50]
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from benchmarks.bare import BareParked, BareRequest, ParkedShape
from benchmarks.harness import (
    APPROVER, applicant, bare_worker, config, dev_server, history, machine, pct, people, plain, queue, rss_kb, seed_with,
    table,
)
from client.sdk import Baton
from worker.config import BatonConfig, WorkerSettings
from worker.exit import exit_now
from worker.registration import baton_worker
from workflows import search_attributes as sa
from workflows.outcome import RunState

ACCEPTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
STARTED = EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
REQUEST = "compliance_review"
APPROVAL_GOAL = 1.3  # issue 20: approval sent -> next step p50, Baton against bare temporalio, in both settings
MEMORY_GOAL = 1.2  # issue 20: memory per cached parked run, Baton against bare temporalio


@dataclass
class Side:
    """One side of the comparison: how to start a run, see it parked, approve it and see it finish."""

    client: Client
    start: Callable[[int], Awaitable[str]]
    parked: Callable[[list[str]], Awaitable[bool]]  # are all of these parked?
    approve: Callable[[str], Awaitable[object]]
    finish: Callable[[str], Awaitable[None]]  # wait for the run's end; raise unless it completed


async def bounded(limit: int, jobs):
    gate = asyncio.Semaphore(limit)

    async def one(job):
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


def bare_parked(events: list, shape: ParkedShape) -> bool:
    """A bare run is parked once its activities before the update are done and the task after them completed."""
    done = sum(1 for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    return done == shape.before and events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


def route_shape(events: list) -> ParkedShape:
    """The activities a run scheduled before its accepted decision and after it."""
    accepted = next(e.event_id for e in events if e.event_type == ACCEPTED)
    scheduled = [e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    before = sum(1 for i in scheduled if i < accepted)
    return ParkedShape(before=before, after=len(scheduled) - before)


def next_step_started_s(events: list) -> float:
    """When the first activity after the accepted approval started (epoch seconds, server clock)."""
    accepted = next(e for e in events if e.event_type == ACCEPTED)
    started = next(e for e in events if e.event_type == STARTED and e.event_id > accepted.event_id)
    return started.event_time.ToMicroseconds() / 1e6


async def measure(side: Side, k: int, sample: int, concurrency: int) -> dict:
    warm = await side.start(-1)  # warm-up: one run through the whole route
    while not await side.parked([warm]):
        await asyncio.sleep(0.2)
    await side.approve(warm)
    await side.finish(warm)
    gc.collect()
    before = rss_kb()
    started = time.perf_counter()
    ids = await bounded(concurrency, [side.start(i) for i in range(k)])
    while not await side.parked(ids):
        await asyncio.sleep(0.5)
    park_s = time.perf_counter() - started
    gc.collect()
    after = rss_kb()
    sent = {}
    for run in ids[:sample]:  # one at a time: the latency a person sees
        sent[run] = time.time()
        await side.approve(run)
    started = time.perf_counter()
    await bounded(concurrency, [side.approve(run) for run in ids[sample:]])
    await bounded(concurrency, [side.finish(run) for run in ids])
    drain_s = time.perf_counter() - started
    latencies = [
        (next_step_started_s(await history(side.client, run)) - at) * 1000 for run, at in sent.items()
    ]
    return {"per_run_kb": (after - before) / k, "before_kb": before, "after_kb": after, "park_s": park_s,
            "drain_s": drain_s, "drained": k - sample, "latencies": latencies,
            "shape": route_shape(await history(side.client, warm)).model_dump()}


async def measure_baton(k: int, cache: int, sample: int, concurrency: int) -> dict:
    """K onboarding runs parked on the compliance review, then approved (with the approver's token)."""
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        tmp = Path(tmp)
        applicants = [applicant(f"P-{i:05d}") for i in range(-1, k)]
        cfg = config(tmp, seed=seed_with(tmp, applicants, pep=True))
        cfg = cfg.model_copy(update={"worker": WorkerSettings(max_cached_runs=cache)})
        async with dev_server() as bare:
            with people(tmp, bare, cfg) as (client, issuer):
                cfg = cfg.model_copy(update={"identity": issuer.settings()})
                return await _parked_and_approved(client, cfg, applicants, k, sample, concurrency)


async def _parked_and_approved(
    client: Client, cfg: BatonConfig, applicants: list[dict], k: int, sample: int, concurrency: int
) -> dict:
    q = queue("parked")
    async with baton_worker(client, cfg, queue=q):
        baton = Baton(client, q)
        query = f"{sa.AWAITING_APPROVAL.name} = true AND TaskQueue = '{q}'"

        async def parked(ids: list[str]) -> bool:
            return (await client.count_workflows(query)).count >= len(ids)

        async def finish(run: str) -> None:
            outcome = await baton.result(run)
            if outcome.state is not RunState.COMPLETED:
                raise RuntimeError(f"{run} ended {outcome.state}: {outcome.reason}")

        side = Side(
            client, lambda i: baton.start("onboarding", applicants[i + 1]), parked,
            lambda run: baton.approve(run, by=APPROVER, request_id=REQUEST, comment="benchmark"), finish,
        )
        return await measure(side, k, sample, concurrency)


async def measure_bare(k: int, cache: int, sample: int, concurrency: int, shape: ParkedShape) -> dict:
    """K bare workflows of the Baton route's `shape` parked on one update each, then approved: the floor."""
    request = BareRequest(steps=0, start_to_close_s=60, schedule_to_close_s=3600)
    async with dev_server() as server:
        client = plain(server)  # bare temporalio: payloads in clear
        q = queue("bare-parked")
        async with bare_worker(client, q, max_cached=cache):
            confirmed: set[str] = set()

            async def start(i: int) -> str:
                return (await client.start_workflow(
                    BareParked.run, args=[request, shape], id=f"{q}-{i}", task_queue=q)).id

            async def parked(ids: list[str]) -> bool:  # from history: a query would replay every evicted run
                waiting = [run for run in ids if run not in confirmed]
                says = [bare_parked(events, shape) for events in await bounded(50, [history(client, run) for run in waiting])]
                confirmed.update(run for run, yes in zip(waiting, says) if yes)
                return all(says)

            async def finish(run: str) -> None:
                await client.get_workflow_handle(run).result()

            side = Side(
                client, start, parked,
                lambda run: client.get_workflow_handle(run).execute_update(BareParked.approve, APPROVER), finish,
            )
            return await measure(side, k, sample, concurrency)


def run_phase(phase: str, k: int, cache: int, sample: int, concurrency: int, shape: ParkedShape | None = None) -> dict:
    """One side in a fresh process, so its memory figure owes nothing to the other's."""
    route = ["--before", str(shape.before), "--after", str(shape.after)] if shape else []
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.parked", "--phase", phase, "--parked", str(k), "--cache", str(cache),
         "--sample", str(sample), "--concurrency", str(concurrency), *route],
        capture_output=True, text=True,
    )
    if out.returncode:
        raise SystemExit(f"the {phase} side failed:\n" + "\n".join(out.stderr.strip().splitlines()[-15:]))
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(k: int, cache: int, sample: int, concurrency: int) -> str:
    baton = run_phase("baton", k, cache, sample, concurrency)
    shape = ParkedShape(**baton["shape"])
    bare = run_phase("bare", k, cache, sample, concurrency, shape)
    b50, b99, p50, p99 = (pct(bare["latencies"], 50), pct(bare["latencies"], 99),
                          pct(baton["latencies"], 50), pct(baton["latencies"], 99))
    kb, cached = baton["per_run_kb"], min(k, cache) / k
    rows = [
        ("worker RSS before / after parking (MB)", f"{bare['before_kb'] / 1024:.0f} / {bare['after_kb'] / 1024:.0f}",
         f"{baton['before_kb'] / 1024:.0f} / {baton['after_kb'] / 1024:.0f}", "", ""),
        ("RSS per parked run (KB)", f"{bare['per_run_kb']:.1f}", f"{kb:.1f}", f"{kb / bare['per_run_kb']:.2f}", ""),
        ("RSS per cached run (KB)", f"{bare['per_run_kb'] / cached:.1f}", f"{kb / cached:.1f}",
         f"{kb / bare['per_run_kb']:.2f}", f"<= {MEMORY_GOAL}: {'met' if kb / bare['per_run_kb'] <= MEMORY_GOAL else 'NOT met'}"
         f" ({min(k, cache)} of {k} runs cached)"),
        ("time to start and park all (s)", f"{bare['park_s']:.1f}", f"{baton['park_s']:.1f}",
         f"{baton['park_s'] / bare['park_s']:.2f}", ""),
        ("approval sent -> next step started, p50 (ms)", f"{b50:.1f}", f"{p50:.1f}", f"{p50 / b50:.2f}",
         f"<= {APPROVAL_GOAL}: {'met' if p50 / b50 <= APPROVAL_GOAL else 'NOT met'}"),
        ("approval sent -> next step started, p99 (ms)", f"{b99:.1f}", f"{p99:.1f}", f"{p99 / b99:.2f}", ""),
        (f"drain: {baton['drained']} approved at once -> all completed (s)", f"{bare['drain_s']:.1f}",
         f"{baton['drain_s']:.1f}", f"{baton['drain_s'] / bare['drain_s']:.2f}",
         f"{baton['drained'] / baton['drain_s']:.1f} Baton runs/s"),
    ]
    return "\n".join([
        f"parked: {k} runs parked for one decision (Baton: onboarding on {REQUEST}; bare: a workflow waiting on an "
        f"update, with the route's {shape.before} activities before it and {shape.after} after), in-memory dev server, worker cache {cache} runs; {sample} approved one at a time, the rest "
        f"at once (at most {concurrency} starts / approvals in flight)",
        table("", ["figure", "bare temporalio", "Baton", "Baton / bare", "goal / note"], rows).lstrip("\n"),
        "RSS: the worker-and-client process of each side, after gc; an evicted run is replayed when approved",
        machine(),
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parked", type=int, default=500, help="runs parked at once (K); thousands for the full figure")
    p.add_argument("--cache", type=int, default=1000, help="[worker] max_cached_runs of both workers")
    p.add_argument("--sample", type=int, default=100, help="runs approved one at a time, for latency")
    p.add_argument("--concurrency", type=int, default=50, help="starts / approvals in flight at once")
    p.add_argument("--phase", choices=["bare", "baton"], help=argparse.SUPPRESS)  # one side, in its own process
    p.add_argument("--before", type=int, default=2, help=argparse.SUPPRESS)  # the bare side's route (its shape)
    p.add_argument("--after", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if not 0 < args.sample < args.parked:
        p.error("--sample must be at least 1 and fewer than --parked")
    if args.phase:
        sides = {"bare": lambda: measure_bare(args.parked, args.cache, args.sample, args.concurrency,
                                              ParkedShape(before=args.before, after=args.after)),
                 "baton": lambda: measure_baton(args.parked, args.cache, args.sample, args.concurrency)}
        print(json.dumps(asyncio.run(sides[args.phase]())))
        exit_now(0)  # not the interpreter's shutdown, which the SDK's native threads can abort (worker/exit.py)
    print(report(args.parked, args.cache, args.sample, args.concurrency))


if __name__ == "__main__":
    main()
