"""The `radas` command line: clusters, experiments and stop against the loopback head."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radas_flows.cli import build_parser, main
from radas_flows.clusters.jobs import job_client, job_metadata, merge_runtime_env, submission_id
from radas_flows.clusters.registry import get_cluster
from tests.clusters.loopback_ray import RayHead

HEADER = (
    "All available clusters are listed below, with status and suggestions of when to use "
    "which cluster:"
)


def test_parser_has_the_commands() -> None:
    parser = build_parser()
    assert parser.parse_args(["clusters"]).command == "clusters"
    args = parser.parse_args(["stop", "radas-x", "--cluster", "c", "--user", "u", "--wait"])
    assert (args.command, args.job_id, args.cluster, args.user, args.wait) == (
        "stop",
        "radas-x",
        "c",
        "u",
        True,
    )


@pytest.mark.parametrize("argv", [[], ["experiments"], ["stop", "--cluster", "c"], ["nope"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: radas" in capsys.readouterr().err


@pytest.mark.cluster
def test_clusters_prints_the_availability_text(
    cluster_registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clusters"]) == 0
    assert capsys.readouterr().out == (
        f"{HEADER}\n"
        "- [status: online] loopback: loopback test cluster with 2 CPUs and 2 logical GPUs\n"
        "- [status: offline] offline: nothing listens at this address\n"
    )


@pytest.mark.cluster
def test_console_script_runs(cluster_registry: Path) -> None:
    radas = Path(sys.executable).parent / "radas"
    result = subprocess.run(
        [str(radas), "clusters", "--timeout", "1"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(HEADER + "\n- [status: online] loopback: ")


@pytest.mark.cluster
def _login(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make ``name`` this process's login name (``getpass.getuser`` reads these first)."""
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, name)


def test_errors_exit_1_with_the_message(
    cluster_registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _login(monkeypatch, "carol")
    assert main(["experiments", "--cluster", "nope", "--user", "carol"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("radas experiments: error: Unknown cluster 'nope'. Clusters in ")
    assert main(["stop", "radas-nope", "--cluster", "loopback", "--user", "carol"]) == 1
    assert capsys.readouterr().err.startswith(
        "radas stop: error: Cluster 'loopback' has no job 'radas-nope'. Jobs of user 'carol' "
        "there: none."
    )
    assert main(["experiments", "--cluster", "offline", "--timeout", "1"]) == 1
    assert "radas experiments: error: Cannot reach cluster 'offline'" in capsys.readouterr().err


@pytest.mark.cluster
def test_experiments_and_stop(
    cluster_registry: Path,
    ray_head: RayHead,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _login(monkeypatch, "carol")  # radas stop stops the caller's own jobs
    assert main(["experiments", "--cluster", "loopback", "--user", "carol"]) == 0
    assert capsys.readouterr().out == (
        f"No radas experiments of user 'carol' on cluster 'loopback' ({ray_head.dashboard_url}).\n"
    )
    client = job_client(get_cluster("loopback"))
    job_id = submission_id("carol", "cli-sleep")
    client.submit_job(
        entrypoint="python -c 'import time; time.sleep(300)'",
        submission_id=job_id,
        runtime_env=merge_runtime_env({}, tmp_path),
        metadata=job_metadata("carol", "cli-sleep"),
    )
    try:
        assert main(["experiments", "--cluster", "loopback", "--user", "carol"]) == 0
        out = capsys.readouterr().out
        assert job_id in out and "cli-sleep" in out
        stop_line = f"radas stop {job_id} --cluster loopback --user carol"
        assert stop_line in out
        started = time.monotonic()
        assert main([*stop_line.split()[1:], "--wait"]) == 0
        out = capsys.readouterr().out
        assert f"Stop requested for job {job_id}" in out and f"Job {job_id} is STOPPED." in out
        assert time.monotonic() - started < 60
        assert str(client.get_job_status(job_id).value) == "STOPPED"
    finally:
        if not client.get_job_status(job_id).is_terminal():
            client.stop_job(job_id)
