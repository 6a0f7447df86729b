"""Stage 1, cluster check: is the run target there, and how much of it is free?"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from radas_flows._artifacts import artifact_key, create_table
from radas_flows._redaction import scrub_errors
from radas_flows.inputs.spec import ExperimentSpec
from radas_flows.targets import ClusterUnavailableError, TargetCheck, target_for

__all__ = ["cluster_check"]


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
    return check
