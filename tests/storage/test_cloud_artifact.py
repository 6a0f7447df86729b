"""cloud_artifact against a real moto S3 server on 127.0.0.1."""

from __future__ import annotations

import json
import pickle
import time
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

import radas_flows.cloud_artifact as rda
from radas_flows.cloud_artifact import CloudArtifactError

if TYPE_CHECKING:
    from conftest import Credentials, S3Server


@pytest.fixture(autouse=True)
def fresh_module_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts before init(): the module keeps its store per process."""
    monkeypatch.setattr(rda, "_store", None)
    yield


def _get(s3_server: S3Server, bucket: str, key: str) -> bytes:
    body: bytes = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _keys(s3_server: S3Server, bucket: str) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


class Point:
    """A plain class: pickle stores instances of importable classes."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


def test_pickle_round_trip_under_user_prefix(s3_server: S3Server, s3_bucket: str) -> None:
    obj = {"a": 1, "b": [2.5, "three"], "p": Point(1, 2), "arr": np.arange(4)}
    rda.init(user_name="alice")

    rda.save_cloud_artifact("my_dict.pkl", obj)
    loaded = rda.load_cloud_artifact("my_dict.pkl")

    assert loaded["a"] == 1 and loaded["b"] == [2.5, "three"] and loaded["p"] == Point(1, 2)
    np.testing.assert_array_equal(loaded["arr"], np.arange(4))
    assert _keys(s3_server, s3_bucket) == ["radas-artifacts/alice/my_dict.pkl"]
    raw = _get(s3_server, s3_bucket, "radas-artifacts/alice/my_dict.pkl")
    assert pickle.loads(raw)["a"] == 1


def test_json_round_trip_and_stored_as_json(s3_server: S3Server, s3_bucket: str) -> None:
    rda.init(user_name="alice", prefix="team/exp")
    data = {"best": {"lr": 0.01, "score": 0.93}, "trials": [1, 2, 3], "note": "héllo"}

    rda.save_cloud_artifact("summary/best.json", data)

    assert rda.load_cloud_artifact("summary/best.json") == data
    raw = _get(s3_server, s3_bucket, "team/exp/alice/summary/best.json")
    assert json.loads(raw.decode("utf-8")) == data


def test_csv_and_parquet_dataframes(s3_server: S3Server, s3_bucket: str) -> None:
    rda.init(user_name="bob", prefix="")
    df = pd.DataFrame(
        {"config/lr": [0.1, 0.01], "score": [0.71, 0.93], "name": ["a", "b"]},
    )

    rda.save_cloud_artifact("results.csv", df)
    rda.save_cloud_artifact("results.parquet", df)

    pd.testing.assert_frame_equal(rda.load_cloud_artifact("results.csv"), df)
    pd.testing.assert_frame_equal(rda.load_cloud_artifact("results.parquet"), df)
    assert _get(s3_server, s3_bucket, "bob/results.csv").decode().splitlines()[0] == (
        "config/lr,score,name"
    )
    assert _get(s3_server, s3_bucket, "bob/results.parquet")[:4] == b"PAR1"


def test_text_round_trip_and_overwrite(s3_server: S3Server, s3_bucket: str) -> None:
    rda.init(user_name="alice")
    rda.save_cloud_artifact("notes/log.TXT", "first\nline two ✓\n")
    rda.save_cloud_artifact("notes/log.TXT", "second")

    assert rda.load_cloud_artifact("notes/log.TXT") == "second"
    assert _get(s3_server, s3_bucket, "radas-artifacts/alice/notes/log.TXT") == b"second"


def test_rm_deletes_and_missing_artifacts_raise(s3_server: S3Server, s3_bucket: str) -> None:
    rda.init(user_name="alice")
    rda.save_cloud_artifact("gone.pkl", 1)
    rda.save_cloud_artifact("kept.pkl", 2)

    rda.rm_cloud_artifact("gone.pkl")

    assert _keys(s3_server, s3_bucket) == ["radas-artifacts/alice/kept.pkl"]
    with pytest.raises(FileNotFoundError, match=r"No cloud artifact 'gone\.pkl' for user 'alice'"):
        rda.load_cloud_artifact("gone.pkl")
    with pytest.raises(FileNotFoundError, match=r"'gone\.pkl'"):
        rda.rm_cloud_artifact("gone.pkl")
    rda.rm_cloud_artifact("gone.pkl", missing_ok=True)
    assert rda.load_cloud_artifact("kept.pkl") == 2


def test_users_do_not_see_each_other(s3_bucket: str) -> None:
    rda.init(user_name="alice")
    rda.save_cloud_artifact("shared-name.json", {"owner": "alice"})
    rda.init(user_name="bob")

    with pytest.raises(FileNotFoundError):
        rda.load_cloud_artifact("shared-name.json")
    rda.save_cloud_artifact("shared-name.json", {"owner": "bob"})
    rda.init(user_name="alice")
    assert rda.load_cloud_artifact("shared-name.json") == {"owner": "alice"}


