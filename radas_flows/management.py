"""Experiment management on a cluster: list a user's jobs, show how to stop them, stop them."""

from __future__ import annotations

import shlex
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from radas_flows.clusters.jobs import (
    METADATA_EXPERIMENT,
    METADATA_USER,
    find_jobs,
    job_client,
    with_retries,
)
from radas_flows.clusters.registry import ClusterConfig, get_cluster
from radas_flows.errors import RadasError
from radas_flows.inputs.rules import parse_run_with

if TYPE_CHECKING:
    from ray.job_submission import JobDetails

__all__ = ["ExperimentClient", "JobNotFoundError", "cluster_name_from_run_with", "get_client"]

_COLUMNS = ("job id", "experiment", "status", "start time", "stop command")


class JobNotFoundError(RadasError, LookupError):
    """The cluster has no job with the given id."""


def cluster_name_from_run_with(run_with: str) -> str:
    """Return the cluster name of a ``run_with="cluster:<name>"`` value.

    Raises:
        ValueError: ``run_with`` does not name a cluster.

    Example:
        >>> cluster_name_from_run_with("cluster:atol-gpu-5090")
        'atol-gpu-5090'
    """
    try:
        target = parse_run_with(run_with)
    except ValueError:
        target = None
    if target is not None and target.cluster is not None:
        return target.cluster
    if (
        isinstance(run_with, str)
        and run_with.startswith("cluster:")
        and not run_with.removeprefix("cluster:").strip()
    ):
        raise ValueError(
            f'run_with={run_with!r} has an empty cluster name; write run_with="cluster:<name>".'
        )
    hint = (
        " Local runs are not kept as cluster jobs, so there is nothing to manage."
        if run_with == "local"
        else ""
    )
    raise ValueError(
        f'run_with={run_with!r} does not name a cluster; write run_with="cluster:<name>" '
        f"with a name from `radas clusters`.{hint}"
    )


