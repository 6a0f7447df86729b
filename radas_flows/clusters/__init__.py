"""Named Ray clusters: the registry, availability probes and the Jobs API plumbing."""

import importlib
from typing import Any

from radas_flows.clusters.availability import (
    ClusterStatus,
    availability_rows,
    format_availability,
    get_cluster_availability,
    probe_clusters,
)
from radas_flows.clusters.credentials import ClusterRedirectError
from radas_flows.clusters.registry import (
    ClusterAuthError,
    ClusterConfig,
    RegistryError,
    get_cluster,
    load_registry,
    registry_path,
)

__all__ = [
    "ClusterAuthError",
    "ClusterConfig",
    "ClusterRedirectError",
    "ClusterStatus",
    "RegistryError",
    "availability_rows",
    "format_availability",
    "get_cluster",
    "get_cluster_availability",
    "load_registry",
    "probe_clusters",
    "registry_path",
]

#: Submodules reachable as attributes (``radas_flows.clusters.addresses``), imported on first use.
_SUBMODULES: tuple[str, ...] = (
    "addresses",
    "availability",
    "blocks",
    "config",
    "credentials",
    "entry",
    "heartbeat",
    "job_log",
    "job_package",
    "jobs",
    "log_tail",
    "registry",
    "tenancy",
    "upload",
)


def __getattr__(name: str) -> Any:
    """Load a submodule on first use (PEP 562)."""
    if name not in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES))
