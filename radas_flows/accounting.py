"""Accounting: the CPU-hours and GPU-hours a sweep used, per cluster, from its trials' durations.

Each execution of a trial (the sweep's own, and each out-of-memory re-run) counts its duration
(Tune's ``time_total_s`` of its last result) times the CPUs and GPUs it had (its stored
resource request; a restored trial keeps the resources it was created with). An
execution that reported nothing counts 0 s: its duration is not known. Executions that ran out
of memory are summed apart, so the report can say what share went to them. A trial that
completed on a cluster the sweep later moved away from counts there (its record in
``radas_done``), not where it was given back its metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Usage", "execution_seconds", "sum_usage", "sweep_usage", "usage_rows", "usage_text"]


@dataclass
class Usage:
    """What one cluster gave one sweep (or a night of sweeps)."""

    cluster: str
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    oom_cpu_hours: float = 0.0
    oom_gpu_hours: float = 0.0
    executions: int = 0

    @property
    def oom_share(self) -> float:
        """The share of CPU-hours (GPU-hours on a GPU sweep) spent on out-of-memory trials."""
        if self.gpu_hours > 0:
            return self.oom_gpu_hours / self.gpu_hours
        return self.oom_cpu_hours / self.cpu_hours if self.cpu_hours > 0 else 0.0

    def add(self, seconds: float, cpu: float, gpu: float, *, oom: bool) -> None:
        hours = max(seconds, 0.0) / 3600.0
        self.cpu_hours += hours * cpu
        self.gpu_hours += hours * gpu
        if oom:
            self.oom_cpu_hours += hours * cpu
            self.oom_gpu_hours += hours * gpu
        self.executions += 1


def execution_seconds(trial: Any) -> float:
    """How long one Tune trial ran: ``time_total_s`` of its last result (0 when unknown)."""
    try:
        value = (trial.last_result or {}).get("time_total_s")
    except Exception:
        return 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def sweep_usage(
    executions: Iterable[tuple[Any, float, str]],
    *,
    cluster: str,
    gpu_per_cpu: Mapping[str, float],
    earlier: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Usage]:
    """Sum ``(Tune trial, its CPUs, its outcome)`` executions per cluster.

    Args:
        executions: Every execution of every trial, with the CPUs it had and its outcome
            (``completed``, ``oom``, ``error``, ``unfinished``).
        cluster: Where the sweep ran last (``local`` or a cluster's name).
        gpu_per_cpu: GPUs per CPU of each cluster the sweep ran on.
        earlier: By trial id, the completion records of trials that completed on a cluster
            the sweep moved away from (``{"cluster", "seconds", "cpu", "gpu"}``).
    """
    from radas_flows.oom.policy import gpu_share

    usage: dict[str, Usage] = {}
    for trial, cpu, outcome in executions:
        record = (earlier or {}).get(getattr(trial, "trial_id", ""))
        if record is not None and record.get("cluster") not in (None, cluster):
            where = str(record["cluster"])
            seconds = float(record.get("seconds") or 0.0)
            cpu, gpu = float(record.get("cpu") or cpu), float(record.get("gpu") or 0.0)
        else:
            where, seconds = cluster, execution_seconds(trial)
            stored = _trial_gpus(trial)
            if stored is not None:
                gpu = stored
            else:
                gpu = gpu_share(cpu, gpu_per_cpu.get(cluster, 0.0)) if cpu > 0 else 0.0
        usage.setdefault(where, Usage(where)).add(seconds, cpu, gpu, oom=outcome == "oom")
    return list(usage.values())


def _trial_gpus(trial: Any) -> float | None:
    """The GPUs a Tune trial was given (its stored resource request), or None when unknown."""
    try:
        required = trial.placement_group_factory.required_resources
    except Exception:
        return None
    return float(required.get("GPU", 0.0))


def sum_usage(groups: Iterable[Iterable[Mapping[str, Any]]]) -> list[Usage]:
    """Sum usage rows (as :func:`usage_rows` writes them) per cluster, e.g. over a night."""
    total: dict[str, Usage] = {}
    for rows in groups:
        for row in rows:
            name = str(row.get("cluster", "?"))
            into = total.setdefault(name, Usage(name))
            for key in ("cpu_hours", "gpu_hours", "oom_cpu_hours", "oom_gpu_hours"):
                setattr(into, key, getattr(into, key) + float(row.get(key) or 0.0))
            into.executions += int(row.get("executions") or 0)
    return list(total.values())


def usage_rows(usages: Iterable[Usage]) -> list[dict[str, Any]]:
    """One JSON-able row per cluster (the usage table artifact)."""
    return [{**asdict(u), "oom_share": round(u.oom_share, 4)} for u in usages]


def usage_text(usages: Iterable[Usage]) -> str:
    """One line per cluster, for the summary and the email.

    Example:
        >>> print(usage_text([Usage("gpu-a", 1.5, 0.75, 0.15, 0.075, 4)]))
        gpu-a: 1.5 CPU-hours, 0.75 GPU-hours (10.0% on trials that ran out of memory)
    """
    lines = []
    for u in usages:
        text = f"{u.cluster}: {u.cpu_hours:.4g} CPU-hours, {u.gpu_hours:.4g} GPU-hours"
        lines.append(f"{text} ({100 * u.oom_share:.1f}% on trials that ran out of memory)")
    return "\n".join(lines)


def done_records(experiment_path: str) -> dict[str, dict[str, Any]]:
    """The completion records of an experiment's trials (``radas_done/*.json``), by trial id."""
    from radas_flows._done_trials import DONE_DIR
    from radas_flows.storage import Storage

    folder = Storage(experiment_path).child(DONE_DIR)
    records: dict[str, dict[str, Any]] = {}
    try:
        names = _names(folder)
    except Exception:
        return records
    for name in names:
        text = folder.child(name).read_text()
        try:
            data = json.loads(text or "")
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("trial_id"), str):
            records[data["trial_id"]] = data
    return records


def _names(folder: Any) -> list[str]:
    import os

    if not folder.is_remote:
        return sorted(os.listdir(folder.path)) if os.path.isdir(folder.path) else []
    import pyarrow.fs

    fs, path = folder._fs()
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    return sorted(info.base_name for info in infos if info.type == pyarrow.fs.FileType.File)
