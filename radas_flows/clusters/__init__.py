"""Named Ray clusters: the registry, availability probes and the Jobs API plumbing."""

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
