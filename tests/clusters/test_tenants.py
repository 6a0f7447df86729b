"""Other tenants of a cluster: job metadata is theirs to write, a user name is not a login.

Any tenant of a cluster can submit a job whose metadata names another user and experiment.
The attacks here were found against the code before these checks: attach took the results
path from such a job's metadata, and ``radas stop --user`` accepted any user name.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from radas_flows.cli import main
from radas_flows.clusters.job_package import METADATA_EXPERIMENT_PATH, METADATA_RUN_ID
from radas_flows.clusters.jobs import job_client, job_metadata, merge_runtime_env, submission_id
from radas_flows.clusters.registry import get_cluster
from radas_flows.core import experiment_path
from radas_flows.errors import ExperimentStateError
from radas_flows.inputs.spec import build_spec
from radas_flows.targets.cluster import ClusterTarget
from tests import trainables_for_tests as t

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("radas_env", "cluster_registry")]

SLEEPER = "python -c 'import time; time.sleep(300)'"


class _Logger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)

    warning = error = info


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    """A Jobs API client and the jobs a test submits, stopped at the end."""
    client = job_client(get_cluster("loopback"))
    submitted: list[str] = []
    yield client, submitted
    for job_id in submitted:
        if not client.get_job_status(job_id).is_terminal():
            client.stop_job(job_id)


def _plant_job(
    jobs: tuple[Any, list[str]], user: str, full_name: str, workdir: Path, **extra: str
) -> str:
    client, submitted = jobs
    job_id = submission_id(user, full_name)
    client.submit_job(
        entrypoint=SLEEPER,
        submission_id=job_id,
        runtime_env=merge_runtime_env({}, workdir),
        metadata={**job_metadata(user, full_name), **extra},
    )
    submitted.append(job_id)
    return job_id


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (METADATA_EXPERIMENT_PATH, "{elsewhere}", r"its metadata names the results path"),
        (METADATA_RUN_ID, "../../x", r"its metadata names the run id '\.\./\.\./x'"),
    ],
)
def test_attach_refuses_metadata_radas_did_not_write(
    workdir: Path,
    tmp_path: Path,
    jobs: tuple[Any, list[str]],
    key: str,
    value: str,
    match: str,
) -> None:
    elsewhere = tmp_path / "attacker-controlled"
    name = f"tenant-{uuid.uuid4().hex[:6]}"
    spec = build_spec(
        user_name="erin",
        trainable=t.returning,
        experiment_name=name,
        run_with="cluster:loopback",
        run_choice="attach",
        cwd=str(workdir),
    )
    job_id = _plant_job(jobs, "erin", spec.full_name, workdir, **{key: value.format(**locals())})
    target = ClusterTarget("loopback")
    check = target.check(spec)
    ours = experiment_path("erin", spec.full_name, check.results_root)
    logger = _Logger()
    try:
        handle = target.attach(spec, check, logger)
    except ExperimentStateError as e:
        text = str(e)
    else:
        raise AssertionError(
            f"attached to the planted job {job_id}: results path {handle.experiment_path}, "
            f"run id {handle.run_id}"
        )
    assert re.search(match, text), text
    assert f"Job {job_id} on cluster 'loopback'" in text
    if key == METADATA_EXPERIMENT_PATH:
        assert f"{str(elsewhere)!r}, not {ours!r}" in text
    assert not any("Attached" in line for line in logger.lines)


def test_attach_accepts_the_metadata_radas_writes(
    workdir: Path, jobs: tuple[Any, list[str]]
) -> None:
    spec = build_spec(
        user_name="erin",
        trainable=t.returning,
        experiment_name=f"tenant-{uuid.uuid4().hex[:6]}",
        run_with="cluster:loopback",
        run_choice="attach",
        cwd=str(workdir),
    )
    target = ClusterTarget("loopback")
    check = target.check(spec)
    ours = experiment_path("erin", spec.full_name, check.results_root)
    job_id = _plant_job(
        jobs,
        "erin",
        spec.full_name,
        workdir,
        **{METADATA_EXPERIMENT_PATH: ours, METADATA_RUN_ID: "0123456789ab"},
    )
    handle = target.attach(spec, check, _Logger())
    assert handle is not None
    assert (handle.job_id, handle.experiment_path, handle.run_id) == (job_id, ours, "0123456789ab")


# ---------------------------------------------------------------------------------------------
# radas stop --user: your own login, unless you say otherwise
# ---------------------------------------------------------------------------------------------


def _login(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, name)


def test_stop_refuses_a_user_other_than_the_login(
    workdir: Path,
    jobs: tuple[Any, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, _ = jobs
    job_id = _plant_job(jobs, "alice", "alice-sweep", workdir)
    _login(monkeypatch, "mallory")
    argv = ["stop", job_id, "--cluster", "loopback", "--user", "alice"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "radas stop: error: --user alice is not your login name ('mallory'): radas stop stops "
        "only your own jobs."
    )
    assert "--other-user" in err
    assert not client.get_job_status(job_id).is_terminal()
    # Your own name does not stop another user's job either.
    assert main(["stop", job_id, "--cluster", "loopback", "--user", "mallory"]) == 1
    assert "belongs to user 'alice'; user 'mallory' may stop only their own jobs" in (
        capsys.readouterr().err
    )
    assert not client.get_job_status(job_id).is_terminal()
    # Said on purpose, the job of the named user is stopped.
    assert main([*argv, "--other-user", "--wait"]) == 0
    assert f"Job {job_id} is STOPPED." in capsys.readouterr().out


def test_stop_with_the_login_as_user_needs_nothing_more(
    workdir: Path,
    jobs: tuple[Any, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id = _plant_job(jobs, "alice", "alice-own", workdir)
    _login(monkeypatch, "alice")
    assert main(["stop", job_id, "--cluster", "loopback", "--wait"]) == 0  # --user: the login
    assert f"Job {job_id} is STOPPED." in capsys.readouterr().out
