"""A cluster whose results_root is S3: the job writes there, the flow reads it back and analyzes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from radas_flows import run_experiment
from radas_flows.secrets import NotSecret
from tests.clusters.helpers import import_source, loopback_variant
from tests.clusters.loopback_ray import RayHead

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("radas_env")]

BUCKET = "cluster-results"
# moto accepts any credentials; these are not secrets of anything real (NotSecret says so: a
# real key would be set on the cluster's nodes, or passed as {"env": "VAR"}).
AWS_ENV: dict[str, Any] = {
    "AWS_ACCESS_KEY_ID": NotSecret("testing-key-id"),
    "AWS_SECRET_ACCESS_KEY": NotSecret("testing-secret-key"),
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

TRAINABLE = """\
def square(config):
    return {"score": config["a"] ** 2}
"""


@pytest.fixture
def s3_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 with one bucket; the flow's AWS settings point at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, getattr(value, "value", value))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the local copy of CSV and figure
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_registry(
    ray_head: RayHead, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loopback cluster once more, as ``s3cluster``, storing its results on S3."""
    registry = loopback_variant(
        ray_head, tmp_path / "s3.toml", "s3cluster", results_root=f"s3://{BUCKET}/ray-results"
    )
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(registry))


@pytest.mark.usefixtures("s3_registry")
def test_cluster_results_on_s3_are_analyzed_and_read_back(workdir: Path, s3_endpoint: str) -> None:
    import boto3

    mod = import_source(workdir, TRAINABLE, "s3_trainable")
    # The cluster's nodes would have their own credentials (an instance role, for example);
    # the loopback head was started without any, so the job gets moto's through its env_vars.
    job_env = {**AWS_ENV, "AWS_ENDPOINT_URL": s3_endpoint}
    kwargs = dict(user_name="erin", trainable=mod.square, run_with="cluster:s3cluster")
    results = asyncio.run(
        run_experiment(
            **kwargs,
            experiment_name="on-s3",
            param_space={"a": tune.grid_search([1, 2, 3])},
            run_choice="run",
            runtime_env={"env_vars": job_env},
        )
    )
    assert sorted(results["df"]["score"]) == [1, 4, 9]
    path = results["tuner"].experiment_path
    assert path.startswith(f"s3://{BUCKET}/ray-results/erin/"), path

    prefix = path.removeprefix(f"s3://{BUCKET}/") + "/"
    listing = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket=BUCKET, Prefix=prefix
    )
    keys = [item["Key"] for item in listing.get("Contents", [])]
    assert sum(key.endswith("/result.json") for key in keys) == 3, keys
    assert any(key.startswith(f"{prefix}experiment_state") for key in keys), keys

    again = asyncio.run(run_experiment(**kwargs, experiment_name="on-s3", dos=["analyze"]))
    assert sorted(again["df"]["score"]) == [1, 4, 9]
