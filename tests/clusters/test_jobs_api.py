"""Jobs API plumbing: runtime_env rules, submission ids, retries, real jobs on a loopback head."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from radas_flows.clusters.jobs import (
    ClusterConnectionError,
    find_jobs,
    is_transient_error,
    job_client,
    job_metadata,
    merge_runtime_env,
    submission_id,
    submission_prefix,
    with_retries,
)
from radas_flows.clusters.registry import ClusterAuthError, get_cluster
from radas_flows.inputs.runtime_env import RUNTIME_ENV_KEYS, RuntimeEnvError
from tests.clusters.loopback_ray import RayHead

# --- runtime_env merging -------------------------------------------------------------------


def test_merge_sets_working_dir_and_keeps_user_fields(tmp_path: Path) -> None:
    user = {"env_vars": {"A": "1"}, "excludes": ["*.log"], "pip": ["requests"]}
    merged = merge_runtime_env(user, tmp_path)
    assert merged == {
        "env_vars": {"A": "1"},
        "excludes": ["*.log"],
        "pip": ["requests"],
        "working_dir": str(tmp_path.resolve()),
    }
    merged["env_vars"]["B"] = "2"
    assert user["env_vars"] == {"A": "1"}  # the user's dict is not changed
    assert merge_runtime_env(None, tmp_path) == {"working_dir": str(tmp_path.resolve())}


def test_explicit_working_dir_quotes_the_rule(tmp_path: Path) -> None:
    with pytest.raises(
        RuntimeEnvError,
        match=r"must not be set .*Radas automatically sets this to the current "
        r"working directory where you run your script.*Do not specify this field yourself",
    ):
        merge_runtime_env({"working_dir": "/elsewhere"}, tmp_path)


def test_image_uri_must_be_alone(tmp_path: Path) -> None:
    assert merge_runtime_env({"image_uri": "anyscale/ray:2.31.0-py39-cpu"}, tmp_path) == {
        "image_uri": "anyscale/ray:2.31.0-py39-cpu"
    }
    with pytest.raises(
        RuntimeEnvError,
        match=r"'image_uri' together with \['env_vars'\].*it must be the only field",
    ):
        merge_runtime_env({"image_uri": "img", "env_vars": {"A": "1"}}, tmp_path)


def test_unknown_key_lists_the_allowed_keys(tmp_path: Path) -> None:
    with pytest.raises(
        RuntimeEnvError,
        match=r"unknown key\(s\) \['container'\]; the allowed keys are pip, uv, conda, "
        r"env_vars, py_modules, excludes, py_executable, nsight, image_uri",
    ):
        merge_runtime_env({"container": {}}, tmp_path)
    assert set(RUNTIME_ENV_KEYS) == {
        "pip", "uv", "conda", "env_vars", "py_modules", "excludes", "py_executable", "nsight",
        "image_uri",
    }  # fmt: skip


@pytest.mark.parametrize(
    "env",
    [
        {"pip": ["a"], "conda": {"dependencies": ["b"]}},
        {"pip": ["a"], "uv": ["b"]},
        {"uv": ["a"], "conda": "env"},
    ],
)
def test_only_one_installer(tmp_path: Path, env: dict[str, object]) -> None:
    with pytest.raises(RuntimeEnvError, match=r"only one of 'pip', 'uv' and 'conda' may be set"):
        merge_runtime_env(env, tmp_path)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"env_vars": {"N": 1}}, r"must map strings to strings; 'N': 1 is not.*'N': '1'"),
        ({"env_vars": ["A=1"]}, r"'env_vars'\] must be a dict of strings"),
        ({"excludes": "*.log"}, r"'excludes'\] must be a list of strings"),
        ({"pip": {"pakages": ["a"]}}, r"'pip'\] has unknown keys \['pakages'\]"),
        ({"pip": 3}, r"'pip'\] must be a list of requirements"),
        ({"uv": {"uv_check": True}}, r"'uv'\] as a dict needs 'packages'"),
        ({"conda": 5}, r"'conda'\] must be an environment name"),
        ({"py_modules": [3]}, r"'py_modules'\] must be a list of paths"),
        ({"py_executable": ""}, r"'py_executable'\] must be a non-empty string"),
        ({"nsight": {"t": 1}}, r"'nsight'\] must be \"default\" or a dict"),
        ({"image_uri": 7}, r"'image_uri'\] must be an image name"),
    ],
)
def test_type_checks(tmp_path: Path, env: dict[str, object], message: str) -> None:
    with pytest.raises(RuntimeEnvError, match=message):
        merge_runtime_env(env, tmp_path)


def test_runtime_env_must_be_a_dict_and_working_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(RuntimeEnvError, match=r"runtime_env must be a dict, got list"):
        merge_runtime_env([("pip", ["a"])], tmp_path)  # type: ignore[arg-type]
    with pytest.raises(RuntimeEnvError, match=r"'.*missing' does not exist"):
        merge_runtime_env({}, tmp_path / "missing")


# --- submission ids and metadata -----------------------------------------------------------


def test_submission_id_is_found_again_and_unique() -> None:
    now = datetime(2026, 11, 23, 9, 30, 0, tzinfo=UTC)
    first = submission_id("yu hang", "_home_proj_lr", now=now)
    second = submission_id("yu hang", "_home_proj_lr", now=now)
    assert re.fullmatch(r"radas-yu_hang-[0-9a-f]{8}-20261123T093000-[0-9a-f]{4}", first)
    assert first != second
    prefix = submission_prefix("yu hang", "_home_proj_lr")
    assert first.startswith(prefix) and second.startswith(prefix)
    assert submission_prefix("yu hang", "_home_proj_other") != prefix
    assert job_metadata("u", "e") == {"radas_user": "u", "radas_experiment": "e"}


# --- retries -------------------------------------------------------------------------------


def test_transient_errors() -> None:
    import requests

    assert is_transient_error(ConnectionError("refused"))
    assert is_transient_error(TimeoutError())
    assert is_transient_error(requests.exceptions.ReadTimeout())
    assert is_transient_error(requests.exceptions.ConnectionError())
    assert is_transient_error(RuntimeError("Request failed with status code 503: busy."))
    assert not is_transient_error(RuntimeError("Request failed with status code 404: gone."))
    assert not is_transient_error(ValueError("bad"))
    assert not is_transient_error(ClusterAuthError("no token"))


def test_with_retries_retries_only_transient_errors() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    assert with_retries(flaky, 5, 0.1, sleep=waits.append) == "ok"
    assert len(calls) == 3 and waits == [0.1, 0.2]

    def always_down() -> None:
        calls.append(1)
        raise ConnectionError("still down")

    calls.clear()
    waits.clear()
    with pytest.raises(ConnectionError, match="still down"):
        with_retries(always_down, 4, 1.0, max_backoff=1.5, sleep=waits.append)
    assert len(calls) == 4 and waits == [1.0, 1.5, 1.5]

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("Job x does not exist")

    calls.clear()
    with pytest.raises(RuntimeError, match="does not exist"):
        with_retries(broken, 5, 0.0, sleep=waits.append)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        with_retries(broken, 0)


# --- a real cluster ------------------------------------------------------------------------

PROBE_JOB = """\
import json, os
files = sorted(
    os.path.relpath(os.path.join(root, name), ".")
    for root, _, names in os.walk(".")
    for name in names
)
print("RADAS_PROBE " + json.dumps({
    "files": files,
    "greeting": os.environ.get("RADAS_GREETING"),
    "cwd_is_upload": os.getcwd() != %r,
}))
"""


def wait_terminal(client: object, job_id: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)  # type: ignore[attr-defined]
        if status.is_terminal():
            return str(status.value)
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


@pytest.mark.cluster
def test_job_sees_env_vars_and_excludes(
    cluster_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "project"
    (work / "data").mkdir(parents=True)
    (work / "probe_job.py").write_text(PROBE_JOB % str(work))
    (work / "trainable.py").write_text("def trainable(config):\n    return {}\n")
    (work / "debug.log").write_text("excluded by pattern\n")
    (work / "data" / "big.bin").write_text("excluded by folder\n")
    runtime_env = merge_runtime_env(
        {"env_vars": {"RADAS_GREETING": "hello from env_vars"}, "excludes": ["*.log", "/data/"]},
        work,
    )
    # RAY_ADDRESS pointing elsewhere must not redirect a registry cluster's client.
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9")
    cluster = get_cluster("loopback")
    client = job_client(cluster)
    job_id = submission_id("dave", "env-check")
    started = time.monotonic()
    returned = client.submit_job(
        entrypoint="python probe_job.py",
        submission_id=job_id,
        runtime_env=runtime_env,
        metadata=job_metadata("dave", "env-check"),
    )
    assert returned == job_id
    status = wait_terminal(client, job_id)
    elapsed = time.monotonic() - started
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs
    print(f"\njob submit -> SUCCEEDED in {elapsed:.1f} s")
    line = next(x for x in logs.splitlines() if x.startswith("RADAS_PROBE "))
    seen = json.loads(line.removeprefix("RADAS_PROBE "))
    assert seen["greeting"] == "hello from env_vars"
    assert seen["files"] == ["probe_job.py", "trainable.py"]
    assert seen["cwd_is_upload"] is True
    found = find_jobs(client, "dave", "env-check")
    assert [j.submission_id for j in found] == [job_id]
    assert found[0].metadata == {"radas_user": "dave", "radas_experiment": "env-check"}
    assert job_id.startswith(submission_prefix("dave", "env-check"))
    assert find_jobs(client, "bob") == []
    assert all(j.submission_id != job_id for j in find_jobs(client, "dave", "other"))


@pytest.mark.cluster
def test_token_from_environment_variable(
    cluster_registry: Path, ray_head: RayHead, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = dataclasses.replace(
        get_cluster("loopback"), token_file=None, token_env="RADAS_TEST_TOKEN"
    )
    monkeypatch.setenv("RADAS_TEST_TOKEN", ray_head.token)
    assert isinstance(job_client(cluster).list_jobs(), list)  # an authenticated request


@pytest.mark.cluster
def test_wrong_token_fails_fast_with_a_clear_error(cluster_registry: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0123456789abcdef-not-the-token")
    cluster = dataclasses.replace(get_cluster("loopback"), token_file=str(wrong))
    started = time.monotonic()
    with pytest.raises(
        ClusterAuthError,
        match=r"Cluster 'loopback' at http://127\.0\.0\.1:\d+ rejected the auth token from "
        r"token_file '.*wrong_token': it is not this cluster's token",
    ) as info:
        job_client(cluster)
    assert time.monotonic() - started < 2.0
    assert "not-the-token" not in str(info.value)


@pytest.mark.cluster
def test_missing_token_fails_fast_with_a_clear_error(
    cluster_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RAY_AUTH_MODE=token would make Ray add ~/.ray/auth_token on its own; keep it out.
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    cluster = dataclasses.replace(get_cluster("loopback"), token_file=None)
    started = time.monotonic()
    with pytest.raises(
        ClusterAuthError,
        match=r"Cluster 'loopback' .* requires a Ray auth token, and the registry names none for "
        r"it: add token_file = \"<path>\" or token_env = \"<VAR>\" to the \[loopback\] table",
    ):
        job_client(cluster)
    assert time.monotonic() - started < 2.0
    missing = dataclasses.replace(cluster, token_file=str(tmp_path / "no_such_token"))
    with pytest.raises(ClusterAuthError, match=r"token_file '.*no_such_token' does not exist"):
        job_client(missing)


@pytest.mark.cluster
def test_offline_and_hung_clusters_fail_fast(cluster_registry: Path, blackhole: str) -> None:
    offline = get_cluster("offline")
    started = time.monotonic()
    with pytest.raises(
        ClusterConnectionError,
        match=r"Cannot reach cluster 'offline' at http://127\.0\.0\.1:\d+ within 5 s "
        r"\(ConnectionError\)\. Check that it is online with `radas clusters`",
    ):
        job_client(offline)
    assert time.monotonic() - started < 2.0
    hung = dataclasses.replace(offline, name="hung", address=blackhole)
    started = time.monotonic()
    with pytest.raises(ClusterConnectionError, match=r"Cannot reach cluster 'hung' .* within 1 s"):
        job_client(hung, timeout=1.0)
    assert time.monotonic() - started < 2.0


LOG_JOB = """\
import sys, time
for i in range(3000):
    print(f"line {i:05d} " + "x" * 60)
    if i % 500 == 0:
        sys.stdout.flush()
        time.sleep(0.3)
"""


@pytest.mark.cluster
def test_log_tail_delivers_the_whole_log_once(cluster_registry: Path, tmp_path: Path) -> None:
    from radas_flows.clusters.log_tail import LogTail

    work = tmp_path / "project"
    work.mkdir()
    (work / "log_job.py").write_text(LOG_JOB)
    client = job_client(get_cluster("loopback"))
    job_id = client.submit_job(
        entrypoint="python log_job.py", runtime_env=merge_runtime_env({}, work)
    )
    stream = LogTail(client, job_id)
    try:
        parts = []
        while not client.get_job_status(job_id).is_terminal():
            parts.append(stream.read())
            time.sleep(0.2)
        assert stream.wait_ended(30), "the stream did not end with the job"
        parts.append(stream.read())
    finally:
        stream.close()
    whole = client.get_job_logs(job_id)
    streamed = "".join(parts)
    assert streamed == whole
    assert stream.received == len(whole)
    assert sum(1 for line in streamed.splitlines() if line.startswith("line ")) == 3000
    assert not stream.failed
