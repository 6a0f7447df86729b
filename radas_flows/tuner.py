"""``radas_flows.Tuner``: the results of one experiment, as Ray's ResultGrid and as DataFrames."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from radas_flows.oom.merge import load_analysis, merged_trials, trial_cpus
from radas_flows.oom.rounds import OomRound, read_manifest
from radas_flows.storage import Storage

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
#: Where a stop can leave a trial: not completed, not errored.
_UNFINISHED: frozenset[str] = frozenset({"PENDING", "RUNNING", "PAUSED"})


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

    def __init__(
        self,
        result_grid: Any,
        *,
        experiment_path: str | None = None,
        trial_cpus: Mapping[str, float] | None = None,
        oom_rounds: Sequence[OomRound] = (),
    ) -> None:
        self._result_grid = result_grid
        self.experiment_path = experiment_path or str(result_grid.experiment_path)
        self._trial_cpus = dict(trial_cpus) if trial_cpus is not None else None
        #: The out-of-memory re-run rounds merged into this view (empty: none).
        self.oom_rounds: list[OomRound] = list(oom_rounds)
        #: Set when the results could not be stored and were read from a copy on this machine:
        #: ``{"stored_at": ..., "reason": ..., "copy": ...}``.
        self.rescue: dict[str, str] | None = None

    @classmethod
    def from_path(
        cls, path: str, *, storage_filesystem: Any = None, merge_rounds: bool = True
    ) -> Tuner:
        """Read a stored experiment back (no Ray cluster and no trainable needed).

        When trials of the experiment were re-run after running out of memory, the re-run
        rounds are merged in (see :meth:`merged` and :mod:`radas_flows.oom.merge`), unless
        ``merge_rounds=False``.
        """
        from ray.tune import ResultGrid

        experiment = Storage(path, storage_filesystem)
        manifest = read_manifest(experiment) if merge_rounds else None
        analysis = load_analysis(experiment)
        if manifest is None or not manifest.rounds:
            return cls(ResultGrid(analysis), experiment_path=path)
        trials = merged_trials(experiment, analysis.trials, manifest)
        return cls.merged(
            path,
            trials,
            storage_filesystem=storage_filesystem,
            metric=manifest.metric,
            mode=manifest.mode,
            oom_rounds=manifest.rounds,
        )

    @classmethod
    def merged(
        cls,
        path: str,
        trials: Sequence[Any],
        *,
        storage_filesystem: Any = None,
        metric: str | None = None,
        mode: str | None = None,
        oom_rounds: Sequence[OomRound] = (),
    ) -> Tuner:
        """One view of an experiment and its out-of-memory re-run rounds.

        ``get_results()`` is a real ``ray.tune.ResultGrid`` holding one ``Result`` per trial
        config of the original sweep: its final execution (the one that completed, else the
        last), whichever round ran it; ``Result.path`` points into that round's folder and
        ``experiment_path`` is the original experiment's. The DataFrames gain a
        ``cpu_per_trial`` column: the CPUs each trial's final execution had.

        Args:
            path: The original experiment's path (it must hold Tune's experiment state).
            trials: The Tune trials to show, one per config.
            storage_filesystem: The pyarrow filesystem of remote storage, if any.
            metric: Default metric of ``get_best_result()``.
            mode: Default mode of ``get_best_result()``.
            oom_rounds: The rounds merged in (kept as ``oom_rounds``).
        """
        from ray.tune import ExperimentAnalysis, ResultGrid

        analysis = ExperimentAnalysis(
            path,
            storage_filesystem=storage_filesystem,
            trials=list(trials),
            default_metric=metric,
            default_mode=mode,
        )
        cpus = {trial.trial_id: trial_cpus(trial) for trial in trials}
        return cls(
            ResultGrid(analysis),
            experiment_path=path,
            trial_cpus={k: v for k, v in cpus.items() if v is not None},
            oom_rounds=oom_rounds,
        )

    def trials(self) -> list[Any]:
        """Tune's ``Trial`` objects behind ``get_results()``, in the same order."""
        analysis = getattr(self._result_grid, "_experiment_analysis", None)
        return list(analysis.trials) if analysis is not None else []

    def _rows(self) -> list[tuple[Any, str, dict[str, Any], str]]:
        """Each result with its trial id, config and status, from Tune's trials where known.

        A trial that failed before reporting may have no config in its ``Result``; its
        ``Trial`` always has one. The status is ``ERROR``, ``TERMINATED``, or where a stop
        left the trial: a stopped experiment keeps trials that never started (``PENDING``) or
        were cut off (``RUNNING``, ``PAUSED``); Tune's stored state says so, and they are not
        completed.
        """
        results = list(self._result_grid)
        trials = self.trials()
        if len(trials) != len(results):
            trials = [None] * len(results)
        rows = []
        for result, trial in zip(results, trials, strict=True):
            if trial is None:
                trial_id, config = trial_id_of(result), result.config or {}
            else:
                trial_id, config = str(trial.trial_id), result.config or trial.config or {}
            stored = str(getattr(trial, "status", "") or "")
            if result.error:
                status = "ERROR"
            elif stored in _UNFINISHED:
                status = stored
            else:
                status = "TERMINATED"
            rows.append((result, trial_id, config, status))
        return rows

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
        """One entry per trial: trial_id, status, config, error.

        The status is ``TERMINATED`` (completed), ``ERROR``, or for a stopped experiment
        ``PENDING`` / ``RUNNING`` / ``PAUSED`` (never started, or cut off by the stop).
        """
        outcomes: list[dict[str, Any]] = []
        for result, trial_id, config, status in self._rows():
            outcome: dict[str, Any] = {
                "trial_id": trial_id,
                "status": status,
                "config": dict(config),
                "error": None if result.error is None else _error_text(result.error),
                "path": str(result.path),
            }
            if self._trial_cpus is not None:
                outcome["cpu_per_trial"] = self._trial_cpus.get(outcome["trial_id"])
            outcomes.append(outcome)
        return outcomes

    def get_dataframe(self) -> Any:
        """Every reported result of every trial, one row per report, with ``config/*`` columns.

        ``trial_status`` says how each trial ended (``TERMINATED``, ``ERROR``, or after a stop
        ``PENDING`` / ``RUNNING`` / ``PAUSED``, as :meth:`trial_outcomes`); a trial that
        ended in error before reporting anything still has one row, with its config and no
        metrics, so every configuration appears.
        """
        import pandas as pd

        from radas_flows._frames import trials_frame

        histories, ids, statuses, configs = [], [], [], []
        for result, trial_id, config, status in self._rows():
            history = result.metrics_dataframe
            if history is None or 0 in history.shape:  # no rows or no columns (`.empty`)
                reported = {} if result.error else _flat_metrics(result.metrics or {})
                history = pd.DataFrame([reported])
            histories.append(history)
            ids.append(trial_id)
            statuses.append(status)
            configs.append(_flatten("config", config))
        if not histories:
            return pd.DataFrame()
        cpus = self._trial_cpus.get if self._trial_cpus is not None else None
        df = trials_frame(histories, ids, statuses, configs, cpus)
        config_cols = sorted(c for c in df.columns if c.startswith("config/"))
        leading = ("trial_id", "trial_status", "cpu_per_trial", "training_iteration")
        first = [c for c in leading if c in df.columns]
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
