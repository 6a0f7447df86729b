"""A cluster API that drops connections: submission and monitoring retry, and one job runs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray import tune

from radas_flows import run_experiment
from radas_flows.clusters.job_package import METADATA_SUBMIT_KEY
from radas_flows.clusters.jobs import find_jobs, job_client
from radas_flows.clusters.registry import get_cluster
from tests.clusters.flaky_proxy import FlakyProxy, Rule
from tests.clusters.helpers import import_source, loopback_variant
from tests.clusters.loopback_ray import RayHead
from tests.prefect_reads import latest_flow_run, logs_of, task_runs_of

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
    registry = loopback_variant(ray_head, tmp_path / "flaky.toml", "flaky", address=proxy.url)
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(registry))


@pytest.mark.usefixtures("flaky_registry")
@pytest.mark.parametrize("failure", ["drop_request", "lose_answer"])
def test_submission_is_retried_and_never_doubled(
    failure: str, workdir: Path, proxy: FlakyProxy
) -> None:
    # The first POST /api/jobs/ (the submission itself) fails: either it never reaches the
    # API, or the API creates the job and its answer is lost.
    proxy.rules.append(Rule("POST", "/api/jobs/", failure))  # type: ignore[arg-type]
    mod = import_source(workdir, TRAINABLE, "retry_trainable")
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
    flow_run = latest_flow_run()
    task_runs = task_runs_of(flow_run.id)
    [submit_run] = [t for t in task_runs if t.name.startswith("experiment_submit")]
    logs = logs_of(flow_run.id)
    assert submit_run.run_count == 2, "Prefect retried the submit stage once"
    assert job.metadata[METADATA_SUBMIT_KEY] == str(submit_run.id)
    submits = [r for r in proxy.requests if r == ("POST", "/api/jobs/")]
    if failure == "drop_request":
        assert len(submits) == 2, "the retry submits once more"
    else:
        # The job exists after the first attempt: the retry finds it and submits nothing.
        assert len(submits) == 1
        assert any("following that job instead of submitting again" in m for m in logs)


@pytest.mark.usefixtures("flaky_registry")
def test_monitoring_survives_dropped_connections_without_a_second_job(
    workdir: Path, proxy: FlakyProxy
) -> None:
    # Once the job exists, its next 4 status and log requests fail: two never reach the API,
    # then two answers are lost on the way back.
    proxy.rules += [
        Rule("GET", "/api/jobs/radas-erin-", "drop_request", times=2, prefix=True),
        Rule("GET", "/api/jobs/radas-erin-", "lose_answer", times=2, prefix=True),
    ]
    mod = import_source(workdir, TRAINABLE, "retry_trainable")
    results = asyncio.run(
        run_experiment(
            user_name="erin",
            trainable=mod.square,
            experiment_name="monitor-drops",
            run_with="cluster:flaky",
            param_space={"a": tune.grid_search([1, 2, 3])},
            run_choice="run",
        )
    )
    assert [rule.hits for rule in proxy.rules] == [2, 2]
    assert sorted(results["df"]["score"]) == [1, 4, 9]
    client = job_client(get_cluster("flaky"))
    jobs = find_jobs(client, "erin", results["tuner"].experiment_path.rsplit("/", 1)[1])
    assert [str(j.status.value) for j in jobs] == ["SUCCEEDED"]  # one job on the head
    assert [r for r in proxy.requests if r[0] == "POST"] == [("POST", "/api/jobs/")]
    logs = logs_of(latest_flow_run().id)
    retries = [m for m in logs if "did not answer" in m and "retrying in" in m]
    print("\n" + "\n".join(retries))
    # Status polls are retried with one backoff, doubling, as long as the failures last; a
    # failed request of the log stream (Ray's tail_job_logs) reconnects the stream instead.
    assert 1 <= len(retries) <= 4
    assert [m.split("retrying in ", 1)[1] for m in retries] == [
        f"{2**i} s (attempt {i + 1})" for i in range(len(retries))
    ]
