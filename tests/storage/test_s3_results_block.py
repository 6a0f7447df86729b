"""An ``s3://`` results root of a local run, with credentials from a prefect-aws block only."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import ray.cloudpickle
from ray import tune

from radas_flows import run_experiment

if TYPE_CHECKING:
    from conftest import Credentials, S3Server

pytestmark = pytest.mark.usefixtures("radas_env")
# tests/storage is no package: Ray's workers get the trainable by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square(config: dict[str, int]) -> dict[str, int]:
    return {"score": config["a"] ** 2}


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials or endpoint in the environment: only the block can give them."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "RADAS_S3_BLOCK",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # The local copy of CSV and figure goes under HOME; Ray's token file stays where it was.
    token = Path.home() / ".ray" / "auth_token"
    if token.is_file() and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.slow
def test_a_local_run_stores_on_s3_with_the_blocks_credentials_and_no_secret_in_its_files(
    s3_server: S3Server,
    aws_credentials: Credentials,
    no_aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_aws import AwsClientParameters, AwsCredentials

    bucket = f"radas-results-{uuid.uuid4().hex[:10]}"
    s3_server.client().create_bucket(Bucket=bucket)
    name = f"results-{uuid.uuid4().hex[:6]}"
    AwsCredentials(
        aws_access_key_id=aws_credentials.user,
        aws_secret_access_key=aws_credentials.password,
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=s3_server.endpoint_url),
    ).save(name, overwrite=True)
    monkeypatch.setenv("RADAS_RESULTS_ROOT", f"s3://{bucket}/ray-results")
    monkeypatch.setenv("RADAS_S3_BLOCK", f"aws-credentials/{name}")

    kwargs = dict(user_name="fay", trainable=square, run_with="local")
    results = asyncio.run(
        run_experiment(
            **kwargs,
            experiment_name="block-s3",
            param_space={"a": tune.grid_search([1, 2, 3])},
            run_choice="run",
        )
    )
    assert sorted(results["df"]["score"]) == [1, 4, 9]
    path = results["tuner"].experiment_path
    assert path.startswith(f"s3://{bucket}/ray-results/fay/"), path

    client = s3_server.client()
    prefix = path.removeprefix(f"s3://{bucket}/") + "/"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    assert sum(key.endswith("/result.json") for key in keys) == 3, keys
    assert any(key.startswith(f"{prefix}experiment_state") for key in keys), keys
    assert f"{prefix}tuner.pkl" in keys, keys
    secret = aws_credentials.password.encode()
    holding = [k for k in keys if secret in client.get_object(Bucket=bucket, Key=k)["Body"].read()]
    assert holding == [], holding

    again = asyncio.run(run_experiment(**kwargs, experiment_name="block-s3", dos=["analyze"]))
    assert sorted(again["df"]["score"]) == [1, 4, 9]

    # A block that does not exist: a clear error naming it, before anything runs.
    monkeypatch.setenv("RADAS_S3_BLOCK", "aws-credentials/no-such-block")
    with pytest.raises(ValueError, match=r"Cannot load the prefect-aws block 'aws-credentials/no-"):
        asyncio.run(run_experiment(**kwargs, experiment_name="no-block", run_choice="run"))
    listing = client.list_objects_v2(Bucket=bucket, Prefix="ray-results/fay/")
    assert not [o["Key"] for o in listing["Contents"] if "no-block" in o["Key"]]
