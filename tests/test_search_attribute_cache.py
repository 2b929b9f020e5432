"""Baton's dev server keeps its search attributes cached, and waits for any it adds (issue 20, item 3).

Temporal's CLI starts its dev server with the search-attribute cache off unless told otherwise,
so that an attribute added while it runs can be used at once. Every attribute a run sets or
upserts then reads the cluster's attributes and the namespace from persistence: about 20 reads
for an onboarding run, ~5 ms of the server's CPU. Baton names its attributes when it starts the
server and keeps the cache on (worker/devserver.py CACHES). The price: an attribute added to a
running server is refused for a few seconds ("no mapping defined"), so
`register_search_attributes` returns only once the server maps what it added.
"""

from __future__ import annotations

import asyncio
import collections
import re

import httpx
import pytest

from client.sdk import Baton
from tests.conftest import baton_dev_server, running_worker
from tests.stack_process import free_port
from tests.test_onboarding_routes import CLEAR
from worker.devserver import register_search_attributes, until_mapped
from workflows.outcome import RunState

# What the history service reads from persistence for each attribute a run sets, when its cache is off.
UNCACHED_READS = ("GetCurrentClusterMetadata", "GetNamespace")


async def persistence_requests(port: int) -> collections.Counter:
    """The server's count of persistence requests by (service, operation), from its Prometheus metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    counts: collections.Counter = collections.Counter()
    for labels, value in re.findall(r"^persistence_requests\{(.*)\} (\S+)$", text, re.MULTILINE):
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counts[label["service_name"], label["operation"]] += float(value)
    return counts


async def after_runs(port: int, runs: int) -> collections.Counter:
    """The counts once they include `runs` started runs: the server reports its metrics every second or so."""
    for _ in range(100):
        counts = await persistence_requests(port)
        if counts["history", "CreateWorkflowExecution"] >= runs:
            return counts
        await asyncio.sleep(0.1)
    raise AssertionError(f"the server's metrics never counted {runs} runs")


async def test_runs_on_batons_dev_server_read_no_search_attributes_from_storage(issuer, payload_dir, config):
    port, runs = free_port(), 4
    async with baton_dev_server(issuer, payload_dir, "--metrics-port", str(port)) as env:
        async with running_worker(env.client, config) as w:
            baton = Baton(env.client, w.task_queue)
            assert (await baton.result(await baton.start("onboarding", CLEAR))).state is RunState.COMPLETED
            before = await after_runs(port, 1)
            for _ in range(runs):
                assert (await baton.result(await baton.start("onboarding", CLEAR))).state is RunState.COMPLETED
            after = await after_runs(port, 1 + runs)

    reads = {op: after["history", op] - before["history", op] for op in UNCACHED_READS}
    # Uncached, the history service reads ~18 times per onboarding run (one upsert alone: 2 + 3); cached,
    # only a periodic refresh may fall in the window.
    assert sum(reads.values()) < runs, f"{reads} for {runs} runs: the server reads its search attributes per run"


async def test_attributes_added_to_a_running_server_can_be_used_once_registration_returns(issuer, payload_dir, config):
    async with baton_dev_server(issuer, payload_dir, attributes=()) as env:
        await register_search_attributes(env.client, env.client.namespace)
        async with running_worker(env.client, config) as w:
            baton = Baton(env.client, w.task_queue)
            run_id = await baton.start("onboarding", CLEAR)  # sets BatonProcess and BatonSubject at start
            assert (await baton.result(run_id)).state is RunState.COMPLETED
        with pytest.raises(ConnectionError, match=r"still refuses them after 1 s: .*BatonNeverAdded"):
            await until_mapped(env.client, ["BatonNeverAdded"], within_s=1)
