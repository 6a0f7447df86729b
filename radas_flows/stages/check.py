"""Stage 1, cluster check: is the run target there, and how much of it is free?"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from radas_flows._artifacts import artifact_key, create_table
from radas_flows._redaction import scrub_errors
from radas_flows.core import RESULTS_ROOT_ENV
from radas_flows.errors import ResultsRootError
from radas_flows.inputs.spec import ExperimentSpec
from radas_flows.storage import Storage
from radas_flows.targets import ClusterUnavailableError, TargetCheck, target_for

__all__ = ["check_results_root", "cluster_check"]


@task(name="cluster_check", cache_policy=NO_CACHE, persist_result=False)
@scrub_errors
def cluster_check(spec: ExperimentSpec) -> TargetCheck:
    """Check the run target and record the availability table as an artifact.

    Raises:
        ClusterUnavailableError: The target is unknown or offline (its table is recorded too).
    """
    key = artifact_key("clusters", spec.user_name, spec.experiment_name)
    description = f"Cluster availability when {spec.experiment_name!r} was checked"
    try:
        check = target_for(spec.target).check(spec)
    except ClusterUnavailableError as e:
        if e.rows:
            create_table(key, e.rows, description)
        raise
    create_table(key, check.rows, description)
    check_results_root(spec, check)
    return check


def check_results_root(spec: ExperimentSpec, check: TargetCheck) -> None:
    """The user's results folder can be written here (a folder root; URIs are not probed).

    Raises:
        ResultsRootError: It cannot be created or written: read-only, no permission, full.
    """
    from radas_flows.core import results_root, user_results_path

    root = check.results_root or results_root()
    folder = user_results_path(spec.user_name, root)
    try:
        Storage(folder).check_writable()
    except OSError as e:
        raise ResultsRootError(
            f"The results folder {folder} cannot be written ({type(e).__name__}: "
            f"{e.strerror or e}), so nothing was started. Point the results root "
            f"({root}) at a folder (or s3:// URI) that you can write, that has free space and "
            f"whose storage answers: "
            f"{RESULTS_ROOT_ENV} for local runs, the cluster's results_root in the registry for "
            "cluster runs."
        ) from e
