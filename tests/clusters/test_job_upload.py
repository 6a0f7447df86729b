"""A cluster job's upload leaves some things behind; a job failing before its driver: why."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from radas_flows import run_experiment
from radas_flows.clusters.upload import ALWAYS_EXCLUDED, upload_plan
from radas_flows.targets import DriverFailedError
from radas_flows.targets.cluster_follow import ray_reason
from tests.clusters.helpers import import_source
from tests.clusters.loopback_ray import RayHead
from tests.prefect_reads import flow_run_named, logs_of

LISTING = """\
import json
import os


def listing(config):
    here = os.path.dirname(os.path.abspath(__file__))  # the job's unpacked working_dir
    files = sorted(
        os.path.relpath(os.path.join(d, f), here) for d, _, fs in os.walk(here) for f in fs
    )
    return {"score": config["a"], "files": json.dumps(files)}
"""

# The message Ray 2.60 gave a job whose working_dir held a SQLite database being written.
RAY_MESSAGE = """runtime_env setup failed: Failed to set up runtime environment.
Could not create the actor because its associated runtime env failed to be created.
[Node 127.0.0.1] Traceback (most recent call last):
  File "/venv/ray/_private/runtime_env/packaging.py", line 957, in download_and_unpack_package
    raise IOError(
OSError: Failed to download runtime_env file package gcs://_ray_pkg_7a5f99890522f9b3.zip from \
the GCS to the Ray worker node.
"""


def _project(work: Path) -> None:
    """A project folder holding what must not travel: git, a venv, databases, results."""
    (work / ".git" / "objects").mkdir(parents=True)
    (work / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (work / ".venv" / "lib").mkdir(parents=True)
    (work / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (work / ".venv" / "lib" / "big.py").write_text("x = 1\n")
    (work / "ray_results" / "old").mkdir(parents=True)
    (work / "ray_results" / "old" / "tuner.pkl").write_bytes(b"\0")
    (work / "__pycache__").mkdir()
    (work / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (work / "keep.db").write_text("a database the user sends anyway\n")
    (work / "code.py").write_text("x = 1\n")


def test_upload_plan_names_what_stays_behind(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "prefect-home").mkdir()
    (tmp_path / "prefect-home" / "prefect.db-wal").write_bytes(b"\0")
    (tmp_path / "results").mkdir()
    plan = upload_plan(
        tmp_path,
        [(tmp_path / "results", "the results root"), ("s3://bucket/x", "remote: ignored")],
        user_excludes=["!keep.db"],
    )
    assert plan.excludes[: len(ALWAYS_EXCLUDED)] == list(ALWAYS_EXCLUDED)
    assert {"/results/", "/.venv/", "/ray_results/old/"} <= set(plan.excludes)
    assert plan.left_out == [
        "results/ (the results root)",
        ".git/ (git repository)",
        ".venv/ (a virtual environment)",
        "prefect-home/prefect.db-wal (a SQLite database)",
        "ray_results/old/ (Ray Tune results)",
    ]  # keep.db is sent: the user's "!keep.db" re-includes it
    message = plan.message(str(tmp_path))
    assert message is not None and message.startswith(f"Left out of the upload of {tmp_path}")
    assert upload_plan(tmp_path / "results").message("x") is None


def test_rays_reason_keeps_the_first_lines_and_the_exception() -> None:
    assert ray_reason(RAY_MESSAGE) == (
        "runtime_env setup failed: Failed to set up runtime environment. Could not create the "
        "actor because its associated runtime env failed to be created. [...] OSError: Failed "
        "to download runtime_env file package gcs://_ray_pkg_7a5f99890522f9b3.zip from the GCS "
        "to the Ray worker node."
    )
    assert ray_reason("") == ""
    assert ray_reason("x" * 50, max_chars=10) == "xxxxxxxxxx ... (50 characters)"


@pytest.fixture
def live_database(workdir: Path) -> Iterator[Path]:
    """A SQLite database in the experiment folder, written all the time (as PREFECT_HOME is)."""
    home = workdir / "prefect-home"
    home.mkdir()
    stop = threading.Event()
    ready = threading.Event()

    def write() -> None:
        db = sqlite3.connect(home / "prefect.db")
        db.execute("pragma journal_mode=wal")
        db.execute("create table if not exists t(x)")
        while not stop.is_set():
            db.execute("insert into t values (randomblob(2000))")
            db.commit()
            ready.set()
            stop.wait(0.002)
        db.close()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    ready.wait(10)
    try:
        yield home
    finally:
        stop.set()
        writer.join(10)


def _run(**kwargs: Any) -> dict[str, Any]:
    return asyncio.run(
        run_experiment(user_name="erin", run_with="cluster:loopback", run_choice="run", **kwargs)
    )


@pytest.mark.cluster
@pytest.mark.usefixtures("radas_env", "cluster_registry")
def test_a_live_database_git_and_venv_stay_behind(
    workdir: Path, live_database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(workdir)
    monkeypatch.setenv("PREFECT_HOME", str(live_database))  # read by the upload, not by Prefect
    mod = import_source(workdir, LISTING, "upload_listing")
    results = _run(
        trainable=mod.listing,
        experiment_name="upload",
        param_space={"a": tune.grid_search([1])},
        runtime_env={"excludes": ["!keep.db"]},
    )
    [files] = set(results["df"]["files"])
    sent = json.loads(files)
    assert sorted(sent) == sorted(["code.py", "keep.db", f"{mod.__name__}.py"]), sent
    logs = "\n".join(logs_of(flow_run_named("upload").id))
    assert f"Left out of the upload of {workdir}" in logs
    for item in (
        "prefect-home/ (PREFECT_HOME, a live database)",
        ".git/ (git repository)",
        ".venv/ (a virtual environment)",
        "ray_results/old/ (Ray Tune results)",
    ):
        assert item in logs


@pytest.mark.cluster
@pytest.mark.usefixtures("radas_env", "cluster_registry")
def test_a_job_that_fails_before_its_driver_starts_shows_rays_reason(
    workdir: Path, ray_head: RayHead
) -> None:
    mod = import_source(workdir, LISTING, "upload_listing")
    with pytest.raises(DriverFailedError) as failed:
        _run(
            trainable=mod.listing,
            experiment_name="no-setup",
            param_space={"a": tune.grid_search([1])},
            runtime_env={"conda": "radas-no-such-conda-env"},
        )
    text = str(failed.value)
    print(f"\nthe user sees: {text}")
    assert "failed: RUNTIME_ENV_SETUP_FAILURE. Ray's reason: " in text
    assert "conda" in text.split("Ray's reason: ", 1)[1]
    assert "Its log is empty: the job failed before its driver started, so no trial ran." in text
    assert ray_head.token not in text
