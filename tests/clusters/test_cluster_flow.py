"""Cluster runs on the loopback head: GPU shares, attach, a crashed monitor, bad input."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ray import tune

from radas_flows import Tuner, run_experiment
from radas_flows.clusters.jobs import job_client
from radas_flows.clusters.registry import ClusterAuthError, RegistryError, get_cluster
from radas_flows.errors import ExperimentStateError, RadasValueError
from radas_flows.inputs.references import SEPARATE_FILE_RULE
from radas_flows.inputs.spec import build_spec
from radas_flows.management import get_client
from radas_flows.stages.submit import driver_spec_for
from radas_flows.targets import ClusterUnavailableError, Progress
from radas_flows.targets.cluster import KEEP_JOB_ENV, ClusterRun, ClusterTarget
from tests.clusters.helpers import import_source
from tests.clusters.loopback_ray import RayHead

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("radas_env", "cluster_registry")]

TRAINABLES = """\
import json
import os
import time

import ray


def gpu_probe(config):
    resources = ray.get_runtime_context().get_assigned_resources()
    return {
        "score": config["a"] * 10,
        "gpu_ids": json.dumps([str(g) for g in ray.get_gpu_ids()]),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "gpu_share": resources.get("GPU", 0.0),
        "cpu_share": resources.get("CPU", 0.0),
    }


def sleeper(config):
    time.sleep(config["sleep"])
    return {"score": config["a"]}
