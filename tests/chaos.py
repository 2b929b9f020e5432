"""`python -m tests.chaos [--runs 200] [--kills 10] [--restarts 1] [--seed N]`: durability at scale.

Starts Temporal's dev server on a SQLite file and worker subprocesses
(tests/crash_worker.py: the real worker, every write and model call slowed a
little so that kills land inside steps), then runs a seeded mix of the three
shipped processes: onboarding (KYC clear, review, reject), support triage
(refunds inside the returns agent's child workflow, small ones approved by
rule, large ones by a support lead), sales follow-up (a manager approves or
rejects the draft). A share of runs parks for approval and this script decides
them, through Baton's `decide` update, while faults are injected at random
moments: worker kill -9s (each replaced by a fresh worker) and server restarts
(SIGTERM or kill -9, same file, same ports).

Then every run's expected effects are derived from its own end (a completed
onboarding: one CRM record and one e-mail for its applicant's address; a
rejected one: none; ...) and counted in the systems of record by business
content. The table lists runs, faults, ends by state, effects expected/found,
duplicated, lost, stuck and wall time. Exit 1 when an effect is duplicated or
lost, a run did not end, or a run ended other than as designed.

Each scenario is a row: `SCENARIOS` maps a name to an async function returning
the row's dict (runs, faults_injected, completed, ended_typed, stuck,
duplicated, lost, and optionally more). A provider-fault scenario
(tests/provider_faults.py, `fault_scenario(client, config, runs, share, seed)`)
joins with `--provider-faults SHARE`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from client.sdk import Baton, Refused
from tests.stack_process import KINDS, Case, ServerOnFile, WorkerProcess, World, decide, effects_report, outcome_of
from worker.config import load
from worker.exit import exit_now

MIX = {  # share of runs per kind: a third park for a person
    "onboarding-clear": 0.25, "onboarding-review": 0.12, "onboarding-reject": 0.08,
    "refund-small": 0.20, "refund-large": 0.10, "sales": 0.25,
}
REJECT_SHARE = 0.2  # of parked runs, the person says no
RUN_TIMEOUT_S = 900
assert set(MIX) == set(KINDS)

Row = dict


def make_cases(runs: int, rng: random.Random) -> list[Case]:
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=runs)
    cases = [Case(n, kind) for n, kind in enumerate(kinds, start=1)]
    for c in cases:
        c.approve = not (c.parks and rng.random() < REJECT_SHARE)
    return cases


async def decide_through_faults(baton: Baton, c: Case, refusals: list[str]) -> None:
    """Decide the case's request; a refusal is recorded, and the decision sent again while it is open.

    A decision whose answer was cut off by a fault is sent again (the same decision twice is
    answered as the first). A refusal of a decision nobody else took is not expected: it is
    counted in the table's `refused` column and sent again until the request is gone.
    """
    for _ in range(10):
        try:
            await decide(baton, c, timeout=RUN_TIMEOUT_S, interval=1.0)
            return
        except Refused as err:
            refusals.append(f"{c.approval_target()}: {err}")
        await asyncio.sleep(2)
        try:
            if not (await baton.status(c.approval_target())).open_requests:
                return  # taken after all: the run went on
        except Exception:
            pass


async def worker_and_server_faults(
    work: Path, runs: int, kills: int, restarts: int, seed: int, workers: int, slow_s: float,
) -> Row:
    rng = random.Random(seed)
    cases = make_cases(runs, rng)
    world = World.create(work / "world", cases)
    server = ServerOnFile(work / "temporal.db")
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    pool: list[WorkerProcess] = []
    started = time.monotonic()
    injected: Counter = Counter()
    refusals: list[str] = []

    def new_worker() -> WorkerProcess:
        w = WorkerProcess(server, world, queue, slow_s=slow_s).start()
        pool.append(w)
        return w

    await server.start()
    try:
        first = [new_worker() for _ in range(workers)]
        await asyncio.gather(*(w.ready() for w in first))
        client = await server.client()
        baton = Baton(client, queue, tokens=world.tokens)

        async def drive(c: Case) -> None:
            try:
                await asyncio.sleep(rng.uniform(0, 10))  # arrivals spread over ten seconds
                await c.start(baton)
                if c.parks:
                    await decide_through_faults(baton, c, refusals)
                c.outcome = await outcome_of(client, c.run_id, RUN_TIMEOUT_S)
            except Exception as err:  # reported as a run that did not end as designed
                c.error = f"{type(err).__name__}: {err}"

        async def inject() -> None:
            faults = ["kill"] * kills + ["restart"] * restarts
            rng.shuffle(faults)
            for fault in faults:
                await asyncio.sleep(rng.uniform(1.0, 4.0))
                if fault == "kill":
                    victim = rng.choice([w for w in pool if w.alive])
                    await asyncio.to_thread(victim.kill)
                    injected["worker kill -9"] += 1
                    await asyncio.to_thread(new_worker)
                else:
                    hard = rng.random() < 0.5
                    await server.restart(hard=hard, down_s=rng.uniform(1.0, 3.0))
                    injected[f"server {'kill -9' if hard else 'SIGTERM'}"] += 1

        await asyncio.gather(inject(), *(drive(c) for c in cases))
        effects = effects_report(cases, world.systems)
    finally:
        for w in pool:
            await asyncio.to_thread(w.kill)
        await asyncio.to_thread(server.stop, True)

    ends = Counter(c.outcome.state.value for c in cases if c.outcome is not None)
    off_design = [c for c in cases if c.outcome is not None and c.outcome.state is not c.expected_state()]
    for r in refusals[:5]:
        print(f"  decision refused, then retried: {r}", file=sys.stderr)
    for c in off_design[:5]:
        print(f"  off design: {c.kind} {c.run_id}: {c.outcome.state.value}: {c.outcome.reason}", file=sys.stderr)
    for c in cases:
        want, got = c.effects_expected(), c.effects_found(world.systems)
        if want != got:
            state = c.outcome.state.value if c.outcome else "not ended"
            print(f"  effects: {c.kind} {c.run_id} ({state}, approve={c.approve}): expected {want}, found {got}",
                  file=sys.stderr)
    for c in [c for c in cases if c.outcome is None][:5]:
        print(f"  not ended: {c.kind} {c.run_id}: {c.error}", file=sys.stderr)
    return {
        "runs": len(cases),
        "faults_injected": sum(injected.values()),
        "faults": ", ".join(f"{n} {k}" for k, n in sorted(injected.items())) or "none",
        "completed": ends.get("completed", 0),
        "ended_typed": sum(ends.values()),
        "ends": ", ".join(f"{k} {n}" for k, n in sorted(ends.items())),
        "off_design": len(off_design),
        "stuck": sum(1 for c in cases if c.outcome is None),
        "refused": len(refusals),
        "effects_expected": effects["expected"],
        "effects_found": effects["found"],
        "duplicated": effects["duplicated"],
        "lost": effects["lost"],
        "wall_s": time.monotonic() - started,
    }


async def provider_faults(work: Path, runs: int, share: float, seed: int) -> Row:
    """The other engineer's scenario (tests/provider_faults.py), on a server of its own."""
    from tests.provider_faults import fault_scenario  # written separately; opt-in with --provider-faults

    world = World.create(work / "provider-world", [])
    server = ServerOnFile(work / "provider-temporal.db")
    started = time.monotonic()
    await server.start()
    try:
        row = await fault_scenario(await server.client(), load(world.config), runs, share, seed)
    finally:
        await asyncio.to_thread(server.stop, True)
    return {"wall_s": time.monotonic() - started, **row}


