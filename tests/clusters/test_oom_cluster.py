"""Out-of-memory escalation of a cluster run: the re-run round is a second job with more CPUs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from radas_flows import run_experiment
from radas_flows.clusters.jobs import find_jobs, job_client
from radas_flows.clusters.registry import get_cluster
from radas_flows.oom.rounds import read_manifest
from radas_flows.storage import Storage
from tests.clusters.helpers import import_source
from tests.clusters.loopback_ray import RayHead

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("radas_env", "cluster_registry")]

# Uploaded with the working dir: the cluster imports the trainable by reference.
TRAINABLE = """\
import json
import os
import resource

import ray

MIB = 2**20


def memory_hungry(config):
    resources = ray.get_runtime_context().get_assigned_resources()
    cpus = resources.get("CPU", 0.0)
    line = json.dumps({"x": config["x"], "cpus": cpus, "gpus": resources.get("GPU", 0.0)})
    with open(config["count_file"], "a") as f:
        f.write(line + "\\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as status:
        vm = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(cpus * 512 * MIB), hard))
    try:
        block = bytearray(config["need_mib"] * MIB)
        del block
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return {"score": config["x"], "cpus": cpus, "gpus": resources.get("GPU", 0.0)}
"""


def executions(count_file: Path) -> dict[int, list[tuple[float, float]]]:
    runs: dict[int, list[tuple[float, float]]] = {}
    for line in count_file.read_text().splitlines():
        entry = json.loads(line)
        runs.setdefault(entry["x"], []).append((entry["cpus"], entry["gpus"]))
    return runs


def run(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("user_name", "erin")
    kwargs.setdefault("run_with", "cluster:loopback")
    return asyncio.run(run_experiment(**kwargs))


def test_cluster_run_reruns_out_of_memory_trials_as_a_new_job(
    workdir: Path, ray_head: RayHead
) -> None:
    mod = import_source(workdir, TRAINABLE, "oom_trainable")
    count_file = workdir / "executions.jsonl"
    space = {
        "x": tune.grid_search([1, 2, 3]),
        "need_mib": tune.sample_from(lambda config: 768 if config["x"] == 2 else 64),
        "count_file": str(count_file),
    }
    results = run(
        trainable=mod.memory_hungry, experiment_name="oom", param_space=space, run_choice="run"
    )
    # loopback: gpu_per_cpu = 1, so the GPU share doubled with the CPUs.
    assert executions(count_file) == {1: [(1.0, 1.0)], 2: [(1.0, 1.0), (2.0, 2.0)], 3: [(1.0, 1.0)]}
    df = results["df"].set_index("config/x")
    assert df["cpu_per_trial"].to_dict() == {1: 1.0, 2: 2.0, 3: 1.0}
    assert df["gpus"].to_dict() == {1: 1.0, 2: 2.0, 3: 1.0}
    assert (df["trial_status"] == "TERMINATED").all()

    # The round ran as its own job, stored beside the experiment on the cluster's results root.
    path = results["tuner"].experiment_path
    assert Path(path).parent == ray_head.temp_dir / "results" / "erin"
    [entry] = read_manifest(Storage(path)).rounds  # type: ignore[union-attr]
    assert Path(Storage(path).sibling(entry.name).path).is_dir()
    client = job_client(get_cluster("loopback"))
    jobs = find_jobs(client, "erin", entry.name)
    assert [str(job.status.value) for job in jobs] == ["SUCCEEDED"]

    again = run(trainable=mod.memory_hungry, experiment_name="oom", dos=["analyze"])
    assert again["df"].set_index("config/x")["cpu_per_trial"].to_dict() == {1: 1.0, 2: 2.0, 3: 1.0}
