"""The cluster check of a cluster run: known, online, token accepted, trial fits on a node."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from radas_flows.clusters.availability import (
    ClusterStatus,
    availability_rows,
    format_availability,
    probe_clusters,
)
from radas_flows.clusters.jobs import job_client, merge_runtime_env
from radas_flows.clusters.registry import ClusterConfig, RegistryError, get_cluster, load_registry
from radas_flows.errors import RadasValueError
from radas_flows.inputs.references import SEPARATE_FILE_RULE
from radas_flows.inputs.rules import check_cpu_per_trial, cpu_cap_name

if TYPE_CHECKING:
    from radas_flows.availability import TargetCheck
    from radas_flows.inputs.spec import ExperimentSpec

__all__ = ["check_cluster_target", "check_trainable_for_cluster"]


def check_trainable_for_cluster(spec: ExperimentSpec) -> str:
    """Return the trainable's ``module:attribute`` reference, or raise quoting the rule.

    A cluster job imports the trainable from the uploaded working directory, so a function
    defined in ``__main__`` (the script itself), a lambda or a nested function cannot be sent.

    Raises:
        RadasValueError: The trainable is not importable by reference.
    """
    if spec.trainable_ref is None:
        name = getattr(spec.trainable, "__qualname__", None) or repr(spec.trainable)
        module = getattr(spec.trainable, "__module__", None)
        raise RadasValueError(
            f"trainable {name!r} (module {module!r}) cannot be sent to cluster "
            f"{spec.target.cluster!r}: it must be importable from your working directory. "
            f'The rule: "{SEPARATE_FILE_RULE}"'
        )
    return spec.trainable_ref


def _unavailable(message: str, rows: list[dict[str, Any]]) -> Exception:
    from radas_flows.availability import ClusterUnavailableError

    error = ClusterUnavailableError(message)
    error.rows = rows  # type: ignore[attr-defined]  # recorded as a table artifact
    return error


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


def check_cluster_target(spec: ExperimentSpec) -> TargetCheck:
    """Check a cluster run before anything is submitted.

    In order: the trainable can be sent (importable by reference), the runtime_env follows
    the rules, the cluster is in the registry and online (all clusters are probed at once,
    so the error shows the whole availability table), ``cpu_per_trial`` fits on one node,
    and the cluster accepts its token.

    Args:
        spec: The experiment, with a ``cluster:<name>`` target.

    Returns:
        The target's ``TargetCheck``: resources, ``cpu_cap`` (cpu_per_node),
        ``gpu_per_cpu``, the results root (the registry's ``results_root``, else the local
        results root) and the availability rows.

    Raises:
        ClusterUnavailableError: The cluster is unknown or offline (``.rows`` holds the table).
        RadasValueError: The trainable, runtime_env or cpu_per_trial cannot run there.
        ClusterAuthError: The cluster's token is missing or rejected.

    Example:
        >>> check = check_cluster_target(spec)  # doctest: +SKIP
        >>> check.cpu_cap, check.gpu_per_cpu  # doctest: +SKIP
        (64.0, 0.125)
    """
    from radas_flows.availability import TargetCheck
    from radas_flows.core import results_root

    name = spec.target.cluster
    assert name is not None, "check_cluster_target needs a cluster target"
    check_trainable_for_cluster(spec)
    merge_runtime_env(spec.runtime_env, spec.cwd)
    clusters = load_registry()
    statuses = probe_clusters(timeout=2.0)
    text = format_availability(statuses)
    rows = _rows_with_specs(statuses, clusters)
    try:
        cluster = get_cluster(name)
    except RegistryError as e:
        raise _unavailable(f"{e}\n\n{text}", rows) from e
    status = next(s for s in statuses if s.name == name)
    if not status.online:
        raise _unavailable(
            f"Cluster {name!r} is offline ({status.error}). Pick an online cluster from the "
            f"list, or try again later.\n\n{text}",
            rows,
        )
    check_cpu_per_trial(spec.cpu_per_trial, float(cluster.cpu_per_node), cpu_cap_name(spec.target))
    job_client(cluster)  # the token is read and checked here, before any submission
    return TargetCheck(
        target=str(spec.target),
        online=True,
        cpus_total=status.cpus_total,
        gpus_total=status.gpus_total,
        cpu_cap=float(cluster.cpu_per_node),
        gpu_per_cpu=cluster.gpu_per_cpu,
        results_root=cluster.results_root or results_root(),
        rows=rows,
    )
