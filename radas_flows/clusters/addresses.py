"""Per-cluster resource dicts (gpu_per_cpu, cpu_per_node, gpu_per_node) read from the registry."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Generic, TypeVar

from radas_flows.clusters.registry import ClusterConfig, load_registry, registry_path, with_blocks

__all__ = ["cpu_per_node", "gpu_per_cpu", "gpu_per_node"]

V = TypeVar("V", int, float)

_lock = threading.Lock()
_cache: tuple[tuple[str, int] | None, dict[str, ClusterConfig]] | None = None


def _clusters() -> dict[str, ClusterConfig]:
    """Return the current registry and blocks, re-reading the file only when it changed."""
    global _cache
    path: Path | None = registry_path()
    key = (str(path), path.stat().st_mtime_ns) if path is not None else None
    with _lock:
        cached = _cache[1] if _cache is not None and _cache[0] == key else None
    if cached is None:
        cached = load_registry(path) if path is not None else {}
        with _lock:
            _cache = (key, cached)
    return with_blocks(cached, path)


class RegistryField(Mapping[str, V], Generic[V]):
    """A read-only ``{cluster name: value}`` view of one field of the cluster registry.

    It reads the registry that :func:`~radas_flows.clusters.registry.registry_path` finds
    when it is used (the file is parsed again only when its path or modification time
    changes), and the ``RayCluster`` blocks, so it always agrees with ``radas clusters`` and
    ``get_cluster``. A malformed
    registry raises :class:`~radas_flows.clusters.registry.RegistryError` on use.

    Example:
        >>> from radas_flows.clusters.addresses import gpu_per_cpu, cpu_per_node
        >>> gpu_per_cpu["atol-gpu-5090"]  # doctest: +SKIP
        0.125
        >>> cpu_per_node["atol-gpu-5090"] * gpu_per_cpu["atol-gpu-5090"]  # doctest: +SKIP
        8.0
    """

    def __init__(self, field: str, getter: Callable[[ClusterConfig], V]) -> None:
        self._field = field
        self._getter: Callable[[ClusterConfig], V] = getter

    def __getitem__(self, name: str) -> V:
        clusters = _clusters()
        if name not in clusters:
            known = ", ".join(repr(n) for n in clusters) or "none"
            raise KeyError(
                f"Unknown cluster {name!r} for {self._field}; clusters in the registry "
                f"({registry_path()}) and RayCluster blocks: {known}."
            )
        return self._getter(clusters[name])

    def __iter__(self) -> Iterator[str]:
        return iter(list(_clusters()))

    def __len__(self) -> int:
        return len(_clusters())

    def __repr__(self) -> str:
        return f"{self._field}({dict(self)!r})"


gpu_per_cpu: Mapping[str, float] = RegistryField("gpu_per_cpu", lambda c: c.gpu_per_cpu)
"""GPUs a trial gets per CPU it asks for, by cluster name."""

cpu_per_node: Mapping[str, int] = RegistryField("cpu_per_node", lambda c: c.cpu_per_node)
"""CPUs of one node, by cluster name."""

gpu_per_node: Mapping[str, int] = RegistryField("gpu_per_node", lambda c: c.gpu_per_node)
"""GPUs of one node, by cluster name."""