COLUMNS = [  # (header, key)
    ("runs", "runs"), ("faults injected", "faults"), ("ended (by state)", "ends"), ("off design", "off_design"),
    ("stuck", "stuck"), ("decisions refused", "refused"), ("effects expected", "effects_expected"), ("found", "effects_found"),
    ("duplicated", "duplicated"), ("lost", "lost"), ("wall", "wall_s"),
]


def table(rows: dict[str, Row]) -> str:
    def cell(row: Row, key: str) -> str:
        value = row.get(key, "-")
        if key == "wall_s" and isinstance(value, float):
            return f"{value:.0f}s"
        if key == "faults" and "faults" not in row:
            return str(row.get("faults_injected", "-"))
        if key == "ends" and "ends" not in row:
            return f"completed {row.get('completed', '-')}, typed {row.get('ended_typed', '-')}"
        return str(value)

    header = ["scenario", *(h for h, _ in COLUMNS)]
    body = [[name, *(cell(row, k) for _, k in COLUMNS)] for name, row in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def failed(row: Row) -> bool:
    return bool(row.get("duplicated") or row.get("lost") or row.get("stuck") or row.get("off_design"))


def quiet_client_logs() -> None:
    """The client's core logs every retried call while the server is down: keep the table readable."""
    filter = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=filter))), error_if_already_set=False)


async def main(args: argparse.Namespace) -> int:
    quiet_client_logs()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    print(f"chaos: seed {seed} (rerun with --seed {seed}); {args.runs} runs, {args.kills} worker kills, "
          f"{args.restarts} server restarts, {args.workers} workers", flush=True)
    work = Path(tempfile.mkdtemp(prefix="baton-chaos-"))
    scenarios: dict[str, Callable[[], Awaitable[Row]]] = {
        "worker kills + server restarts": lambda: worker_and_server_faults(
            work, args.runs, args.kills, args.restarts, seed, args.workers, args.slow),
    }
    if args.provider_faults is not None:
        scenarios["provider faults"] = lambda: provider_faults(work, args.runs, args.provider_faults, seed)
    rows: dict[str, Row] = {}
    try:
        for name, scenario in scenarios.items():
            rows[name] = await scenario()
    finally:
        if rows:
            print(table(rows))
        if args.keep:
            print(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    bad = [name for name, row in rows.items() if failed(row)]
    print("chaos: FAILED: " + ", ".join(bad) if bad else "chaos: nothing lost, nothing done twice, every run ended as designed")
    return 1 if bad or len(rows) < len(scenarios) else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--kills", type=int, default=10, help="worker kill -9s, at random moments")
    p.add_argument("--restarts", type=int, default=1, help="server restarts (SIGTERM or kill -9, by the seed)")
    p.add_argument("--seed", type=int, help="default: random, printed")
    p.add_argument("--workers", type=int, default=2, help="worker processes polling at once")
    p.add_argument("--slow", type=float, default=0.2, help="seconds added inside every write and model call")
    p.add_argument("--provider-faults", type=float, metavar="SHARE", help="add the provider-fault row (tests/provider_faults.py)")
    p.add_argument("--keep", action="store_true", help="keep the server, worker logs and systems of record")
    return p.parse_args(argv)


if __name__ == "__main__":
    code = 1
    try:
        code = asyncio.run(main(parse()))
    except Exception:
        traceback.print_exc()
    finally:
        exit_now(code)
