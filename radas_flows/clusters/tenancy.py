"""Job metadata read back from a cluster: any tenant can write it, so it is checked."""

from __future__ import annotations

import re
from typing import Any

from radas_flows.clusters.job_package import METADATA_EXPERIMENT_PATH, METADATA_RUN_ID
from radas_flows.errors import ExperimentStateError

__all__ = ["RUN_ID_PATTERN", "checked_run_id"]

RUN_ID_PATTERN = re.compile(r"[0-9a-f]{12}")
"""The run ids radas writes into job metadata (``uuid4().hex[:12]``)."""


def checked_run_id(job: Any, *, experiment_path: str, cluster: str) -> str | None:
    """The run id of a job found by its user and experiment, once its metadata is radas'.

    Anyone who can submit jobs to a cluster can give a job metadata naming another user and
    experiment. Before a flow follows such a job, what the metadata says must be what radas
    would have written: the results path equals the one computed here for this user and
    experiment (the results are read, and the out-of-memory manifest written, there), and the
    run id has radas' form.

    Args:
        job: The job's ``JobDetails``.
        experiment_path: This experiment's results path on the cluster's results root.
        cluster: The cluster's name, for the message.

    Returns:
        The run id the metadata records, or None when it records none.

    Raises:
        ExperimentStateError: The metadata names another results path, or a run id radas
            does not write.

    Example:
        >>> from types import SimpleNamespace
        >>> job = SimpleNamespace(submission_id="j1", metadata={"radas_run_id": "0123456789ab"})
        >>> checked_run_id(job, experiment_path="/r/u/e", cluster="c")
        '0123456789ab'
    """
    metadata = job.metadata or {}
    job_id = job.submission_id or job.job_id
    refusal = (
        "radas writes no other value, so either the cluster's results root changed since the "
        "job was submitted or someone else submitted this job under your user and experiment "
        f"names; radas does not attach to it. Inspect it with `ray job status {job_id}` "
        f"(and `ray job stop {job_id}` if it is not yours), then run with run_choice='run'."
    )
    recorded = metadata.get(METADATA_EXPERIMENT_PATH)
    if recorded is not None and recorded != experiment_path:
        raise ExperimentStateError(
            f"Job {job_id} on cluster {cluster!r}: its metadata names the results path "
            f"{recorded!r}, not {experiment_path!r}, this experiment's results path. {refusal}"
        )
    run_id = metadata.get(METADATA_RUN_ID)
    if run_id is not None and not (isinstance(run_id, str) and RUN_ID_PATTERN.fullmatch(run_id)):
        raise ExperimentStateError(
            f"Job {job_id} on cluster {cluster!r}: its metadata names the run id {run_id!r}, "
            f"not 12 hexadecimal digits. {refusal}"
        )
    return run_id