@pytest.mark.parametrize(
    "path",
    ["../bob/x.pkl", "a/../../x.pkl", "/etc/x.pkl", "", "a//b.pkl", "./x.pkl", "a\\..\\x.pkl"],
)
def test_paths_cannot_escape_the_user_prefix(
    s3_server: S3Server, s3_bucket: str, path: str
) -> None:
    rda.init(user_name="alice")
    for call in (
        lambda: rda.save_cloud_artifact(path, 1),
        lambda: rda.load_cloud_artifact(path),
        lambda: rda.rm_cloud_artifact(path),
    ):
        with pytest.raises(ValueError, match=r"Invalid artifact path.*cannot leave"):
            call()
    assert _keys(s3_server, s3_bucket) == []


@pytest.mark.parametrize("user", ["../alice", "", "a/b", ".hidden", "al ice"])
def test_invalid_user_names(s3_bucket: str, user: str) -> None:
    with pytest.raises(ValueError, match=r"Invalid user_name"):
        rda.init(user_name=user)


def test_unsupported_extension_lists_supported_ones(s3_bucket: str) -> None:
    rda.init(user_name="alice")
    with pytest.raises(ValueError, match=r"'\.npy'.*\.pkl, \.json, \.csv, \.parquet, \.txt"):
        rda.save_cloud_artifact("weights.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"'\(none\)'"):
        rda.load_cloud_artifact("README")


@pytest.mark.parametrize(
    ("path", "obj", "match"),
    [
        ("x.csv", {"a": 1}, r"needs a pandas DataFrame, got dict"),
        ("x.parquet", [1, 2], r"needs a pandas DataFrame, got list"),
        ("x.txt", b"bytes", r"needs a str, got bytes"),
        ("x.json", {"s": {1, 2}}, r"Cannot store 'x\.json' as JSON.*\.pkl"),
        ("x.pkl", lambda: None, r"Cannot pickle"),
    ],
)
def test_objects_that_do_not_fit_the_format(
    s3_server: S3Server, s3_bucket: str, path: str, obj: Any, match: str
) -> None:
    rda.init(user_name="alice")
    with pytest.raises(TypeError, match=match):
        rda.save_cloud_artifact(path, obj)
    assert _keys(s3_server, s3_bucket) == []


def test_save_before_init_is_a_clear_error() -> None:
    with pytest.raises(CloudArtifactError, match=r"not initialised.*init\(user_name="):
        rda.save_cloud_artifact("x.pkl", 1)
    with pytest.raises(CloudArtifactError, match=r"not initialised"):
        rda.load_cloud_artifact("x.pkl")


def test_missing_bucket_configuration(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RADAS_S3_BUCKET", raising=False)
    with pytest.raises(ValueError, match=r"RADAS_S3_BUCKET"):
        rda.init(user_name="alice")
    with pytest.raises(ValueError, match=r"bare bucket name"):
        rda.init(user_name="alice", bucket="bucket/with/prefix")
    with pytest.raises(ValueError, match=r"Invalid S3 prefix '\.\./up'"):
        rda.init(user_name="alice", bucket="b", prefix="../up")


def test_bucket_that_does_not_exist(s3_server: S3Server, aws_env: None) -> None:
    rda.init(user_name="alice", bucket="no-such-bucket-here", endpoint_url=s3_server.endpoint_url)
    with pytest.raises(CloudArtifactError, match=r"Bucket 'no-such-bucket-here' does not exist"):
        rda.save_cloud_artifact("x.pkl", 1)


def test_s3_errors_never_show_the_secret_key(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "another-secret-0d9e8f7a6b5c"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    rda.init(user_name="alice", bucket="missing-" + s3_bucket)
    with pytest.raises(CloudArtifactError, match=r"does not exist") as info:
        rda.load_cloud_artifact("x.pkl")
    assert secret not in "".join(traceback.format_exception(info.value))


def test_unreachable_endpoint_fails_fast_naming_endpoint_not_keys(
    aws_env: None, aws_credentials: Credentials, free_port: Callable[[], int]
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    rda.init(user_name="alice", bucket="any-bucket", endpoint_url=endpoint)

    start = time.monotonic()
    with pytest.raises(
        CloudArtifactError, match=rf"Cannot reach the S3 endpoint {endpoint}"
    ) as info:
        rda.save_cloud_artifact("x.pkl", {"a": 1})
    elapsed = time.monotonic() - start

    assert elapsed < 10, f"took {elapsed:.1f} s"
    text = "".join(traceback.format_exception(info.value))
    assert aws_credentials.password not in text
    assert aws_credentials.user not in text
    assert "RADAS_S3_ENDPOINT_URL" in str(info.value)


def test_credentials_are_registered_as_secrets(
    s3_bucket: str, aws_credentials: Credentials
) -> None:
    from radas_flows.secrets import registered_secrets

    rda.init(user_name="alice")
    assert aws_credentials.password in registered_secrets()


def test_init_reads_prefix_and_endpoint_from_environment(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADAS_S3_PREFIX", "/lab/artifacts/")
    rda.init(user_name="carol")
    rda.save_cloud_artifact("x.json", [1])
    assert _keys(s3_server, s3_bucket) == ["lab/artifacts/carol/x.json"]
