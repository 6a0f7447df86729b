"""Paths follow the run target: results root, data dirs and S3 settings reach the cluster job,
and analysis of a cluster experiment reads the stored results without the cluster."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from radas_flows import run_experiment
from radas_flows.clusters.jobs import job_client
from radas_flows.clusters.registry import get_cluster
from radas_flows.core import get_ray_results_dir
from radas_flows.management import get_client
from radas_flows.targets import ClusterUnavailableError
from tests.clusters.helpers import import_source, loopback_variant
from tests.clusters.loopback_ray import RayHead, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("radas_env")]

TRAINABLE = """\
import os

from radas_flows.core import get_ray_results_dir
from radas_flows.data import get_cold_data_dir, get_data_dir

NAMES = ("RADAS_S3_BUCKET", "RADAS_S3_PREFIX", "RADAS_S3_ENDPOINT_URL", "AWS_DEFAULT_REGION",
         "AWS_SECRET_ACCESS_KEY")


def paths(config):
    user = config["user"]
    return {
        "results_dir": get_ray_results_dir(user),
        "data_dir": get_data_dir(user),
        "cold_data_dir": get_cold_data_dir(user),
        **{name.lower(): os.environ.get(name, "<unset>") for name in NAMES},
    }
"""

SETTINGS = {
    "RADAS_S3_BUCKET": "team-bucket",
    "RADAS_S3_PREFIX": "radas/artifacts",
    "RADAS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_DEFAULT_REGION": "eu-central-1",
}


def test_paths_reach_the_job_and_analysis_needs_no_cluster(
    ray_head: RayHead, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared-results"  # the cluster's results_root, mounted here too
    shared.mkdir()
    registry = loopback_variant(ray_head, tmp_path / "c.toml", "shared", results_root=str(shared))
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(registry))
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RADAS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RADAS_COLD_DATA_ROOT", str(tmp_path / "cold"))
    aws_secret = f"aws-secret-{secrets.token_hex(8)}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws_secret)

    assert get_ray_results_dir("dana", run_with="cluster:shared") == f"{shared}/dana/"
    assert get_ray_results_dir("dana", run_with="local") == get_ray_results_dir("dana")
    assert not get_ray_results_dir("dana").startswith(str(shared))

    mod = import_source(workdir, TRAINABLE, "path_trainable")
    kwargs: dict[str, Any] = dict(
        user_name="dana",
        trainable=mod.paths,
        experiment_name="paths",
        run_with="cluster:shared",
        param_space={"user": "dana", "a": tune.grid_search([1, 2])},
    )
    ran = asyncio.run(run_experiment(**kwargs, run_choice="run"))["df"]
    row = ran.iloc[0].to_dict()
    assert row["results_dir"] == f"{shared}/dana/"
    assert row["data_dir"] == str(tmp_path / "data" / "dana")
    assert row["cold_data_dir"] == str(tmp_path / "cold" / "dana")
    for name, value in SETTINGS.items():
        assert row[name.lower()] == value
    assert row["aws_secret_access_key"] != aws_secret  # credentials are never sent

    (entry,) = [
        e
        for e in get_client("dana", "cluster:shared").list_experiments()
        if e["experiment"].endswith("paths")
    ]
    info = job_client(get_cluster("shared")).get_job_info(entry["job_id"])
    job_text = json.dumps([info.entrypoint, info.runtime_env, info.metadata], default=repr)
    assert aws_secret not in job_text and "AWS_SECRET_ACCESS_KEY" not in job_text
    assert info.runtime_env["env_vars"]["RADAS_RESULTS_ROOT"] == str(shared)

    # The cluster goes away (its registry entry now names a dead address); the results stay.
    dead = loopback_variant(
        ray_head,
        tmp_path / "dead.toml",
        "shared",
        results_root=str(shared),
        address=f"http://127.0.0.1:{free_port()}",
    )
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(dead))
    analyzed = asyncio.run(run_experiment(**kwargs, dos=["analyze"]))["df"]
    assert sorted(analyzed["config/a"]) == [1, 2]
    assert analyzed["results_dir"].tolist() == ran["results_dir"].tolist()

    # A results root this machine does not have is named, and nothing is asked of the cluster.
    gone = loopback_variant(
        ray_head,
        tmp_path / "gone.toml",
        "shared",
        results_root=str(tmp_path / "not-mounted"),
        address=f"http://127.0.0.1:{free_port()}",
    )
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(gone))
    with pytest.raises(ClusterUnavailableError, match=r"results_root .*not-mounted.* not a folder"):
        asyncio.run(run_experiment(**kwargs, dos=["analyze"]))