def _start_time(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _job_id(job: JobDetails) -> str:
    return str(job.submission_id or job.job_id)


class ExperimentClient:
    """A user's view of their radas jobs on one cluster.

    Create it with :func:`get_client`.

    Attributes:
        user_name: The user whose jobs are shown and may be stopped.
        cluster: The cluster, from the registry.

    Example:
        >>> client = get_client("yuhang", "cluster:atol-gpu-5090")  # doctest: +SKIP
        >>> client.display_experiments()  # doctest: +SKIP
    """

    def __init__(self, user_name: str, cluster: ClusterConfig, *, timeout: float = 5.0) -> None:
        if not isinstance(user_name, str) or not user_name.strip():
            raise ValueError(f"user_name must be a non-empty string, got {user_name!r}.")
        self.user_name = user_name
        self.cluster = cluster
        self._client = job_client(cluster, timeout=timeout)

    @property
    def run_with(self) -> str:
        """The ``run_with`` value of this client's cluster."""
        return f"cluster:{self.cluster.name}"

    def stop_command(self, job_id: str) -> str:
        """Return the ``radas stop`` command line that stops one job.

        Example:
            >>> client.stop_command("radas-yuhang-0de76972-20260101T000000-beef")  # doctest: +SKIP
            'radas stop radas-yuhang-0de76972-20260101T000000-beef --cluster atol-gpu-5090 --user yuhang'
        """  # noqa: E501
        return shlex.join(
            ["radas", "stop", job_id, "--cluster", self.cluster.name, "--user", self.user_name]
        )

    def python_stop_command(self, job_id: str) -> str:
        """Return the Python statement that stops one job."""
        return (
            f"get_client(user_name={self.user_name!r}, run_with={self.run_with!r})"
            f".stop_job_by_id({job_id!r})"
        )

    def _jobs(self) -> list[JobDetails]:
        return with_retries(lambda: find_jobs(self._client, self.user_name), attempts=3)

    def list_experiments(self) -> list[dict[str, Any]]:
        """List the user's radas jobs on the cluster, oldest first.

        Returns:
            One dict per job: ``job_id`` (the submission id), ``experiment``, ``status``
            (``PENDING``, ``RUNNING``, ``STOPPED``, ``SUCCEEDED`` or ``FAILED``),
            ``start_time`` (local time, ``YYYY-mm-dd HH:MM:SS``), ``running`` (bool) and
            ``message``.

        Example:
            >>> [e["job_id"] for e in client.list_experiments() if e["running"]]  # doctest: +SKIP
            ['radas-yuhang-0de76972-20260101T000000-beef']
        """
        return [
            {
                "job_id": _job_id(job),
                "experiment": (job.metadata or {}).get(METADATA_EXPERIMENT, ""),
                "status": str(job.status.value),
                "start_time": _start_time(job.start_time),
                "running": not job.status.is_terminal(),
                "message": job.message or "",
            }
            for job in self._jobs()
        ]

    def display_experiments(self) -> str:
        """Print (and return) a table of the user's jobs, with a stop command per running job.

        Example:
            >>> text = client.display_experiments()  # doctest: +SKIP
        """
        experiments = self.list_experiments()
        where = f"cluster {self.cluster.name!r} ({self.cluster.address})"
        if not experiments:
            text = f"No radas experiments of user {self.user_name!r} on {where}."
            print(text)
            return text
        rows = [
            (
                e["job_id"],
                e["experiment"],
                e["status"],
                e["start_time"],
                self.stop_command(e["job_id"]) if e["running"] else "",
            )
            for e in experiments
        ]
        widths = [max(len(str(r[i])) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
        lines = [f"Experiments of user {self.user_name!r} on {where}:"]
        for row in [_COLUMNS, *rows]:
            lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
        running = [e["job_id"] for e in experiments if e["running"]]
        if running:
            lines.append("")
            lines.append("To stop a running job from Python:")
            lines.append("    from radas_flows.management import get_client")
            lines += [f"    {self.python_stop_command(job_id)}" for job_id in running]
        text = "\n".join(line.rstrip() for line in lines)
        print(text)
        return text

    def stop_job_by_id(self, job_id: str, *, wait: bool = False, timeout: float = 60.0) -> bool:
        """Stop one of the user's jobs.

        Args:
            job_id: The job's submission id (as shown by :meth:`display_experiments`).
            wait: Wait until the job has stopped.
            timeout: Seconds to wait when ``wait`` is true.

        Returns:
            True when a stop was requested, False when the job had already ended.

        Raises:
            JobNotFoundError: The cluster has no such job.
            PermissionError: The job is not one of this user's radas jobs.
            TimeoutError: ``wait`` is true and the job did not stop within ``timeout``.

        Example:
            >>> client.stop_job_by_id(job_id)  # doctest: +SKIP
            True
        """
        try:
            job = with_retries(lambda: self._client.get_job_info(job_id), attempts=3)
        except RuntimeError as e:
            if "does not exist" not in str(e) and "404" not in str(e):
                raise
            mine = ", ".join(x["job_id"] for x in self.list_experiments()) or "none"
            raise JobNotFoundError(
                f"Cluster {self.cluster.name!r} has no job {job_id!r}. Jobs of user "
                f"{self.user_name!r} there: {mine}. Copy an id from display_experiments() "
                f"or `radas experiments --cluster {self.cluster.name}`."
            ) from e
        owner = (job.metadata or {}).get(METADATA_USER)
        if owner != self.user_name:
            whose = f"belongs to user {owner!r}" if owner else "was not started by radas_flows"
            raise PermissionError(
                f"Job {job_id!r} on cluster {self.cluster.name!r} {whose}; user "
                f"{self.user_name!r} may stop only their own jobs."
            )
        if job.status.is_terminal():
            print(f"Job {job_id} has already ended ({job.status.value}); nothing to stop.")
            return False
        with_retries(lambda: self._client.stop_job(job_id), attempts=3)
        print(f"Stop requested for job {job_id} on cluster {self.cluster.name!r}.")
        if wait:
            deadline = time.monotonic() + timeout
            while True:
                status = with_retries(lambda: self._client.get_job_status(job_id), attempts=3)
                if status.is_terminal():
                    print(f"Job {job_id} is {status.value}.")
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"Job {job_id} is still {status.value} {timeout:g} s after the stop "
                        f"request; check it with `radas experiments --cluster "
                        f"{self.cluster.name}`."
                    )
                time.sleep(0.5)
        return True


def get_client(user_name: str, run_with: str, *, timeout: float = 5.0) -> ExperimentClient:
    """Connect to a cluster to manage a user's experiments there.

    Args:
        user_name: The user whose jobs are listed and may be stopped.
        run_with: ``"cluster:<name>"``, a cluster of the registry.
        timeout: Seconds to wait for the cluster to answer.

    Returns:
        An :class:`ExperimentClient`.

    Raises:
        ValueError: ``run_with`` does not name a cluster.
        RegistryError: The cluster is not in the registry.
        ClusterAuthError: The cluster's token is missing or wrong.
        ClusterConnectionError: The cluster does not answer.

    Example:
        >>> from radas_flows.management import get_client
        >>> client = get_client("yuhang", "cluster:atol-gpu-5090")  # doctest: +SKIP
        >>> client.display_experiments()  # doctest: +SKIP
        >>> client.stop_job_by_id(job_id)  # doctest: +SKIP
    """
    cluster = get_cluster(cluster_name_from_run_with(run_with))
    return ExperimentClient(user_name, cluster, timeout=timeout)
