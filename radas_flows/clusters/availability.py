"""Cluster availability: concurrent probes of the registry's clusters and the spec's status text."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.error
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from radas_flows.clusters.credentials import ClusterRedirectError, auth_headers, get
from radas_flows.clusters.registry import (
    ClusterAuthError,
    ClusterConfig,
    get_cluster,
    load_registry,
    registry_path,
)

__all__ = [
    "AVAILABILITY_HEADER",
    "ClusterStatus",
    "availability_rows",
    "format_availability",
    "get_cluster_availability",
    "parse_cluster_status",
    "probe_clusters",
]

AVAILABILITY_HEADER = (
    "All available clusters are listed below, with status and suggestions of when to use "
    "which cluster:"
)
"""The first line of :func:`get_cluster_availability`'s text."""

_HEALTH_PATH = "/api/gcs_healthz"  # public in Ray 2.60: answers without a token
_STATUS_PATH = "/api/cluster_status"  # needs the token; resource usage of the whole cluster
_LEGACY_RE = {
    "CPU": re.compile(r"([\d.]+)/([\d.]+) CPU\b"),
    "GPU": re.compile(r"([\d.]+)/([\d.]+) GPU\b"),
}


@dataclass(frozen=True)
class ClusterStatus:
    """What a probe found out about one cluster.

    Attributes:
        name: The cluster's name (``"local"`` for this machine).
        online: Whether the cluster's dashboard answered its health check.
        hint: The registry's suggestion of when to use the cluster.
        address: The Jobs API address (``None`` for this machine).
        cpus_total: CPUs in the cluster, when known.
        cpus_free: CPUs not in use, when known.
        gpus_total: GPUs in the cluster, when known.
        gpus_free: GPUs not in use, when known.
        error: Why the cluster is offline, or why its resources are unknown.

    Example:
        >>> status = probe_clusters(["atol-gpu-5090"])[0]  # doctest: +SKIP
        >>> status.online, status.gpus_free  # doctest: +SKIP
        (True, 6.0)
    """

    name: str
    online: bool
    hint: str
    address: str | None = None
    cpus_total: float | None = None
    cpus_free: float | None = None
    gpus_total: float | None = None
    gpus_free: float | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        """``"online"`` or ``"offline"``."""
        return "online" if self.online else "offline"


def parse_cluster_status(payload: Any) -> dict[str, float] | None:
    """Extract total and free CPUs/GPUs from the dashboard's ``/api/cluster_status`` answer.

    Reads ``data.clusterStatus.loadMetricsReport.usage`` (``{"CPU": [used, total], ...}``),
    falling back to the ``ResourceUsage`` line of ``data.autoscalingStatus``.

    Args:
        payload: The decoded JSON answer.

    Returns:
        ``{"cpus_total", "cpus_free", "gpus_total", "gpus_free"}``, or ``None`` when the
        answer holds no resource usage.

    Example:
        >>> parse_cluster_status({"data": {"clusterStatus": {"loadMetricsReport": {
        ...     "usage": {"CPU": [1.0, 4.0], "GPU": [0.5, 2.0]}}}}})
        {'cpus_total': 4.0, 'cpus_free': 3.0, 'gpus_total': 2.0, 'gpus_free': 1.5}
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return None
    found: dict[str, tuple[float, float]] = {}
    status = data.get("clusterStatus")
    usage = None
    if isinstance(status, dict):
        report = status.get("loadMetricsReport")
        if isinstance(report, dict):
            usage = report.get("usage")
    if isinstance(usage, dict):
        for resource in ("CPU", "GPU"):
            pair = usage.get(resource)
            if isinstance(pair, list | tuple) and len(pair) == 2:
                with contextlib.suppress(TypeError, ValueError):
                    found[resource] = (float(pair[0]), float(pair[1]))
    if "CPU" not in found and isinstance(data.get("autoscalingStatus"), str):
        for resource, pattern in _LEGACY_RE.items():
            match = pattern.search(data["autoscalingStatus"])
            if match:
                found[resource] = (float(match.group(1)), float(match.group(2)))
    if "CPU" not in found:
        return None
    cpu_used, cpu_total = found["CPU"]
    gpu_used, gpu_total = found.get("GPU", (0.0, 0.0))
    return {
        "cpus_total": cpu_total,
        "cpus_free": max(cpu_total - cpu_used, 0.0),
        "gpus_total": gpu_total,
        "gpus_free": max(gpu_total - gpu_used, 0.0),
    }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Probe:
    """The progress of one probe, shared between its thread and the caller."""

    cluster: ClusterConfig
    online: bool = False
    resources: dict[str, float] | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    headers: dict[str, str] = field(default_factory=dict)
    auth_error: str | None = None

    def prepare(self) -> None:
        """Read the token in the caller's thread, where a plain-http warning reaches the run log."""
        try:
            self.headers = auth_headers(self.cluster)
        except ClusterAuthError as e:
            self.auth_error = str(e)

    def run(self, timeout: float) -> None:
        try:
            self._run(timeout)
        except Exception as e:  # a probe never raises; it reports
            self.error = self.error or _reason(e)
        finally:
            self.done.set()

    def _run(self, timeout: float) -> None:
        base = self.cluster.address
        try:
            code, _ = get(self.cluster, base + _HEALTH_PATH, {}, timeout)
            if code == 404:  # a dashboard without the public health check: any answer will do
                code, _ = get(self.cluster, base + "/api/version", {}, timeout)
                code = 200 if code in (200, 401, 403) else code
        except ClusterRedirectError as e:
            self.error = str(e)
            return
        except (OSError, ValueError) as e:
            self.error = f"{_reason(e)} at {base}"
            return
        if code != 200:
            self.error = f"health check at {base} answered HTTP {code}"
            return
        self.online = True
        if self.auth_error is not None:
            self.error = self.auth_error
            return
        try:
            code, body = get(self.cluster, base + _STATUS_PATH, self.headers, timeout)
        except ClusterRedirectError as e:
            self.error = f"online, but {e}"
            return
        if code in (401, 403):
            self.error = (
                f"online, but it {'needs' if code == 401 else 'rejected'} the auth token "
                f"(HTTP {code}); check the token of {self.cluster.where}"
            )
            return
        if code != 200:
            self.error = f"online, but {_STATUS_PATH} answered HTTP {code}"
            return
        self.resources = parse_cluster_status(json.loads(body))
        if self.resources is None:
            self.error = "online, but it reported no resource usage yet"

    def result(self, timeout: float) -> ClusterStatus:
        resources = self.resources or {}
        error = self.error
        if not self.done.is_set() and error is None:
            error = (
                f"no answer within {timeout:g} s at {self.cluster.address}"
                if not self.online
                else f"online, but its resources were not reported within {timeout:g} s"
            )
        return ClusterStatus(
            name=self.cluster.name,
            online=self.online,
            hint=self.cluster.hint,
            address=self.cluster.address,
            cpus_total=resources.get("cpus_total"),
            cpus_free=resources.get("cpus_free"),
            gpus_total=resources.get("gpus_total"),
            gpus_free=resources.get("gpus_free"),
            error=error,
        )


