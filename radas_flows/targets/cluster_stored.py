"""A cluster experiment's stored results, read from this machine without asking the cluster."""

from __future__ import annotations

from pathlib import Path

from radas_flows.clusters.registry import get_cluster
from radas_flows.core import cluster_results_root
from radas_flows.storage import is_uri
from radas_flows.targets.base import ClusterUnavailableError, TargetCheck

__all__ = ["stored_results_check"]


def stored_results_check(name: str, dos: tuple[str, ...]) -> TargetCheck:
    """The check of an analysis-only run: the registry's results root, and nothing asked.

    The results of a cluster run are always read back from this machine (a shared folder
    mounted at the same path, or an ``s3://`` root), so analyzing them needs the registry
    entry only: the cluster may be offline or gone.

    Raises:
        RegistryError: The registry names no cluster ``name``.
        ClusterUnavailableError: The results root is a folder this machine does not have.
    """
    cluster = get_cluster(name)
    root = cluster_results_root(name)
    row = {
        "cluster": name,
        "status": "not contacted",
        "hint": cluster.hint,
        "note": f"dos={list(dos)}: stored results are read from {root}",
    }
    if not is_uri(root) and not Path(root).is_dir():
        row["note"] = f"results_root {root} is not a folder on this machine"
        raise ClusterUnavailableError(
            f"dos={list(dos)} reads the stored results of cluster {name!r} from this machine, "
            f"but its results_root {root!r} is not a folder here. Mount it here at the same "
            "path, or give the cluster an s3:// results_root, then analyze again.",
            [row],
        )
    return TargetCheck(
        target=f"cluster:{name}",
        online=False,  # not asked
        cpus_total=None,
        gpus_total=None,
        cpu_cap=float(cluster.cpu_per_node),
        gpu_per_cpu=cluster.gpu_per_cpu,
        results_root=root,
        rows=[row],
    )
