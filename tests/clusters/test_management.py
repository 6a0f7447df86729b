"""Experiment management on the loopback head: list, display with stop commands, stop."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from radas_flows.clusters.jobs import job_client, job_metadata, merge_runtime_env, submission_id
from radas_flows.clusters.registry import RegistryError, get_cluster
from radas_flows.management import (
    ExperimentClient,
    JobNotFoundError,
    cluster_name_from_run_with,
    get_client,
)
from tests.clusters.loopback_ray import RayHead

pytestmark = pytest.mark.cluster

SLEEPER = "python -c 'import time; time.sleep(300)'"


def wait_status(
    client: ExperimentClient, job_id: str, wanted: set[str], timeout: float = 60
) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = str(client._client.get_job_status(job_id).value)
        if status in wanted:
            return status
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} is {status}, not one of {wanted}, after {timeout} s")


@pytest.fixture(scope="module")
def alice_job(ray_head: RayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A long-running job of user alice (experiment 'long-sleep'), stopped at the end."""
    cluster = get_cluster("loopback", path=ray_head.registry)
    client = job_client(cluster)
    job_id = submission_id("alice", "long-sleep")
    client.submit_job(
        entrypoint=SLEEPER,
        submission_id=job_id,
        runtime_env=merge_runtime_env({}, tmp_path_factory.mktemp("alice")),
        metadata=job_metadata("alice", "long-sleep"),
    )
    try:
        yield job_id
    finally:
        if not client.get_job_status(job_id).is_terminal():
            client.stop_job(job_id)


def test_cluster_name_from_run_with() -> None:
    assert cluster_name_from_run_with("cluster:loopback") == "loopback"
    with pytest.raises(ValueError, match=r"run_with='local' does not name a cluster.*Local runs"):
        cluster_name_from_run_with("local")
    with pytest.raises(ValueError, match=r"run_with='cluster:' has an empty cluster name"):
        cluster_name_from_run_with("cluster:")


def test_get_client_errors(cluster_registry: Path) -> None:
    with pytest.raises(ValueError, match=r"run_with='gpu' does not name a cluster"):
        get_client("alice", "gpu")
    with pytest.raises(RegistryError, match=r"Unknown cluster 'nope'.*'loopback', 'offline'"):
        get_client("alice", "cluster:nope")
    with pytest.raises(ConnectionError, match=r"Cannot reach cluster 'offline'"):
        get_client("alice", "cluster:offline")
    with pytest.raises(ValueError, match=r"user_name must be a non-empty string"):
        get_client("", "cluster:loopback")


def test_display_lists_running_job_with_stop_commands(
    cluster_registry: Path, alice_job: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = get_client("alice", "cluster:loopback")
    wait_status(client, alice_job, {"RUNNING"})
    experiments = client.list_experiments()
    assert [e["job_id"] for e in experiments] == [alice_job]
    (entry,) = experiments
    assert (entry["experiment"], entry["status"], entry["running"]) == (
        "long-sleep",
        "RUNNING",
        True,
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", entry["start_time"])
    text = client.display_experiments()
    assert text in capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("Experiments of user 'alice' on cluster 'loopback' (http://")
    assert lines[1].split() == [
        "job",
        "id",
        "experiment",
        "status",
        "start",
        "time",
        "stop",
        "command",
    ]
    assert lines[2].startswith(alice_job)
    assert "long-sleep" in lines[2] and "RUNNING" in lines[2]
    assert lines[2].endswith(f"radas stop {alice_job} --cluster loopback --user alice")
    assert "    from radas_flows.management import get_client" in lines
    assert (
        f"    get_client(user_name='alice', run_with='cluster:loopback')"
        f".stop_job_by_id('{alice_job}')"
    ) in lines


def test_other_users_see_nothing_and_cannot_stop(
    cluster_registry: Path, alice_job: str, ray_head: RayHead, tmp_path: Path
) -> None:
    bob = get_client("bob", "cluster:loopback")
    assert bob.list_experiments() == []
    assert bob.display_experiments() == (
        f"No radas experiments of user 'bob' on cluster 'loopback' ({ray_head.dashboard_url})."
    )
    with pytest.raises(
        PermissionError,
        match=rf"Job '{alice_job}' on cluster 'loopback' belongs to user 'alice'; user 'bob' "
        r"may stop only their own jobs",
    ):
        bob.stop_job_by_id(alice_job)
    assert not bob._client.get_job_status(alice_job).is_terminal()
    # A job submitted without radas metadata is nobody's to stop through radas_flows.
    foreign = bob._client.submit_job(entrypoint="true", runtime_env=merge_runtime_env({}, tmp_path))
    with pytest.raises(PermissionError, match=r"was not started by radas_flows"):
        bob.stop_job_by_id(foreign)


def test_unknown_job_id(cluster_registry: Path, alice_job: str) -> None:
    client = get_client("alice", "cluster:loopback")
    with pytest.raises(
        JobNotFoundError,
        match=rf"Cluster 'loopback' has no job 'radas-nope'\. Jobs of user 'alice' there: "
        rf"{alice_job}\. Copy an id from display_experiments\(\)",
    ):
        client.stop_job_by_id("radas-nope")


def test_stop_job_by_id(
    cluster_registry: Path, alice_job: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = get_client("alice", "cluster:loopback")
    assert client.stop_job_by_id(alice_job, wait=True, timeout=60) is True
    out = capsys.readouterr().out
    assert f"Stop requested for job {alice_job} on cluster 'loopback'." in out
    assert f"Job {alice_job} is STOPPED." in out
    (entry,) = client.list_experiments()
    assert (entry["status"], entry["running"]) == ("STOPPED", False)
    text = client.display_experiments()
    assert "radas stop" not in text and "stop_job_by_id" not in text
    assert client.stop_job_by_id(alice_job) is False
    assert "has already ended (STOPPED); nothing to stop" in capsys.readouterr().out
