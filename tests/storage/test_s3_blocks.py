"""cloud_artifact settings from prefect-aws blocks saved on a real Prefect API, against moto S3."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import radas_flows.cloud_artifact as rda
from radas_flows.cloud_artifact import CloudArtifactError
from radas_flows.secrets import redact_registered

if TYPE_CHECKING:
    from conftest import Credentials, S3Server


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials or S3 settings in the environment: only a block can give them."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "RADAS_S3_BUCKET",
        "RADAS_S3_PREFIX",
        "RADAS_S3_ENDPOINT_URL",
        "RADAS_S3_BLOCK",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setattr(rda, "_store", None)


def test_an_s3_bucket_block_gives_bucket_folder_endpoint_and_credentials(
    prefect_api: None,
    s3_server: S3Server,
    aws_credentials: Credentials,
    no_aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

    bucket = f"radas-block-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    name = f"artifacts-{uuid.uuid4().hex[:6]}"
    credentials = AwsCredentials(
        aws_access_key_id=aws_credentials.user,
        aws_secret_access_key=aws_credentials.password,
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=s3_server.endpoint_url),
    )
    credentials.save(f"{name}-creds", overwrite=True)
    S3Bucket(bucket_name=bucket, bucket_folder="team-a", credentials=credentials).save(
        name, overwrite=True
    )

    # Without the block there are no credentials (and no bucket): nothing else could work.
    with pytest.raises(ValueError, match="No S3 bucket configured"):
        rda.init(user_name="alice")

    monkeypatch.setenv("RADAS_S3_BLOCK", f"s3-bucket/{name}")
    rda.init(user_name="alice")
    rda.save_cloud_artifact("scores.json", {"best": 0.93})
    assert rda.load_cloud_artifact("scores.json") == {"best": 0.93}
    listing = s3_server.client().list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listing["Contents"]] == ["team-a/alice/scores.json"]
    # The secret key is registered: logs and errors show *** in its place.
    assert redact_registered(f"key {aws_credentials.password}") == "key ***"

    # An AwsCredentials block gives credentials and endpoint; the bucket comes from elsewhere.
    monkeypatch.setattr(rda, "_store", None)
    rda.init(user_name="bob", bucket=bucket, block=f"aws-credentials/{name}-creds")
    rda.save_cloud_artifact("x.json", [1])
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert "radas-artifacts/bob/x.json" in keys

    # A block that does not exist: a clear error naming it, before anything is sent.
    monkeypatch.setenv("RADAS_S3_BLOCK", "s3-bucket/no-such-block")
    with pytest.raises(ValueError, match=r"Cannot load the prefect-aws block 's3-bucket/no-such"):
        rda.init(user_name="alice")


def test_without_credentials_the_error_says_so(
    s3_server: S3Server, no_aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control case: the environment alone has no credentials."""
    bucket = f"radas-nocred-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    rda.init(user_name="alice", bucket=bucket, endpoint_url=s3_server.endpoint_url)
    with pytest.raises(CloudArtifactError, match="No usable AWS credentials"):
        rda.save_cloud_artifact("x.json", [1])
