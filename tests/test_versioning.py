"""Worker Versioning on the real dev server: deploying build B breaks no run started on build A.

Two Baton workers poll one task queue as two versions of one deployment
(`[worker] deployment` and `build_id`), each with its own build of the same
processes (tests/versioned_processes.py), whose last step names the build that
ran it. The current version is set with the plain `temporal` CLI, as an
operator does it. Pinned runs started on A finish on A while new runs start on
B; a parked auto-upgrade run moves to B. Which build ran each workflow task is
read from the run's history, as Temporal recorded it. Below it, the [worker]
table's deployment and build id, and the worker they make.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from temporalio.api.enums.v1 import EventType, RoutingConfigUpdateState
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client
from temporalio.common import VersioningBehavior
from temporalio.service import RPCError, RPCStatusCode

from client.sdk import Baton
from tests.versioned_processes import BUILD_A, BUILD_B, MOVING, PINNED, MovingOnA, Ticket
from worker.binaries import temporal_cli
from tests.conftest import running_worker
from tests.test_config import write
from worker.config import BUILD_ID_ENV, BatonConfig, ConfigError, WorkerSettings, load
from worker.registration import baton_worker

WAIT_S = 30


@asynccontextmanager
async def build(client: Client, config: BatonConfig, queue: str, deployment: str, build_id: str,
                processes: tuple[type, ...]) -> AsyncIterator[None]:
    """A Baton worker of `deployment`'s version `build_id`, running this build's `processes`."""
    versioned = config.model_copy(update={"worker": WorkerSettings(deployment=deployment, build_id=build_id)})
    async with baton_worker(client, versioned, queue=queue, extra_workflows=processes):
        yield


async def set_current(client: Client, deployment: str, build_id: str) -> None:
    """`temporal worker deployment set-current-version`, once the server has seen the version's worker poll."""
    args = ("worker", "deployment", "set-current-version", "--deployment-name", deployment, "--build-id", build_id,
            "--yes", "--address", client.service_client.config.target_host, "--namespace", client.namespace)
    for _ in range(WAIT_S * 4):
        proc = await asyncio.create_subprocess_exec(
            str(temporal_cli()), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode == 0:
            return await routed(client, deployment, build_id)
        await asyncio.sleep(0.25)  # a version exists once its first poll reached the server
    raise AssertionError(f"set-current-version {build_id} kept failing: {err.decode()}{out.decode()}")


# What the dev server (Temporal 1.32) may answer a describe while its deployment workflow is busy routing.
BUSY = (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE)


async def routed(client: Client, deployment: str, build_id: str) -> None:
    """Wait until every task queue of `deployment` routes to `build_id` (the server may propagate it after answering).

    The server answers a describe by querying the deployment's system workflow,
    once: while that workflow propagates the new routing to the task queue's
    partitions, the query can come back CANCELLED (Go's "operation was
    canceled", from inside the server), as one CI run in four saw. That is the
    routing not settled yet, so it is read again; later servers retry the query
    themselves (workerdeployment client `queryWorkflowWithRetry`).
    """
    ask = DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
    for _ in range(WAIT_S * 10):
        try:
            info = (await client.workflow_service.describe_worker_deployment(ask)).worker_deployment_info
        except RPCError as err:
            if err.status not in BUSY:
                raise
        else:
            current = info.routing_config.current_deployment_version.build_id
            if current == build_id and info.routing_config_update_state != RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_IN_PROGRESS:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{deployment} never routed to {build_id}")


async def parked(client: Client, baton: Baton, process: str, queue: str) -> str:
    """A run of `process`, started and waiting for its approval."""
    run_id = f"{process}-{uuid.uuid4().hex[:6]}"
    await client.start_workflow(process, Ticket(reference=run_id), id=run_id, task_queue=queue)
    for _ in range(WAIT_S * 10):
        if (await baton.status(run_id)).open_requests:
            return run_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run_id} never parked")


async def task_builds(client: Client, run_id: str) -> list[str]:
    """The build id of the worker that completed each of the run's workflow tasks, in order."""
    history = await client.get_workflow_handle(run_id).fetch_history()
    return [event.workflow_task_completed_event_attributes.deployment_version.build_id
            for event in history.events if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]


