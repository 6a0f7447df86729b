"""A cluster run cancelled through Prefect (CLI, as the UI's Cancel does) leaves no job behind."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from radas_flows.clusters.jobs import find_jobs, job_client
from radas_flows.clusters.registry import get_cluster
from tests.clusters.loopback_ray import RayHead
from tests.deployments.conftest import Server, wait_final

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

USER = "e2e-cancel"


def test_a_cancelled_cluster_run_leaves_no_job_behind(
    deployed: Server, ray_head: RayHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(ray_head.registry))
    client = job_client(get_cluster("loopback"))
    marks = tmp_path / "marks"
    marks.mkdir()
    # No trial finishes while the hold is there, so the cancel lands part-way through the
    # sweep on a machine of any speed.
    (marks / "hold").touch()
    deployment = deployed.get("/deployments/name/radas/sweep")
    run = deployed.post(
        f"/deployments/{deployment['id']}/create_flow_run",
        {
            "parameters": {
                "user_name": USER,
                "trainable": "tests.trainables_for_tests:marked",
                "experiment_name": "cancel-me",
                "run_with": "cluster:loopback",
                "run_choice": "run",
                "tuner": {},  # not the deployment's two-moons tuner and figure
                "plot": None,
                "param_space": {
                    "a": {"grid_search": list(range(8))},
                    "sleep": 1,
                    "marks": str(marks),
                },
            },
            # The process worker runs the flow with these variables set.
            "job_variables": {"env": {"RADAS_CLUSTERS_FILE": str(ray_head.registry)}},
        },
    )
    try:
        deadline = time.monotonic() + 300
        job_id = None
        while job_id is None and time.monotonic() < deadline:
            running = [j for j in find_jobs(client, USER) if not j.status.is_terminal()]
            if running and list(marks.glob("start-*")):
                job_id = str(running[0].submission_id)
            state = deployed.get(f"/flow_runs/{run['id']}")["state"]["type"]
            assert state in ("SCHEDULED", "PENDING", "RUNNING"), state
            time.sleep(1)
        assert job_id, "the run never got a job going"
        cancelled = deployed.prefect("flow-run", "cancel", run["id"])
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        final = wait_final(deployed, run["id"])
        assert final["state"]["type"] == "CANCELLED"
        # No job of the run is left running on the head (ask its Jobs API).
        while time.monotonic() < deadline and not client.get_job_status(job_id).is_terminal():
            time.sleep(1)
        assert [str(j.status.value) for j in find_jobs(client, USER)] == ["STOPPED"]
        logs = deployed.post(
            "/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200}
        )
        messages = "\n".join(log["message"] for log in logs)
        assert re.search(rf"Following job {job_id} .* the job was stopped so that", messages)
        assert not list(marks.glob("done-*"))  # the sweep was cut off
    finally:
        (marks / "hold").unlink(missing_ok=True)
        for job in find_jobs(client, USER):
            if not job.status.is_terminal():
                client.stop_job(str(job.submission_id))
