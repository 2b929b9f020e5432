"""The model path against a direct call (issue 20, item 4), in one run.

One model step through Baton (the activity, the OpenAI-compatible provider over
httpx, validation of the typed answer, the ledger, telemetry, payloads encrypted)
against a direct httpx call to the same local server (benchmarks/model_server.py,
a process of its own that answers at once), both from this process:

- added latency per step: the model activity's time in the worker (from the SDK
  handing it over to its result) minus a direct call's, p50 and p95;
- the whole step as the server sees it (one model activity scheduled to the next);
- CPU of this process (worker and client) per model step, against a direct call's;
- requests per second through one worker with 100 runs in flight, against 100
  direct callers at once.

Rounds alternate Baton and direct after a warm-up.

    python -m benchmarks.model_path [--steps 100] [--rounds 3] [--in-flight 100]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from temporalio import activity
from temporalio import client as temporal_client
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from activities.llm.catalog import ModelSpec, Price, ProviderSpec
from benchmarks.harness import UNCAPPED, config, dev_server, history, machine, median, pct, queue, table
from benchmarks.model_server import MODEL
from benchmarks.processes import STEPS_PROCESS, BatonSteps, Note, StepsRequest
from benchmarks.steps import step_ms
from worker.config import BatonConfig
from worker.registration import baton_worker
from workflows import search_attributes as sa
from workflows.outcome import RunState

ADDED_GOAL_MS = 5.0
LABEL = "bench-local"


@contextmanager
def model_server() -> Iterator[str]:
    """benchmarks/model_server.py in its own process; its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.model_server"], stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait()


def local_model(cfg: BatonConfig, url: str) -> BatonConfig:
    """`cfg` with every tier on one model of the local server, asked in native JSON-schema mode."""
    return cfg.model_copy(update={
        "providers": {LABEL: ProviderSpec(protocol="openai", base_url=url)},
        "models": {**cfg.models, LABEL: ModelSpec(provider=LABEL, name=MODEL, price=Price(input=0.15, output=0.60))},
        "tiers": {tier: [LABEL] for tier in cfg.tiers},
    })


class ActivityClock(temporal_client.Interceptor, Interceptor):
    """Times each model activity inside the worker (a client's interceptor that is also a worker's reaches it)."""

    def __init__(self) -> None:
        self.ms: list[float] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Timed(next, self.ms)


class _Timed(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, ms: list[float]) -> None:
        super().__init__(next)
        self._ms = ms

    async def execute_activity(self, input: ExecuteActivityInput):
        started = time.perf_counter()
        try:
            return await super().execute_activity(input)
        finally:
            if activity.info().activity_type == "call_model":
                self._ms.append((time.perf_counter() - started) * 1000)


def direct_body() -> dict:
    """What Baton's provider sends for a `Note` step, written by hand."""
    return {
        "model": MODEL, "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Answer ok to request 1"}],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "Note", "schema": Note.model_json_schema(), "strict": True}},
    }


async def direct_call(http: httpx.AsyncClient, url: str, body: dict) -> None:
    reply = await http.post(f"{url}/chat/completions", json=body)
    reply.raise_for_status()
    Note.model_validate_json(reply.json()["choices"][0]["message"]["content"])


async def direct_sequential(http: httpx.AsyncClient, url: str, n: int) -> tuple[list[float], float]:
    """(ms per call, CPU ms per call)."""
    body, ms = direct_body(), []
    cpu = time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        await direct_call(http, url, body)
        ms.append((time.perf_counter() - started) * 1000)
    return ms, (time.process_time() - cpu) * 1000 / n


async def direct_in_flight(http: httpx.AsyncClient, url: str, callers: int, each: int) -> float:
    body = direct_body()

    async def caller() -> None:
        for _ in range(each):
            await direct_call(http, url, body)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return callers * each / (time.perf_counter() - started)


async def start_steps(client: Client, q: str, steps: int) -> str:
    run_id = f"{STEPS_PROCESS}-{uuid.uuid4().hex[:8]}"
    await client.start_workflow(
        BatonSteps.run, StepsRequest(steps=steps), id=run_id, task_queue=q,
        search_attributes=TypedSearchAttributes([SearchAttributePair(sa.PROCESS, STEPS_PROCESS)]),
    )
    return run_id


