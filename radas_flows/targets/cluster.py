"""The cluster target: the driver as a Ray job on a named cluster, through the Jobs API."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radas_flows._artifacts import run_logger
from radas_flows.clusters.availability import (
    ClusterStatus,
    availability_rows,
    format_availability,
    probe_clusters,
)
from radas_flows.clusters.heartbeat import Heartbeat, follower_timeout, heartbeat_path
from radas_flows.clusters.job_package import (
    METADATA_EXPERIMENT_PATH,
    METADATA_MODE,
    METADATA_RUN_ID,
    METADATA_SUBMIT_KEY,
    build_job_runtime_env,
    job_settings,
    write_job_package,
)
from radas_flows.clusters.jobs import (
    find_jobs,
    job_client,
    job_metadata,
    merge_runtime_env,
    submission_id,
    with_retries,
)
from radas_flows.clusters.registry import ClusterConfig, RegistryError, get_cluster, load_registry
from radas_flows.clusters.tenancy import checked_run_id
from radas_flows.clusters.upload import job_upload_plan
from radas_flows.errors import ExperimentStateError, RadasValueError
from radas_flows.inputs.rules import check_cpu_per_trial
from radas_flows.inputs.runtime_env import check_runtime_env
from radas_flows.targets.base import ClusterUnavailableError, Progress, RunHandle, TargetCheck
from radas_flows.targets.cluster_follow import (
    KEEP_JOB_ENV,
    ClusterRun,
    follow_job,
    keep_job_on_exit,
    stop_job,
)
from radas_flows.targets.cluster_stored import stored_results_check

if TYPE_CHECKING:
    from radas_flows.driver import DriverSpec
    from radas_flows.inputs.spec import ExperimentSpec
    from radas_flows.secret_plan import FoundSecrets, TrialSecrets
    from radas_flows.tuner import Tuner

__all__ = ["KEEP_JOB_ENV", "STOP_TIMEOUT_S", "ClusterRun", "ClusterTarget", "keep_job_on_exit"]

STOP_TIMEOUT_S = 120.0
"""How long stop_attach waits for a stopped job to end (Tune saves its state meanwhile)."""


class ClusterTarget:
    """A named Ray cluster of the registry, reached through its Jobs API."""

    def __init__(self, name: str) -> None:
        self.name = name

    def check_run_choice(self, run_choice: str | None) -> str | None:
        return run_choice

    def check_runtime_env(self, runtime_env: dict[str, Any]) -> dict[str, Any]:
        return check_runtime_env(runtime_env, local=False)

    def trial_secrets(self, found: FoundSecrets) -> TrialSecrets:
        """Only names of variables the job reads from its environment on the cluster."""
        return found.references_for_job(self.name)

    def check_cpu_per_trial(self, cpu_per_trial: object, cpu_cap: float | None) -> float:
        """Checked against ``cpu_per_node`` by :meth:`check`, once the registry is read."""
        return check_cpu_per_trial(cpu_per_trial, cpu_cap, f"cpu_per_node of {self.name}")

    # -- check ---------------------------------------------------------------------------

    def check(self, spec: ExperimentSpec) -> TargetCheck:
        """Check a cluster run before anything is submitted.

        In order: the trainable can be sent (importable by reference), the runtime_env
        follows the rules, the cluster is in the registry and online (all clusters are
        probed at once, so the error shows the whole availability table), ``cpu_per_trial``
        fits on one node, and the cluster accepts its token.

        Raises:
            ClusterUnavailableError: The cluster is unknown or offline (``.rows``: the table).
            RadasValueError: The trainable, runtime_env or cpu_per_trial cannot run there.
            ClusterAuthError: The cluster's token is missing or rejected.
        """
        from radas_flows.core import cluster_results_root

        name = self.name
        if "run" not in spec.dos:  # analysis only: nothing to ask the cluster
            return stored_results_check(name, spec.dos)
        self.driver_trainable(spec)
        merge_runtime_env(spec.runtime_env, spec.cwd)
        clusters = load_registry()
        statuses = probe_clusters(timeout=2.0)
        text = format_availability(statuses)
        rows = _rows_with_specs(statuses, clusters)
        try:
            cluster = get_cluster(name)
        except RegistryError as e:
            raise ClusterUnavailableError(f"{e}\n\n{text}", rows) from e
        status = next(s for s in statuses if s.name == name)
        if not status.online:
            raise ClusterUnavailableError(
                f"Cluster {name!r} is offline ({status.error}). Pick an online cluster from the "
                f"list, or try again later.\n\n{text}",
                rows,
            )
        self.check_cpu_per_trial(spec.cpu_per_trial, float(cluster.cpu_per_node))
        job_client(cluster)  # the token is read and checked here, before any submission
        return TargetCheck(
            target=f"cluster:{name}",
            online=True,
            cpus_total=status.cpus_total,
            gpus_total=status.gpus_total,
            cpu_cap=float(cluster.cpu_per_node),
            gpu_per_cpu=cluster.gpu_per_cpu,
            results_root=cluster_results_root(name),
            rows=rows,
        )

    def driver_trainable(self, spec: ExperimentSpec) -> str:
        """The trainable's ``module:attribute`` reference, or raise quoting the rule.

        A cluster job imports the trainable from the uploaded working directory, so a
        function defined in ``__main__`` (the script itself), a lambda or a nested function
        cannot be sent.
        """
        from radas_flows.inputs.references import SEPARATE_FILE_RULE

        if spec.trainable_ref is None:
            label = getattr(spec.trainable, "__qualname__", None) or repr(spec.trainable)
            module = getattr(spec.trainable, "__module__", None)
            raise RadasValueError(
                f"trainable {label!r} (module {module!r}) cannot be sent to cluster "
                f"{self.name!r}: it must be importable from your working directory. "
                f'The rule: "{SEPARATE_FILE_RULE}"'
            )
        return spec.trainable_ref

    def prepare(self, spec: ExperimentSpec) -> None:
        """Nothing to start ahead: the cluster runs already."""

    # -- submit, attach ------------------------------------------------------------------

    def submit(
        self, spec: ExperimentSpec, driver_spec: DriverSpec, *, submit_key: str | None
    ) -> ClusterRun:
        """Submit the driver as a Ray job on this cluster.

        The job's working dir is the user's cwd (uploaded), its runtime_env is theirs merged
        in, ``radas_flows`` itself and the job's entry package go along as ``py_modules`` (so
        the cluster runs this exact version of the driver), and the job's metadata names the
        user, the experiment, the run id and the mode. A job of the same experiment that is
        still running is an error, except the job an earlier attempt with the same
        ``submit_key`` created: that one is followed instead (a retry after a lost answer
        submits nothing twice).

        Raises:
            ExperimentStateError: A job of this experiment is still running.
            ClusterAuthError, ClusterConnectionError: The cluster cannot be used.
        """
        import radas_flows
        from radas_flows.core import cluster_results_root

        if driver_spec.secrets.config or driver_spec.secrets.environ:
            raise RadasValueError(  # trial_secrets never gives a cluster run any values
                "A cluster job's spec may hold only names of environment variables as secrets, "
                "never values: its package and entrypoint can be read by every cluster user."
            )
        logger = run_logger("radas_flows.clusters")
        name = self.name
        if not keep_job_on_exit():  # the job stops itself when this flow is gone
            driver_spec = dataclasses.replace(driver_spec, follower_timeout_s=follower_timeout())
        client = job_client(get_cluster(name))
        jobs = with_retries(lambda: find_jobs(client, spec.user_name, spec.full_name))
        if submit_key is not None:
            earlier = [j for j in jobs if (j.metadata or {}).get(METADATA_SUBMIT_KEY) == submit_key]
            if earlier:
                return self._adopt(earlier[-1], spec, driver_spec, logger)
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
        plan = job_upload_plan(
            spec.cwd, driver_spec.storage_path, spec.runtime_env.get("excludes") or []
        )
        if driver_spec.follower_timeout_s:  # beating before the job can look for it
            path = heartbeat_path(driver_spec.storage_path, driver_spec.run_id)
            Heartbeat.submitted(path, driver_spec.follower_timeout_s, logger)
        with tempfile.TemporaryDirectory(prefix="radas-job-") as scratch:
            package = write_job_package(driver_spec, scratch)
            runtime_env = build_job_runtime_env(
                spec.runtime_env,
                spec.cwd,
                extra_modules=[str(Path(radas_flows.__file__).parent), str(package)],
                settings=job_settings(cluster_results_root(name)),
                excludes=plan.excludes,
            )
            if "working_dir" in runtime_env and (left_out := plan.message(spec.cwd)):
                logger.info("%s", left_out)
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
        logger.info(
            "To stop it: radas stop %s --cluster %s --user %s", job_id, name, spec.user_name
        )
        return ClusterRun(
            run_id=driver_spec.run_id,
            experiment_path=driver_spec.experiment_path,
            driver_spec=driver_spec,
            job_id=job_id,
            cluster=name,
            user_name=spec.user_name,
        )

    def _adopt(
        self, job: Any, spec: ExperimentSpec, driver_spec: DriverSpec, logger: Any
    ) -> ClusterRun:
        """The handle of a job an earlier attempt of this submission created."""
        run_id = checked_run_id(job, experiment_path=driver_spec.experiment_path, cluster=self.name)
        adopted = dataclasses.replace(driver_spec, run_id=run_id or driver_spec.run_id)
        logger.warning(
            "An earlier attempt of this submission already created job %s of %r on cluster %r "
            "(its answer was lost); following that job instead of submitting again.",
            job.submission_id,
            spec.experiment_name,
            self.name,
        )
        return ClusterRun(
            run_id=adopted.run_id,
            experiment_path=adopted.experiment_path,
            driver_spec=adopted,
            job_id=str(job.submission_id),
            cluster=self.name,
            user_name=spec.user_name,
        )

    def running_jobs(self, spec: ExperimentSpec) -> list[str]:
        """The submission ids of the experiment's jobs on this cluster that have not ended."""
        client = job_client(get_cluster(self.name))
        jobs = with_retries(lambda: find_jobs(client, spec.user_name, spec.full_name))
        return [str(job.submission_id) for job in jobs if not job.status.is_terminal()]

    def attach(
        self,
        spec: ExperimentSpec,
        check: TargetCheck,
        logger: Any,
        *,
        stop_timeout: float = STOP_TIMEOUT_S,
    ) -> ClusterRun | None:
        """Find the experiment's running job for ``attach`` / ``stop_attach``.

        ``attach`` returns a handle to follow the job to its end. ``stop_attach`` first
        stops it (Tune gets SIGINT, stops the trials and saves the experiment) and waits
        until it has ended. With no running job, the stored results are analyzed when there
        are any (None is returned).

        Raises:
            ExperimentStateError: No job is running and no results are stored, or a stopped
                job did not end within ``stop_timeout``.
        """
        from radas_flows.core import experiment_path
        from radas_flows.run_choice import experiment_exists
        from radas_flows.stages.submit import driver_spec_for

        name = self.name
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
                f"run_choice={spec.run_choice!r}: no job of experiment {spec.experiment_name!r} "
                f"is running on cluster {name!r}{last}, and no results are stored at {path}. "
                "Start it with run_choice='run' (same experiment_name, same directory)."
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
        run_id = checked_run_id(job, experiment_path=path, cluster=name)
        driver_spec = driver_spec_for(
            spec, "run", cpu_per_trial=spec.cpu_per_trial, check=check, target=self
        )
        driver_spec.run_id = run_id or driver_spec.run_id
        handle = ClusterRun(
            run_id=driver_spec.run_id,
            experiment_path=path,
            driver_spec=driver_spec,
            started_at=(job.start_time / 1000) if job.start_time else time.time(),
            attached=True,
            job_id=job_id,
            cluster=name,
            user_name=spec.user_name,
        )
        if spec.run_choice != "stop_attach":
            logger.info(
                "Attached to job %s of %r on cluster %r.", job_id, spec.experiment_name, name
            )
            return handle
        with_retries(lambda: client.stop_job(job_id), attempts=3, backoff=0.5)
        logger.info(
            "Stop requested for job %s of %r on cluster %r.", job_id, spec.experiment_name, name
        )
        deadline = time.monotonic() + stop_timeout
        while not (status := with_retries(lambda: client.get_job_status(job_id))).is_terminal():
            if time.monotonic() > deadline:
                raise ExperimentStateError(
                    f"Job {job_id} on cluster {name!r} is still {status.value} {stop_timeout:g} "
                    f"s after the stop request; check it with `radas experiments --cluster "
                    f"{name}`."
                )
            time.sleep(0.5)
        logger.info("Job %s is %s; analyzing what finished.", job_id, status.value)
        handle.stop_requested = True
        return handle

    # -- follow, stop ----------------------------------------------------------------------

    def follow(self, spec: ExperimentSpec, handle: RunHandle, progress: Progress) -> Tuner:
        """Follow the job to its end and read its results back (see :func:`follow_job`)."""
        assert isinstance(handle, ClusterRun)
        return follow_job(handle, progress, on_exit=lambda e: self.stop(handle, progress.logger, e))

    def stop(self, handle: RunHandle, logger: Any, reason: BaseException) -> None:
        """Following ended early: stop the job unless it must keep running (:func:`stop_job`)."""
        assert isinstance(handle, ClusterRun)
        stop_job(handle, logger, reason)


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


def _rows_with_specs(
    statuses: list[ClusterStatus], clusters: dict[str, ClusterConfig]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for row, status in zip(availability_rows(statuses), statuses, strict=True):
        config = clusters.get(status.name)
        if config is not None:
            row["cpu_per_node"] = str(config.cpu_per_node)
            row["gpu_per_cpu"] = f"{config.gpu_per_cpu:g}"
        rows.append(row)
    return rows
