"""Every dev server Baton starts reads its task queues as fast as a local step needs (issue 20, item 3).

Temporal's history service reads each shard's queues of tasks (transfer: workflow and activity
tasks on their way to matching; timer; visibility) at most `history.<queue>ProcessorMaxPollRPS`
times a second, 20 by default, with a burst of as many. A cluster spreads runs over hundreds of
shards; the dev server has one. So after the first ~20 tasks every workflow task and activity task
of the whole server waits for the next read, and a sequential no-op step goes from ~12 ms to ~50 ms
(benchmarks/steps.py measures it, beside a server left at the defaults). Here: `baton dev`'s server,
the tests' and the benchmarks' are all told a rate far above what one sequential run needs.
"""

from __future__ import annotations

from pathlib import Path

from worker.devserver import DevServer, dev_server_args

QUEUES = ("transfer", "timer", "visibility")
# A step of ~5 ms reads a queue ~200 times a second in one run alone; any rate under that paces the run.
FASTEST_STEP_READS = 200


def dynamic_config(args: list[str]) -> dict[str, str]:
    pairs = [args[i + 1] for i, arg in enumerate(args) if arg == "--dynamic-config-value"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_baton_dev_tells_its_server_to_read_each_queue_faster_than_a_step(tmp_path: Path):
    told = dynamic_config(DevServer(tmp_path / "temporal.db", port=7999)._command())
    for queue in QUEUES:
        key = f"history.{queue}ProcessorMaxPollRPS"
        assert key in told, f"baton dev leaves {key} at Temporal's default of 20 reads a second"
        assert int(told[key]) >= FASTEST_STEP_READS, f"{key}={told[key]} paces a local run"


def test_the_tests_and_benchmarks_start_the_server_baton_dev_starts(tmp_path: Path):
    told = dynamic_config(DevServer(tmp_path / "temporal.db", port=7999)._command())
    assert dynamic_config(dev_server_args()) == told
