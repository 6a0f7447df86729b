"""The submit stage survives a cluster API that drops a connection: Prefect retries, one job."""

from __future__ import annotations

import asyncio
import importlib
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ray import tune

from radas_flows import run_experiment
from radas_flows.clusters.jobs import find_jobs, job_client
from radas_flows.clusters.registry import get_cluster
from radas_flows.clusters.submit import METADATA_SUBMIT_KEY
from tests.clusters.flaky_proxy import FlakyProxy, Rule
from tests.clusters.loopback_ray import RayHead

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("radas_env")]

TRAINABLE = """\
def square(config):
    return {"score": config["a"] ** 2}
"""


@pytest.fixture
def proxy(ray_head: RayHead) -> Iterator[FlakyProxy]:
    flaky = FlakyProxy(ray_head.dashboard_url)
    try:
        yield flaky
    finally:
        flaky.close()


@pytest.fixture
def flaky_registry(
    ray_head: RayHead, proxy: FlakyProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loopback cluster once more, as ``flaky``, reached through the proxy."""
    loopback = tomllib.loads(ray_head.registry.read_text())["loopback"]
    lines = ["[flaky]"]
    for key, value in {**loopback, "address": proxy.url}.items():
        lines.append(f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}")
    registry = tmp_path / "flaky.toml"
    registry.write_text("\n".join(lines).replace("'", '"') + "\n")
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(registry))


def project(workdir: Path) -> ModuleType:
    name = f"retry_trainable_{uuid.uuid4().hex[:8]}"
    (workdir / f"{name}.py").write_text(TRAINABLE)
    sys.path.insert(0, str(workdir))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(workdir))


@pytest.mark.usefixtures("flaky_registry")
@pytest.mark.parametrize("failure", ["drop_request", "lose_answer"])
def test_submission_is_retried_and_never_doubled(
    failure: str, workdir: Path, proxy: FlakyProxy
) -> None:
    # The first POST /api/jobs/ (the submission itself) fails: either it never reaches the
    # API, or the API creates the job and its answer is lost.
    proxy.rules.append(Rule("POST", "/api/jobs/", failure))  # type: ignore[arg-type]
    mod = project(workdir)
    experiment = f"retry-{failure}"
    results = asyncio.run(
        run_experiment(
            user_name="erin",
            trainable=mod.square,
            experiment_name=experiment,
            run_with="cluster:flaky",
            param_space={"a": tune.grid_search([1, 2, 3])},
            run_choice="run",
        )
    )

    assert proxy.rules[0].hits == 1, "the proxy must have failed exactly one submission"
    assert sorted(results["df"]["score"]) == [1, 4, 9]
    client = job_client(get_cluster("flaky"))
    [job] = find_jobs(client, "erin", results["tuner"].experiment_path.rsplit("/", 1)[1])
    assert str(job.status.value) == "SUCCEEDED"
    submit_run, logs = submit_task_run_and_logs()
    assert submit_run.run_count == 2, "Prefect retried the submit stage once"
    assert job.metadata[METADATA_SUBMIT_KEY] == str(submit_run.id)
    submits = [r for r in proxy.requests if r == ("POST", "/api/jobs/")]
    if failure == "drop_request":
        assert len(submits) == 2, "the retry submits once more"
    else:
        # The job exists after the first attempt: the retry finds it and submits nothing.
        assert len(submits) == 1
        assert any("following that job instead of submitting again" in m for m in logs)


def submit_task_run_and_logs() -> tuple[Any, list[str]]:
    """The newest flow run's experiment_submit task run, and the flow run's log messages."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
        TaskRunFilter,
        TaskRunFilterName,
    )
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    with get_client(sync_client=True) as client:
        [flow_run] = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
        [submit_run] = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="experiment_submit")),
        )
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])), limit=200
        )
    return submit_run, [log.message for log in logs]
