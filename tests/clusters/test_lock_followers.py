"""stop_attach from a second script while the first flow still follows the job: not locked out."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from radas_flows import run_experiment
from radas_flows.clusters.jobs import job_client
from radas_flows.clusters.registry import get_cluster
from radas_flows.concurrency import ExperimentBusyError
from tests.clusters.helpers import import_source

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("radas_env", "cluster_registry")]

TRAINABLES = """\
import time


def sleeper(config):
    time.sleep(config["sleep"])
    return {"score": config["a"]}
"""


def _run(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("user_name", "erin")
    kwargs.setdefault("run_with", "cluster:loopback")
    return asyncio.run(run_experiment(**kwargs))


def test_stop_attach_while_the_first_flow_follows_the_job(workdir: Path) -> None:
    mod = import_source(workdir, TRAINABLES, "lock_trainables")
    space = {"a": tune.grid_search(list(range(8))), "sleep": 4.0}
    first: dict[str, Any] = {}

    def follow() -> None:
        try:
            first["result"] = _run(
                trainable=mod.sleeper,
                experiment_name="followed",
                param_space=space,
                run_choice="run",
            )
        except BaseException as e:  # what the first follower ends with
            first["error"] = e

    follower = threading.Thread(target=contextvars.copy_context().run, args=(follow,))
    follower.start()
    client = job_client(get_cluster("loopback"))
    try:
        deadline = time.monotonic() + 180
        job_id = None
        while job_id is None and time.monotonic() < deadline and follower.is_alive():
            running = [
                j.submission_id
                for j in client.list_jobs()
                if str(j.submission_id).startswith("radas-erin-") and not j.status.is_terminal()
            ]
            job_id = running[0] if running else None
            time.sleep(0.5)
        assert job_id, f"the first flow never submitted its job: {first}"
        while time.monotonic() < deadline and "[radas-progress]" not in client.get_job_logs(job_id):
            time.sleep(0.5)
        try:
            stopped = _run(
                trainable=mod.sleeper, experiment_name="followed", run_choice="stop_attach"
            )
        except ExperimentBusyError as e:
            pytest.fail(f"stop_attach was locked out by the following flow: {e}")
        assert str(client.get_job_status(job_id).value) == "STOPPED"
        assert stopped["tuner"] is not None
    finally:
        follower.join(240)
        if job_id and not client.get_job_status(job_id).is_terminal():
            client.stop_job(job_id)
    assert not follower.is_alive()
    # The first follower learns that the job was stopped (and by what, where it can tell).
    assert "error" in first and "stopped" in str(first["error"]), first
    print(f"\nthe first follower ended with: {type(first['error']).__name__}: {first['error']}")