def probe_clusters(
    names: Iterable[str] | None = None, *, timeout: float = 2.0
) -> list[ClusterStatus]:
    """Probe clusters of the registry concurrently.

    Each cluster's dashboard is asked for its health (no token needed), then, with the
    cluster's token, for its resource usage. No redirect is followed (a cluster that answers
    with one is reported with the redirect's ``Location``; see
    :mod:`radas_flows.clusters.credentials`). All clusters are probed at once in
    threads; the call returns after at most about ``timeout`` seconds plus a little,
    reporting a cluster that has not answered by then as offline.

    Args:
        names: The clusters to probe; all clusters of the registry by default.
        timeout: Seconds to wait for the clusters' answers.

    Returns:
        One :class:`ClusterStatus` per cluster, in the order asked (registry order by default).

    Raises:
        RegistryError: The registry is malformed, or a name is not in it.

    Example:
        >>> for s in probe_clusters():  # doctest: +SKIP
        ...     print(s.name, s.status, s.cpus_free, s.gpus_free)
        atol-gpu-5090 online 48.0 6.0
    """
    if names is None:
        clusters = list(load_registry().values())
    else:
        clusters = [get_cluster(name) for name in names]
    probes = [_Probe(cluster) for cluster in clusters]
    for probe in probes:
        probe.prepare()
        threading.Thread(
            target=probe.run, args=(timeout,), name=f"probe-{probe.cluster.name}", daemon=True
        ).start()
    deadline = time.monotonic() + timeout + 0.25
    for probe in probes:
        probe.done.wait(max(deadline - time.monotonic(), 0.0))
    return [probe.result(timeout) for probe in probes]


def format_availability(statuses: Sequence[ClusterStatus]) -> str:
    """Write probe results in the spec's text format.

    Example:
        >>> print(format_availability([ClusterStatus("gcp-cpu", True, "CPU jobs")]))
        All available clusters are listed below, with status and suggestions of when to use which cluster:
        - [status: online] gcp-cpu: CPU jobs
    """  # noqa: E501
    lines = [AVAILABILITY_HEADER]
    lines += [f"- [status: {s.status}] {s.name}: {s.hint}" for s in statuses]
    return "\n".join(lines)


def get_cluster_availability(*, timeout: float = 2.0) -> str:
    """Probe every registered cluster (TOML registry and ``RayCluster`` blocks) and describe them.

    Args:
        timeout: Seconds to wait for the clusters' answers (all are probed at once).

    Returns:
        The header line, then ``- [status: online|offline] <name>: <hint>`` per cluster.

    Raises:
        RegistryError: The registry is malformed.

    Example:
        >>> from radas_flows.clusters import get_cluster_availability
        >>> print(get_cluster_availability())  # doctest: +SKIP
        All available clusters are listed below, with status and suggestions of when to use which cluster:
        - [status: online] atol-gpu-5090: 32G GRAM per GPU, choose as the default choice
        - [status: offline] atol-gpu-pro6000: 96G GRAM, only when you need GRAM > 32G per GPU
    """  # noqa: E501
    statuses = probe_clusters(timeout=timeout)
    text = format_availability(statuses)
    if not statuses:
        where = registry_path()
        text += (
            f"\n- none: {where} names no cluster and there is no RayCluster block"
            if where is not None
            else "\n- none: no cluster registry found (set RADAS_CLUSTERS_FILE, or create "
            "./radas_clusters.toml or ~/.config/radas/clusters.toml) and no RayCluster block"
        )
    return text


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def availability_rows(statuses: Sequence[ClusterStatus]) -> list[dict[str, str]]:
    """Turn probe results into table rows (for a Prefect table artifact or a terminal).

    Example:
        >>> availability_rows([ClusterStatus("gcp-cpu", True, "CPU jobs", cpus_total=8.0,
        ...                                  cpus_free=2.0)])[0]["free CPUs"]
        '2'
    """
    return [
        {
            "cluster": s.name,
            "status": s.status,
            "free CPUs": _number(s.cpus_free),
            "total CPUs": _number(s.cpus_total),
            "free GPUs": _number(s.gpus_free),
            "total GPUs": _number(s.gpus_total),
            "hint": s.hint,
            "note": s.error or "",
        }
        for s in statuses
    ]
