"""Stage 1, cluster check: is the run target there, and how much of it is free?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from radas_flows._artifacts import artifact_key, create_table
from radas_flows.core import local_cpus, local_gpus
from radas_flows.errors import RadasError
from radas_flows.inputs.spec import ExperimentSpec


class ClusterUnavailableError(RadasError):
    """The run target is unknown or offline; the message carries the availability table."""


@dataclass(frozen=True)
class TargetCheck:
    """What the cluster check found out about the run target."""

    target: str
    online: bool
    cpus_total: float | None
    gpus_total: float | None
    cpu_cap: float  # the most CPUs one trial may ask for (local CPUs, or cpu_per_node)
    gpu_per_cpu: float
    results_root: str | None
    rows: list[dict[str, Any]]


def check_local() -> TargetCheck:
    """The local target: this machine's CPUs and GPUs."""
    cpus, gpus = local_cpus(), local_gpus()
    row = {
        "cluster": "local",
        "status": "online",
        "cpus_total": cpus,
        "gpus_total": gpus,
        "hint": "this machine (embedded local Ray)",
    }
    return TargetCheck("local", True, cpus, gpus, float(cpus), 0.0, None, [row])


def check_target(spec: ExperimentSpec) -> TargetCheck:
    """Check the run target of ``spec``; raise ClusterUnavailableError when it cannot run."""
    if spec.target.is_local:
        return check_local()
    from radas_flows.clusters.checks import check_cluster_target

    return check_cluster_target(spec)


@task(name="cluster_check", cache_policy=NO_CACHE, persist_result=False)
def cluster_check(spec: ExperimentSpec) -> TargetCheck:
    """Check the run target and record the availability table as an artifact."""
    try:
        check = check_target(spec)
    except ClusterUnavailableError as e:
        rows = getattr(e, "rows", None)
        if rows:
            create_table(
                artifact_key("clusters", spec.user_name, spec.experiment_name),
                rows,
                f"Cluster availability when {spec.experiment_name!r} was checked",
            )
        raise
    create_table(
        artifact_key("clusters", spec.user_name, spec.experiment_name),
        check.rows,
        f"Cluster availability when {spec.experiment_name!r} was checked",
    )
    return check
