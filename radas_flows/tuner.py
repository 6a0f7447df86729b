"""``radas_flows.Tuner``: the results of one experiment, as Ray's ResultGrid and as DataFrames."""

from __future__ import annotations

import re
from typing import Any

# Tune's bookkeeping columns; get_brief_dataframe() drops them (config/* and metrics stay).
BOOKKEEPING_COLUMNS: frozenset[str] = frozenset(
    {
        "timestamp",
        "date",
        "pid",
        "hostname",
        "node_ip",
        "logdir",
        "path",
        "done",
        "should_checkpoint",
        "checkpoint_dir_name",
        "experiment_tag",
        "experiment_id",
        "timesteps_total",
        "episodes_total",
        "timesteps_since_restore",
        "iterations_since_restore",
        "trial_path",
        "trial_dir",
    }
)
_BOOKKEEPING_PREFIXES: tuple[str, ...] = ("time_", "warmup_time", "config/__")
_TRIAL_ID_RE = re.compile(r"_([0-9a-f]{5}_[0-9]{5})_")


def is_bookkeeping_column(name: str) -> bool:
    """True for Tune's bookkeeping columns (timestamps, host, pid, paths, time_*...).

    Example:
        >>> [is_bookkeeping_column(c) for c in ("time_total_s", "config/lr", "accuracy")]
        [True, False, False]
    """
    return name in BOOKKEEPING_COLUMNS or name.startswith(_BOOKKEEPING_PREFIXES)


def trial_id_of(result: Any) -> str:
    """The Tune trial id of a ``ray.tune.Result`` (from its metrics, else its folder name)."""
    metrics = result.metrics or {}
    if metrics.get("trial_id"):
        return str(metrics["trial_id"])
    match = _TRIAL_ID_RE.search(str(result.path))
    return match.group(1) if match else str(result.path).rstrip("/").rsplit("/", 1)[-1]


class Tuner:
    """The results of one radas experiment.

    Wraps Ray Tune's ``ResultGrid`` (``get_results()``) and adds the DataFrames radas users
    analyze: every reported row of every trial (``get_dataframe()``) and the same without Tune's
    bookkeeping columns (``get_brief_dataframe()``).

    Example:
        >>> from radas_flows import run_experiment_sync
        >>> def trainable(config):
        ...     return {"score": config["a"] * 2}
        >>> results = run_experiment_sync(  # doctest: +SKIP
        ...     user_name="me", trainable=trainable, experiment_name="doc",
        ...     param_space={"a": {"grid_search": [1, 2]}}, run_choice="run")
        >>> results["tuner"].get_brief_dataframe()[["config/a", "score"]]  # doctest: +SKIP
    """

    def __init__(self, result_grid: Any, *, experiment_path: str | None = None) -> None:
        self._result_grid = result_grid
        self.experiment_path = experiment_path or str(result_grid.experiment_path)

    @classmethod
    def from_path(cls, path: str, *, storage_filesystem: Any = None) -> Tuner:
        """Read a stored experiment back (no Ray cluster and no trainable needed)."""
        from ray.tune import ExperimentAnalysis, ResultGrid

        analysis = ExperimentAnalysis(path, storage_filesystem=storage_filesystem)
        return cls(ResultGrid(analysis), experiment_path=path)

    def get_results(self) -> Any:
        """Ray Tune's ``ResultGrid`` with every trial's result."""
        return self._result_grid

    @property
    def num_trials(self) -> int:
        return len(self._result_grid)

    @property
    def num_errors(self) -> int:
        return int(self._result_grid.num_errors)

    def trial_outcomes(self) -> list[dict[str, Any]]:
        """One entry per trial: trial_id, status (``TERMINATED`` or ``ERROR``), config, error."""
        outcomes = []
        for result in self._result_grid:
            outcomes.append(
                {
                    "trial_id": trial_id_of(result),
                    "status": "ERROR" if result.error else "TERMINATED",
                    "config": dict(result.config or {}),
                    "error": None if result.error is None else _error_text(result.error),
                    "path": str(result.path),
                }
            )
        return outcomes

    def get_dataframe(self) -> Any:
        """Every reported result of every trial, one row per report, with ``config/*`` columns.

        ``trial_status`` says how each trial ended (``TERMINATED`` or ``ERROR``); a trial that
        ended in error before reporting anything still has one row, with its config and no
        metrics, so every configuration appears.
        """
        import pandas as pd

        frames = []
        for result in self._result_grid:
            history = result.metrics_dataframe
            if history is None or history.empty:
                reported = {} if result.error else _flat_metrics(result.metrics or {})
                history = pd.DataFrame([reported])
            history = history.copy()
            history["trial_id"] = trial_id_of(result)
            history["trial_status"] = "ERROR" if result.error else "TERMINATED"
            for key, value in _flatten("config", result.config or {}).items():
                if key not in history.columns:
                    history[key] = [value] * len(history)
            frames.append(history)
        if not frames:
            return pd.DataFrame()
        df = pd.concat(frames, ignore_index=True, sort=False)
        config_cols = sorted(c for c in df.columns if c.startswith("config/"))
        first = [c for c in ("trial_id", "trial_status", "training_iteration") if c in df.columns]
        rest = [c for c in df.columns if c not in config_cols and c not in first]
        return df[first + config_cols + rest]

    def get_brief_dataframe(self) -> Any:
        """``get_dataframe()`` without Tune's bookkeeping columns."""
        df = self.get_dataframe()
        return df[[c for c in df.columns if not is_bookkeeping_column(str(c))]]

    def __repr__(self) -> str:
        return f"Tuner(experiment_path={self.experiment_path!r}, trials={self.num_trials})"


def _flatten(prefix: str, node: Any) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(f"{prefix}/{key}", value))
        return out
    return {prefix: node}


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if key == "config":
            continue
        if isinstance(value, dict):
            out.update(_flatten(key, value))
        else:
            out[key] = value
    return out


def _error_text(error: BaseException) -> str:
    text = str(error)
    return text if text else type(error).__name__