async def behavior(client: Client, run_id: str) -> VersioningBehavior:
    info = (await client.get_workflow_handle(run_id).describe()).raw_description.workflow_execution_info
    return VersioningBehavior(info.versioning_info.behavior)


async def test_pinned_runs_started_on_a_finish_on_a_while_new_runs_and_auto_upgrade_runs_run_on_b(dev_env, config):
    client = dev_env.client
    queue, deployment = f"baton-test-{uuid.uuid4().hex[:8]}", f"baton-test-{uuid.uuid4().hex[:8]}"
    baton = Baton(client, queue)
    async with build(client, config, queue, deployment, "A", BUILD_A):
        await set_current(client, deployment, "A")
        pinned_on_a = await parked(client, baton, PINNED, queue)
        moving = await parked(client, baton, MOVING, queue)
        async with build(client, config, queue, deployment, "B", BUILD_B):
            await set_current(client, deployment, "B")
            pinned_on_b = await parked(client, baton, PINNED, queue)
            for run_id in (pinned_on_a, moving, pinned_on_b):
                await baton.approve(run_id, by="carol")
            reasons = [(await baton.result(run_id)).reason for run_id in (pinned_on_a, moving, pinned_on_b)]

    assert reasons == ["approved on build A", "approved on build B", "approved on build B"]
    assert set(await task_builds(client, pinned_on_a)) == {"A"}
    moved = await task_builds(client, moving)
    assert moved[0] == "A" and moved[-1] == "B", moved
    assert set(await task_builds(client, pinned_on_b)) == {"B"}
    assert await behavior(client, pinned_on_a) == VersioningBehavior.PINNED  # Baton's default, declared by nobody
    assert await behavior(client, moving) == VersioningBehavior.AUTO_UPGRADE


# ----- the [worker] table --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_build_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """No build id from the shell running the tests: each test sets its own."""
    monkeypatch.delenv(BUILD_ID_ENV, raising=False)


def test_the_build_id_the_deploy_sets_wins_over_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[worker]\ndeployment = "baton"\nbuild_id = "from-the-file"\n')
    assert load(path).worker.version().to_canonical_string() == "baton.from-the-file"
    monkeypatch.setenv(BUILD_ID_ENV, "2024.06.01-9f2c1ab")
    assert load(path).worker.version().to_canonical_string() == "baton.2024.06.01-9f2c1ab"


@pytest.mark.parametrize(("table", "says"), [
    ('deployment = "baton"', "worker: deployment 'baton' needs a build_id (or $BATON_BUILD_ID)"),
    ('build_id = "b1"', "worker: build_id 'b1' needs a deployment name"),
    ('deployment = "baton.eu"\nbuild_id = "b1"', "worker.deployment: String should match pattern"),
    ('deployment = "baton"\nbuild_id = "b 1"', "worker.build_id: String should match pattern"),
])
def test_a_half_or_malformed_version_is_refused_in_one_line(tmp_path: Path, table: str, says: str) -> None:
    path = write(tmp_path, f"[worker]\n{table}\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert says in str(err.value) and "\n" not in str(err.value)


async def test_a_worker_without_a_deployment_is_unversioned_and_one_with_one_pins_by_default(time_env, config) -> None:
    async with running_worker(time_env.client, config) as plain:
        assert plain.config()["deployment_config"] is None
    versioned = config.model_copy(update={"worker": WorkerSettings(deployment="baton", build_id="b1")})
    async with running_worker(time_env.client, versioned) as worker:
        deployment = worker.config()["deployment_config"]
    assert deployment.version.to_canonical_string() == "baton.b1" and deployment.use_worker_versioning
    assert deployment.default_versioning_behavior == VersioningBehavior.PINNED


async def test_a_process_declaring_a_behavior_on_an_unversioned_worker_is_refused_at_start(time_env, config) -> None:
    """The server refuses every workflow task that carries a behavior from an unversioned worker: say so once, at start."""
    with pytest.raises(ConfigError, match=rf"^process {MOVING} declares versioning_behavior=AUTO_UPGRADE, which needs a "
                                          r"versioned worker: set \[worker\] deployment and build_id"):
        async with running_worker(time_env.client, config, extra_workflows=(MovingOnA,)):
            pass
