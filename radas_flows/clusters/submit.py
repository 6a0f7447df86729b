"""Submission of a cluster run: the shared driver as a Ray job, with the user's working dir."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radas_flows._artifacts import run_logger
from radas_flows.clusters.jobs import (
    find_jobs,
    job_client,
    job_metadata,
    merge_runtime_env,
    submission_id,
    with_retries,
)
from radas_flows.clusters.registry import get_cluster
from radas_flows.errors import ExperimentStateError

if TYPE_CHECKING:
    from radas_flows.driver import DriverSpec
    from radas_flows.inputs.spec import ExperimentSpec
    from radas_flows.submission import RunHandle

__all__ = [
    "JOB_STOP_ENV",
    "METADATA_EXPERIMENT_PATH",
    "METADATA_MODE",
    "METADATA_RUN_ID",
    "METADATA_SUBMIT_KEY",
    "build_job_runtime_env",
    "running_jobs_error",
    "submit_cluster_run",
    "write_job_package",
]

JOB_STOP_ENV: dict[str, str] = {
    "RAY_JOB_STOP_SIGNAL": "SIGINT",
    "RAY_JOB_STOP_WAIT_TIME_S": "30",
}
"""Set on every job (unless the user sets them): a stop request interrupts Tune with SIGINT,
which stops the trials and saves the experiment state, and it gets 30 s to do so before
Ray kills it."""

METADATA_RUN_ID = "radas_run_id"
METADATA_MODE = "radas_mode"
METADATA_EXPERIMENT_PATH = "radas_experiment_path"
METADATA_SUBMIT_KEY = "radas_submit_key"
"""Job metadata key holding the submitting task run's id: a retry of that task run finds the
job an earlier attempt created (its answer lost on the way back) instead of submitting twice."""

_PACKAGE_INIT = '''\
"""The driver spec of one radas_flows cluster job (generated at submission)."""

SPEC = {spec!r}
'''

_PACKAGE_MAIN = """\
\"\"\"Entrypoint of one radas_flows cluster job: run the shared driver on this job's spec.\"\"\"

from radas_flows.driver import main

from {package} import SPEC

