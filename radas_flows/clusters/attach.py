"""Attach and stop_attach: find an experiment's running job on its cluster, stop it if asked."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows.clusters.jobs import find_jobs, job_client, with_retries
from radas_flows.clusters.registry import get_cluster
from radas_flows.clusters.submit import METADATA_EXPERIMENT_PATH, METADATA_RUN_ID
from radas_flows.errors import ExperimentStateError

if TYPE_CHECKING:
    from radas_flows.availability import TargetCheck
    from radas_flows.inputs.spec import ExperimentSpec
    from radas_flows.submission import RunHandle

__all__ = ["STOP_TIMEOUT_S", "attach_running_job", "experiment_attach"]

STOP_TIMEOUT_S = 120.0
"""How long stop_attach waits for a stopped job to end (Tune saves its state meanwhile)."""


def attach_running_job(
    spec: ExperimentSpec, check: TargetCheck, logger: Any, *, stop_timeout: float = STOP_TIMEOUT_S
) -> RunHandle | None:
    """Find the experiment's running job for ``attach`` / ``stop_attach``.

    ``attach`` returns a handle to follow the job to its end. ``stop_attach`` first stops
    it (Tune gets SIGINT, stops the trials and saves the experiment) and waits until it has
    ended. With no running job, the stored results are analyzed when there are any.

    Returns:
        The handle of the job to follow, or None when no job of the experiment is running
        (the flow then analyzes the stored results).

    Raises:
        ExperimentStateError: No job is running and no results are stored, or a stopped
            job did not end within ``stop_timeout``.
    """
    from radas_flows.core import experiment_path
    from radas_flows.run_choice import experiment_exists
    from radas_flows.submission import RunHandle, driver_spec_for

    name = spec.target.cluster
    assert name is not None
    client = job_client(get_cluster(name))
    jobs = with_retries(lambda: find_jobs(client, spec.user_name, spec.full_name))
    running = [job for job in jobs if not job.status.is_terminal()]
    path = experiment_path(spec.user_name, spec.full_name, check.results_root)
    if not running:
        last = (
            f" (its last job, {jobs[-1].submission_id}, ended {jobs[-1].status.value})"
            if jobs
            else ""
        )
        if experiment_exists(path):
            logger.warning(
                "run_choice=%r: no job of %r is running on cluster %r%s; using the stored "
                "results in %s.",
                spec.run_choice,
                spec.experiment_name,
                name,
                last,
                path,
            )
            return None
        raise ExperimentStateError(
            f"run_choice={spec.run_choice!r}: no job of experiment {spec.experiment_name!r} is "
            f"running on cluster {name!r}{last}, and no results are stored at {path}. Start it "
            f"with run_choice='run' (same experiment_name, same directory)."
        )
    if len(running) > 1:
        logger.warning(
            "%d jobs of %r are running on cluster %r; following the newest, %s.",
            len(running),
            spec.experiment_name,
            name,
            running[-1].submission_id,
        )
    job = running[-1]
    job_id = str(job.submission_id)
    metadata = job.metadata or {}
    driver_spec = driver_spec_for(
        spec,
        "run",
        cpu_per_trial=spec.cpu_per_trial,
        gpu_per_cpu=check.gpu_per_cpu,
        root=check.results_root,
    )
    driver_spec.run_id = metadata.get(METADATA_RUN_ID, driver_spec.run_id)
    handle = RunHandle(
        run_id=driver_spec.run_id,
        kind="cluster",
        experiment_path=metadata.get(METADATA_EXPERIMENT_PATH, path),
        driver_spec=driver_spec,
        started_at=(job.start_time / 1000) if job.start_time else time.time(),
        job_id=job_id,
        cluster=name,
    )
    handle.outcome["attached"] = True
    if spec.run_choice != "stop_attach":
        logger.info("Attached to job %s of %r on cluster %r.", job_id, spec.experiment_name, name)
        return handle
    with_retries(lambda: client.stop_job(job_id), attempts=3, backoff=0.5)
    logger.info(
        "Stop requested for job %s of %r on cluster %r.", job_id, spec.experiment_name, name
    )
    deadline = time.monotonic() + stop_timeout
    while not (status := with_retries(lambda: client.get_job_status(job_id))).is_terminal():
        if time.monotonic() > deadline:
            raise ExperimentStateError(
                f"Job {job_id} on cluster {name!r} is still {status.value} {stop_timeout:g} s "
                f"after the stop request; check it with `radas experiments --cluster {name}`."
            )
        time.sleep(0.5)
    logger.info("Job %s is %s; analyzing what finished.", job_id, status.value)
    handle.outcome["stop_requested"] = True
    return handle


@task(name="experiment_attach", cache_policy=NO_CACHE, persist_result=False)
def experiment_attach(spec: ExperimentSpec, check: TargetCheck) -> RunHandle | None:
    """The attach stage of ``run_choice="attach"`` / ``"stop_attach"`` (see :func:`attach_running_job`)."""  # noqa: E501
    return attach_running_job(spec, check, get_run_logger())