"""


def project(workdir: Path) -> ModuleType:
    """The trainables as a module of the working dir, beside a file the upload excludes."""
    (workdir / "notes.log").write_text("not uploaded\n")
    return import_source(workdir, TRAINABLES, "cluster_trainables")


def run(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("user_name", "erin")
    kwargs.setdefault("run_with", "cluster:loopback")
    return asyncio.run(run_experiment(**kwargs))


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def progress_lines(job_logs: str) -> list[dict[str, Any]]:
    marker = "[radas-progress] "
    return [json.loads(x.split(marker, 1)[1]) for x in job_logs.splitlines() if marker in x]


def submit_directly(
    mod: ModuleType, workdir: Path, name: str, param_space: dict[str, Any]
) -> ClusterRun:
    """Start a cluster job of an experiment without a flow following it."""
    spec = build_spec(
        user_name="erin",
        trainable=mod.sleeper,
        experiment_name=name,
        run_with="cluster:loopback",
        param_space=param_space,
        run_choice="run",
        cwd=str(workdir),
    )
    target = ClusterTarget("loopback")
    check = target.check(spec)
    driver_spec = driver_spec_for(spec, "run", cpu_per_trial=1, check=check, target=target)
    return target.submit(spec, driver_spec, submit_key=None)


def test_cluster_run_end_to_end_with_gpu_shares(workdir: Path, ray_head: RayHead) -> None:
    mod = project(workdir)
    started = time.monotonic()
    results = run(
        trainable=mod.gpu_probe,
        experiment_name="gpu-share",
        param_space={"a": tune.grid_search([1, 2, 3, 4])},
        run_choice="run",
        runtime_env={"env_vars": {"RADAS_TEST_VAR": "x"}, "excludes": ["*.log"]},
    )
    elapsed = time.monotonic() - started
    print(f"\ncluster flow (4 trials) finished in {elapsed:.1f} s")
    df, tuner = results["df"], results["tuner"]
    assert isinstance(tuner, Tuner)
    assert sorted(df["score"]) == [10, 20, 30, 40]
    # loopback: gpu_per_cpu = 1, cpu_per_trial = 1 -> one whole GPU per trial.
    assert set(df["cpu_share"]) == {1.0} and set(df["gpu_share"]) == {1.0}
    for ids, visible in zip(df["gpu_ids"], df["cuda_visible_devices"], strict=True):
        assert len(json.loads(ids)) == 1
        assert visible in ("0", "1") and json.loads(ids) == [visible]
    # The results live under the cluster's results_root and are read back from there.
    expected_root = ray_head.temp_dir / "results" / "erin"
    assert Path(tuner.experiment_path).parent == expected_root
    # The job is the user's, named after the experiment, and it ended.
    (entry,) = [
        e
        for e in get_client("erin", "cluster:loopback").list_experiments()
        if e["experiment"].endswith("gpu_share")
    ]
    assert entry["status"] == "SUCCEEDED"
    client = job_client(get_cluster("loopback"))
    logs = client.get_job_logs(entry["job_id"])
    assert progress_lines(logs)[-1]["finished"] == 4
    # Analysis later, from the stored results only.
    again = run(trainable=mod.gpu_probe, experiment_name="gpu-share", dos=["analyze"])
    assert sorted(again["df"]["score"]) == [10, 20, 30, 40]


def test_fractional_gpu_share(
    workdir: Path, ray_head: RayHead, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = workdir / "clusters.toml"
    registry.write_text(
        ray_head.registry.read_text()
        + textwrap.dedent(
            f"""
            [loopback-half]
            address = "{ray_head.dashboard_url}"
            cpu_per_node = 2
            gpu_per_node = 2
            gpu_per_cpu = 0.5
            hint = "same cluster, half a GPU per CPU"
            token_file = "{ray_head.token_file}"
            results_root = "{ray_head.temp_dir / "results"}"
            """
        )
    )
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(registry))
    mod = project(workdir)
    results = run(
        trainable=mod.gpu_probe,
        experiment_name="half-share",
        run_with="cluster:loopback-half",
        param_space={"a": tune.grid_search([1, 2])},
        run_choice="run",
    )
    df = results["df"]
    assert set(df["gpu_share"]) == {0.5} and set(df["cpu_share"]) == {1.0}
    assert all(len(json.loads(ids)) == 1 for ids in df["gpu_ids"])
    assert all(v in ("0", "1") for v in df["cuda_visible_devices"])


def test_attach_follows_a_running_job_then_analyzes(workdir: Path) -> None:
    mod = project(workdir)
    space = {"a": tune.grid_search([1, 2]), "sleep": 2.0}
    handle = submit_directly(mod, workdir, "attach-me", space)
    client = job_client(get_cluster("loopback"))
    try:
        results = run(trainable=mod.sleeper, experiment_name="attach-me", run_choice="attach")
    finally:
        if not client.get_job_status(handle.job_id).is_terminal():
            client.stop_job(handle.job_id)
    assert str(client.get_job_status(handle.job_id).value) == "SUCCEEDED"
    assert sorted(results["df"]["score"]) == [1, 2]
    # Nothing running any more: attach analyzes what is stored.
    again = run(trainable=mod.sleeper, experiment_name="attach-me", run_choice="attach")
    assert sorted(again["df"]["score"]) == [1, 2]
    with pytest.raises(
        ExperimentStateError,
        match=r"run_choice='attach': no job of experiment 'never-ran' is running on cluster "
        r"'loopback', and no results are stored",
    ):
        run(trainable=mod.sleeper, experiment_name="never-ran", run_choice="attach")


class ExplodingArtifact:
    """A progress artifact whose update fails, standing for a flow that crashes mid-run."""

    def update(self, percent: float) -> None:
        raise RuntimeError("the flow crashed")


def test_a_crashed_monitor_stops_its_job_unless_asked_to_keep_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = project(workdir)
    space = {"a": tune.grid_search(list(range(4))), "sleep": 3.0}
    handle = submit_directly(mod, workdir, "crashing", space)
    client = job_client(get_cluster("loopback"))
    spec = build_spec(
        user_name="erin",
        trainable=mod.sleeper,
        experiment_name="crashing",
        run_with="cluster:loopback",
        cwd=str(workdir),
    )
    progress = Progress(ExplodingArtifact(), logging.getLogger("test-monitor"))  # type: ignore[arg-type]
    try:
        monkeypatch.setenv(KEEP_JOB_ENV, "1")
        with pytest.raises(RuntimeError, match="the flow crashed"):
            ClusterTarget("loopback").follow(spec, handle, progress)
        assert not client.get_job_status(handle.job_id).is_terminal()
        monkeypatch.delenv(KEEP_JOB_ENV)
        with pytest.raises(RuntimeError, match="the flow crashed"):
            ClusterTarget("loopback").follow(spec, handle, progress)
        wait_for(lambda: client.get_job_status(handle.job_id).is_terminal(), 60, "the stop")
        assert str(client.get_job_status(handle.job_id).value) == "STOPPED"
    finally:
        if not client.get_job_status(handle.job_id).is_terminal():
            client.stop_job(handle.job_id)


def test_bad_input_fails_before_submission(
    workdir: Path, ray_head: RayHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = project(workdir)
    space = {"a": tune.grid_search([1])}
    with pytest.raises(
        ClusterUnavailableError,
        match=r"Unknown cluster 'nope'.*\n\nAll available clusters are listed below.*\n"
        r"- \[status: online\] loopback: .*\n- \[status: offline\] offline: ",
    ) as unknown:
        run(
            trainable=mod.gpu_probe,
            experiment_name="bad",
            run_with="cluster:nope",
            param_space=space,
            run_choice="run",
        )
    rows = unknown.value.rows  # the availability table artifact
    assert [(r["cluster"], r["status"], r["cpu_per_node"]) for r in rows] == [
        ("loopback", "online", "2"),
        ("offline", "offline", "4"),
    ]
    with pytest.raises(ClusterUnavailableError, match=r"Cluster 'offline' is offline \("):
        run(
            trainable=mod.gpu_probe,
            experiment_name="bad",
            run_with="cluster:offline",
            param_space=space,
            run_choice="run",
        )
    with pytest.raises(RadasValueError, match=re.escape(SEPARATE_FILE_RULE)):
        run(
            trainable=lambda config: {"score": 1},
            experiment_name="bad",
            param_space=space,
            run_choice="run",
        )

    def in_main(config: dict[str, Any]) -> dict[str, Any]:
        return {"score": 1}

    in_main.__module__ = "__main__"  # as if defined in the script the user runs
    with pytest.raises(
        RadasValueError,
        match=r"trainable 'test_bad_input.*in_main' \(module "
        r"'__main__'\) cannot be sent to cluster 'loopback'",
    ):
        run(trainable=in_main, experiment_name="bad", param_space=space, run_choice="run")
    with pytest.raises(
        RadasValueError,
        match=r"cpu_per_trial=4(\.0)? is more than cpu_per_node of "
        r"loopback \(2\)",
    ):
        run(
            trainable=mod.gpu_probe,
            experiment_name="bad",
            param_space=space,
            run_choice="run",
            cpu_per_trial=4,
        )
    with pytest.raises(RadasValueError, match=r"working_dir"):
        run(
            trainable=mod.gpu_probe,
            experiment_name="bad",
            param_space=space,
            run_choice="run",
            runtime_env={"working_dir": "/elsewhere"},
        )
    with pytest.raises(RadasValueError, match=r"'image_uri'"):
        run(
            trainable=mod.gpu_probe,
            experiment_name="bad",
            param_space=space,
            run_choice="run",
            runtime_env={"image_uri": "img", "pip": ["x"]},
        )
    wrong = tmp_path / "wrong_token"
    wrong.write_text("not-the-token")
    registry = tmp_path / "wrong.toml"
    registry.write_text(ray_head.registry.read_text().replace(str(ray_head.token_file), str(wrong)))
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(registry))
    started = time.monotonic()
    with pytest.raises(ClusterAuthError, match=r"rejected the auth token from token_file"):
        run(trainable=mod.gpu_probe, experiment_name="bad", param_space=space, run_choice="run")
    assert time.monotonic() - started < 15
    registry.write_text("[loopback\n")
    with pytest.raises(RegistryError, match=r"is not valid TOML"):
        run(trainable=mod.gpu_probe, experiment_name="bad", param_space=space, run_choice="run")
    # None of these reached the cluster.
    client = job_client(get_cluster("loopback", path=ray_head.registry))
    assert not [
        j
        for j in client.list_jobs()
        if (j.metadata or {}).get("radas_experiment", "").endswith("_bad")
    ]