raise SystemExit(main(["--spec", SPEC]))
"""


def write_job_package(driver_spec: DriverSpec, directory: str | Path) -> Path:
    """Write the job's entry package ``radas_job_<run id>`` (the encoded spec) into a directory.

    The package travels to the cluster as a ``py_modules`` entry, so the spec (which may hold
    secrets) never appears in the job's entrypoint command line.

    Returns:
        The package directory; the job runs ``python -u -m <its name>``.
    """
    from radas_flows.driver import encode_spec

    package = f"radas_job_{driver_spec.run_id}"
    path = Path(directory) / package
    path.mkdir(parents=True)
    (path / "__init__.py").write_text(_PACKAGE_INIT.format(spec=encode_spec(driver_spec)))
    (path / "__main__.py").write_text(_PACKAGE_MAIN.format(package=package))
    return path


def build_job_runtime_env(
    user_runtime_env: dict[str, Any], working_dir: str, *, extra_modules: list[str]
) -> dict[str, Any]:
    """The job's runtime_env: the user's, the working dir, our modules and stop settings.

    With ``image_uri`` the runtime_env holds only that (the image must contain the code).

    Example:
        >>> env = build_job_runtime_env({}, ".", extra_modules=["/pkg/radas_flows"])
        >>> env["py_modules"], env["env_vars"]["RAY_JOB_STOP_SIGNAL"]
        (['/pkg/radas_flows'], 'SIGINT')
    """
    env = merge_runtime_env(user_runtime_env, working_dir)
    if "image_uri" in env:
        return env
    env["py_modules"] = [*env.get("py_modules", []), *extra_modules]
    env["env_vars"] = {**JOB_STOP_ENV, **env.get("env_vars", {})}
    return env


def running_jobs_error(
    spec: ExperimentSpec, cluster_name: str, job_ids: list[str]
) -> ExperimentStateError:
    """The error for starting an experiment whose previous job is still running."""
    stop = f"radas stop {job_ids[-1]} --cluster {cluster_name} --user {spec.user_name}"
    return ExperimentStateError(
        f"Experiment {spec.experiment_name!r} already has a running job on cluster "
        f"{cluster_name!r} ({', '.join(job_ids)}). Use run_choice='attach' to follow it to its "
        f"end, or run_choice='stop_attach' to stop it and analyze what finished (or stop it "
        f"with `{stop}`), then run again."
    )


def submit_cluster_run(
    spec: ExperimentSpec, driver_spec: DriverSpec, submit_key: str | None = None
) -> RunHandle:
    """Submit the driver as a Ray job on the spec's cluster.

    The job's working dir is the user's cwd (uploaded), its runtime_env is theirs merged in
    (see :func:`~radas_flows.clusters.jobs.merge_runtime_env`), ``radas_flows`` itself and
    the job's entry package go along as ``py_modules`` (so the cluster runs this exact
    version of the driver), and the job's metadata names the user, the experiment, the
    run id and the mode. A job of the same experiment that is still running is an error,
    except the job an earlier attempt with the same ``submit_key`` created: that one is
    followed instead of submitting again (a retry after a lost answer submits nothing twice).

    Args:
        spec: The experiment (its target is ``cluster:<name>``).
        driver_spec: The driver's spec (trainable by reference, resources, storage).
        submit_key: What identifies this submission across retries (the task run id).

    Returns:
        A ``RunHandle`` with ``kind="cluster"``, ``job_id`` and ``cluster`` set.

    Raises:
        ExperimentStateError: A job of this experiment is still running.
        ClusterAuthError, ClusterConnectionError: The cluster cannot be used.

    Example:
        >>> handle = submit_cluster_run(spec, driver_spec)  # doctest: +SKIP
        >>> handle.job_id  # doctest: +SKIP
        'radas-yuhang-0de76972-20260101T000000-beef'
    """
    import radas_flows
    from radas_flows.submission import RunHandle

    logger = run_logger("radas_flows.clusters")
    name = spec.target.cluster
    assert name is not None, "submit_cluster_run needs a cluster target"
    cluster = get_cluster(name)
    client = job_client(cluster)
    jobs = with_retries(lambda: find_jobs(client, spec.user_name, spec.full_name))
    if submit_key is not None:
        earlier = [j for j in jobs if (j.metadata or {}).get(METADATA_SUBMIT_KEY) == submit_key]
        if earlier:
            return _adopt(earlier[-1], spec, driver_spec, name, logger)
    running = [str(job.submission_id) for job in jobs if not job.status.is_terminal()]
    if running:
        raise running_jobs_error(spec, name, running)
    job_id = submission_id(spec.user_name, spec.full_name)
    metadata = {
        **job_metadata(spec.user_name, spec.full_name),
        METADATA_RUN_ID: driver_spec.run_id,
        METADATA_MODE: driver_spec.mode,
        METADATA_EXPERIMENT_PATH: driver_spec.experiment_path,
        **({METADATA_SUBMIT_KEY: submit_key} if submit_key is not None else {}),
    }
    with tempfile.TemporaryDirectory(prefix="radas-job-") as scratch:
        package = write_job_package(driver_spec, scratch)
        runtime_env = build_job_runtime_env(
            spec.runtime_env,
            spec.cwd,
            extra_modules=[str(Path(radas_flows.__file__).parent), str(package)],
        )
        if "image_uri" in runtime_env:
            from radas_flows.driver import encode_spec

            # image_uri must stay alone: the spec goes on the command line instead.
            entrypoint = f"python -u -m radas_flows.driver --spec {encode_spec(driver_spec)}"
        else:
            entrypoint = f"python -u -m {package.name}"
        client.submit_job(
            entrypoint=entrypoint,
            submission_id=job_id,
            runtime_env=runtime_env,
            metadata=metadata,
        )
    logger.info(
        "Submitted %s of %r to cluster %r as job %s with %s per trial; results: %s",
        driver_spec.mode,
        spec.experiment_name,
        name,
        job_id,
        driver_spec.resources,
        driver_spec.experiment_path,
    )
    logger.info("To stop it: radas stop %s --cluster %s --user %s", job_id, name, spec.user_name)
    return RunHandle(
        run_id=driver_spec.run_id,
        kind="cluster",
        experiment_path=driver_spec.experiment_path,
        driver_spec=driver_spec,
        job_id=job_id,
        cluster=name,
    )


def _adopt(
    job: Any, spec: ExperimentSpec, driver_spec: DriverSpec, cluster: str, logger: Any
) -> RunHandle:
    """The handle of a job an earlier attempt of this submission created."""
    import dataclasses

    from radas_flows.submission import RunHandle

    metadata = job.metadata or {}
    adopted = dataclasses.replace(
        driver_spec, run_id=metadata.get(METADATA_RUN_ID, driver_spec.run_id)
    )
    logger.warning(
        "An earlier attempt of this submission already created job %s of %r on cluster %r "
        "(its answer was lost); following that job instead of submitting again.",
        job.submission_id,
        spec.experiment_name,
        cluster,
    )
    return RunHandle(
        run_id=adopted.run_id,
        kind="cluster",
        experiment_path=adopted.experiment_path,
        driver_spec=adopted,
        job_id=str(job.submission_id),
        cluster=cluster,
    )
