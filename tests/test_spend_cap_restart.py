"""A cap across runs survives kill -9 of the worker and a restart of the server: nothing reserved is lost.

The real dev server on a SQLite file (tests/stack_process.py), the real worker as
a subprocess (tests/crash_worker.py) running the capped test processes as a team's
package, billing each answer its whole `max_output_tokens`: every request costs
exactly its worst case, W, known from the model's price in baton.toml. The cap is
3.5 W. One run completes (W settled); another is killed inside its model call, so
its reservation (W) is never settled; the worker is killed and the server
restarted. On a new worker the killed request is retried as a new attempt (another
W, settled), and the dead attempt's reservation still counts: the next run, which
would bring the window to 4 W, is stopped before its request is sent.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from activities.spend import AcrossRuns
from client.sdk import Baton
from tests.spend_processes import CAPPED, MAX_OUTPUT, MODEL
from tests.stack_process import ServerOnFile, WorkerProcess, World, outcome_of
from workflows.ledger import StepKind
from workflows.outcome import RunState
from workflows.registry import REGISTRY

pytestmark = pytest.mark.integration

PROCESS = "test-capped-end"
OUTPUT_PRICE = 10_000.0  # USD per million output tokens, as baton.toml says it below
W = OUTPUT_PRICE * MAX_OUTPUT / 1_000_000  # one request's worst case, and (at full price) its cost
CAP = AcrossRuns(max_cost_usd=3.5 * W, window="P31D")  # three requests fit, a fourth does not


def capped_config(world: World) -> None:
    """The world's baton.toml, running the capped test processes with the priced model and the cap."""
    with world.config.open("a") as toml:
        toml.write(
            # The shipped processes too: their grants come with --demo.
            '\n[plugins]\npackages = ["baton_examples.package", "tests.spend_processes"]\n\n'
            # Models given replace the default ones: the tiers' offline models are named again.
            '[models.offline-fast]\nprovider = "offline"\nname = "offline-fast"\nprice = { input = 0.15, output = 0.60 }\n\n'
            '[models.offline-strong]\nprovider = "offline"\nname = "offline-strong"\nprice = { input = 3.0, output = 15.0 }\n\n'
            f'[models.{MODEL}]\nprovider = "offline"\nname = "{MODEL}"\n'
            f"price = {{ input = 0.0, output = {OUTPUT_PRICE} }}\n\n"
            f"[budgets.{PROCESS}]\nmax_cost_usd = {10 * W}\n\n"  # each run's own cap: never the one that stops it
            f"[budgets.{PROCESS}.across_runs]\nmax_cost_usd = {CAP.max_cost_usd}\nwindow = \"P31D\"\n"
        )


@pytest.fixture
async def server(tmp_path):
    s = ServerOnFile(tmp_path / "temporal.db")
    await s.start()
    try:
        yield s
    finally:
        await asyncio.to_thread(s.stop, True)


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.kill()


async def start_worker(server, world, queue, workers, **pause) -> WorkerProcess:
    w = WorkerProcess(server, world, queue, full_price=1, **pause).start()
    workers.append(w)
    await w.ready()
    return w


async def test_reservations_survive_a_killed_worker_and_a_restarted_server(server, tmp_path, workers):
    for process in CAPPED:
        REGISTRY.add_process(process)  # this test's client knows them as a team's CLI would
    world = World.create(tmp_path / "world", [])
    capped_config(world)
    queue = f"spendcap-{uuid.uuid4().hex[:8]}"
    client = await server.client()
    baton = Baton(client, queue, tokens=world.tokens)
    paid, killed, late = (f"{PROCESS}-{name}-{uuid.uuid4().hex[:6]}" for name in ("paid", "killed", "late"))

    first = await start_worker(server, world, queue, workers, models=["EndLabel"], runs=[killed])
    await baton.start(PROCESS, {"text": "paid"}, run_id=paid)
    paid_outcome = await outcome_of(client, paid, 60)
    await baton.start(PROCESS, {"text": "killed"}, run_id=killed)
    inside = await world.marker("model-EndLabel", worker=first)
    assert (inside["workflow_id"], inside["attempt"]) == (killed, 1)

    first.kill()
    await server.restart(hard=True)
    await start_worker(server, world, queue, workers)

    killed_outcome = await outcome_of(client, killed, 120)  # its request asked again, as a new attempt
    (asked,) = [e for e in await baton.ledger(killed) if e.kind is StepKind.LLM]
    held = await baton.spend_window(PROCESS, CAP)
    await baton.start(PROCESS, {"text": "late"}, run_id=late)
    late_outcome = await outcome_of(client, late, 60)
    after = await baton.spend_window(PROCESS, CAP)

    assert (paid_outcome.state, paid_outcome.cost_usd) == (RunState.COMPLETED, W)
    # The run bills the attempt cut off at its worst case (its last heartbeat said the request was out), as the
    # cap counts it: the killed attempt's reservation was never settled and still counts, at its worst case.
    assert (killed_outcome.state, killed_outcome.cost_usd, asked.attempts) == (RunState.COMPLETED, 2 * W, 2)
    assert (held.settled_usd, held.reserved_usd, held.reservations, held.refused) == (2 * W, W, 3, 0)
    assert (late_outcome.state, late_outcome.cap, late_outcome.cost_usd) == (RunState.BUDGET_EXCEEDED, "across_runs", 0.0)
    assert late_outcome.reason.startswith(
        f"across_runs: {PROCESS} has ${2 * W:.6f} settled and ${W:.6f} reserved of its ${CAP.max_cost_usd:g} cap"
    )
    assert (after.settled_usd, after.reserved_usd, after.reservations, after.refused) == (2 * W, W, 3, 1)
    assert after.counted_usd == paid_outcome.cost_usd + killed_outcome.cost_usd  # what the runs paid, no more, no less
