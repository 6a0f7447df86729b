"""Completed trials, recorded as they complete: where each ran, how long, with what resources.

The driver records each completed trial in ``<experiment>/radas_done/<trial id>.json`` at once
(its last metrics, the cluster, its duration, CPUs and GPUs), so the accounting of a sweep that
moved between clusters names the cluster each trial completed on (see
:mod:`radas_flows.accounting`). A restore keeps those trials through Tune's own state instead
(see :mod:`radas_flows._completion_journal`).
"""

from __future__ import annotations

import json
import math
from typing import Any

from radas_flows.storage import Storage

__all__ = ["DONE_DIR", "read_done", "record_done"]

DONE_DIR = "radas_done"


#: Keys Tune fills in itself (besides ray.tune.result.AUTO_RESULT_KEYS): never given back.
_TUNE_KEYS = frozenset({"done", "trial_id", "experiment_tag", "should_checkpoint"})


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    from ray.tune.result import AUTO_RESULT_KEYS

    kept: dict[str, Any] = {}
    for key, value in metrics.items():
        if key in AUTO_RESULT_KEYS or key in _TUNE_KEYS:
            continue
        finite = isinstance(value, float) and math.isfinite(value)
        if finite or value is None or isinstance(value, bool | int | str):
            kept[key] = value
    return kept


def record_done(
    experiment_path: str, trial: Any, placement: str = "", resources: dict[str, float] | None = None
) -> None:
    """Record that ``trial`` completed: its last metrics, where, how long, with what."""
    result = dict(trial.last_result or {})
    try:
        required = dict(trial.placement_group_factory.required_resources)
    except Exception:  # a trial without a stored resource request
        required = {k.upper(): v for k, v in (resources or {}).items()}
    record = {
        "trial_id": trial.trial_id,
        "metrics": _plain(result),
        "cluster": placement or None,
        "seconds": float(result.get("time_total_s") or 0.0),
        "cpu": float(required.get("CPU") or 0.0),
        "gpu": float(required.get("GPU") or 0.0),
    }
    done = Storage(experiment_path).child(DONE_DIR).child(f"{trial.trial_id}.json")
    if done.read_text() is None:  # a trial given back its metrics keeps its first record
        done.write_text(json.dumps(record))


def read_done(experiment_path: str, trial_id: str) -> dict[str, Any] | None:
    """The metrics a completed trial recorded, or None when it did not complete."""
    text = Storage(experiment_path).child(DONE_DIR).child(f"{trial_id}.json").read_text()
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("trial_id") != trial_id:
        return None
    metrics = data.get("metrics")
    return _plain(metrics) if isinstance(metrics, dict) else None
