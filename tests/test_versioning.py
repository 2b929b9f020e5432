"""Worker Versioning: the [worker] table's deployment and build id, and the worker they make."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.common import VersioningBehavior

from tests.conftest import running_worker
from tests.test_config import write
from worker.config import BUILD_ID_ENV, ConfigError, WorkerSettings, load


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