async def finish(client: Client, run_id: str, steps: int) -> None:
    outcome = await client.get_workflow_handle_for(BatonSteps.run, run_id).result()
    if outcome.state is not RunState.COMPLETED or outcome.steps != steps:
        raise RuntimeError(f"a Baton run did not complete its {steps} steps: {outcome.state} {outcome.reason}")


async def baton_sequential(client: Client, q: str, clock: ActivityClock, n: int) -> tuple[list[float], list[float], float]:
    """(activity ms, step ms as the server sees it, CPU ms per step)."""
    clock.ms.clear()
    cpu = time.process_time()
    run_id = await start_steps(client, q, n)
    await finish(client, run_id, n)
    cpu_ms = (time.process_time() - cpu) * 1000 / n
    return list(clock.ms), step_ms(await history(client, run_id), "call_model"), cpu_ms


async def baton_in_flight(client: Client, q: str, runs: int, each: int) -> float:
    started = time.perf_counter()
    ids = await asyncio.gather(*(start_steps(client, q, each) for _ in range(runs)))
    await asyncio.gather(*(finish(client, i, each) for i in ids))
    return runs * each / (time.perf_counter() - started)


async def measure(steps: int, rounds: int, in_flight: int) -> dict:
    each = 5
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp, model_server() as url:
        cfg = local_model(config(Path(tmp), budgets={STEPS_PROCESS: UNCAPPED}), url)
        clock = ActivityClock()
        async with dev_server() as server, httpx.AsyncClient(limits=httpx.Limits(max_connections=in_flight)) as http:
            client = Client(**{**server.config(), "interceptors": [clock]})
            q = queue("model-path")
            async with baton_worker(client, cfg, queue=q, extra_workflows=(BatonSteps,)):
                await baton_sequential(client, q, clock, 20)  # warm-up: imports, connections, caches
                await direct_sequential(http, url, 20)
                got: dict[str, list] = {k: [] for k in ("act", "step", "cpu", "direct", "dcpu", "rps", "drps")}
                for i in range(rounds):
                    for side in (("baton", "direct") if i % 2 == 0 else ("direct", "baton")):
                        if side == "baton":
                            act, step, cpu = await baton_sequential(client, q, clock, steps)
                            got["act"] += act
                            got["step"] += step
                            got["cpu"].append(cpu)
                            got["rps"].append(await baton_in_flight(client, q, in_flight, each))
                        else:
                            ms, cpu = await direct_sequential(http, url, steps)
                            got["direct"] += ms
                            got["dcpu"].append(cpu)
                            got["drps"].append(await direct_in_flight(http, url, in_flight, each))
    return got


def report(steps: int, rounds: int, in_flight: int, got: dict) -> str:
    act, direct = got["act"], got["direct"]
    added50, added95 = median(act) - median(direct), pct(act, 95) - pct(direct, 95)
    rows = [
        ("latency p50 (ms)", median(direct), median(act), added50, median(act) / median(direct)),
        ("latency p95 (ms)", pct(direct, 95), pct(act, 95), added95, pct(act, 95) / pct(direct, 95)),
        ("whole step as the server sees it, p50 (ms)", "", median(got["step"]), "", ""),
        ("CPU per call, this process (ms)", median(got["dcpu"]), median(got["cpu"]),
         median(got["cpu"]) - median(got["dcpu"]), median(got["cpu"]) / median(got["dcpu"])),
        (f"requests/s, {in_flight} in flight", median(got["drps"]), median(got["rps"]), "",
         median(got["rps"]) / median(got["drps"])),
    ]
    return "\n".join([
        f"model path: {rounds} rounds of {steps} sequential model steps (Baton: a model activity, in the worker) "
        f"against direct httpx calls to the same local OpenAI-compatible server; then {in_flight} runs "
        f"(or callers) in flight, 5 steps each",
        table("", ["figure", "direct httpx", "Baton", "Baton - direct", "Baton / direct"], rows).lstrip("\n"),
        f"goal: added latency per step <= {ADDED_GOAL_MS:.0f} ms at p50 -> {added50:.1f} ms "
        f"({'met' if added50 <= ADDED_GOAL_MS else 'NOT met'})",
        machine(),
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100, help="sequential model steps per round")
    p.add_argument("--rounds", type=int, default=3, help="alternating Baton / direct rounds")
    p.add_argument("--in-flight", type=int, default=100, help="runs (callers) at once for requests/s")
    args = p.parse_args()
    print(report(args.steps, args.rounds, args.in_flight, asyncio.run(measure(args.steps, args.rounds, args.in_flight))))


if __name__ == "__main__":
    main()
