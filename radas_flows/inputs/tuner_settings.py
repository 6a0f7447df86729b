"""TunerSettings: the Tune settings that travel as JSON, and the Tuner arguments they build."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from radas_flows.inputs.search import (
    NEEDS_METRIC,
    RESERVED_KWARGS,
    SchedulerName,
    SearchAlgName,
    build_scheduler,
    build_search_alg,
    check_search_space,
)

__all__ = ["TunerSettings", "build_tuner_init_kwargs", "run_config_notes"]


class TunerSettings(BaseModel):
    """Tune settings that travel as JSON: trial count, objective, search algorithm, scheduler.

    Example:
        >>> settings = TunerSettings(
        ...     num_samples=8, metric="score", mode="max", search_alg="optuna", scheduler="asha"
        ... )
        >>> settings.scheduler
        'asha'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_samples: int = Field(
        default=1,
        ge=1,
        description=(
            "Trials to sample from the search space; with grid_search, samples per grid point."
        ),
        examples=[1, 20],
    )
    metric: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Result key to optimize (a key the trainable reports). Needed, with mode, by every "
            "search algorithm except basic and every scheduler except fifo."
        ),
        examples=["score", "loss"],
    )
    mode: Literal["min", "max"] | None = Field(
        default=None,
        description="Whether a lower (min) or a higher (max) metric is better; set with metric.",
        examples=["max"],
    )
    max_concurrent_trials: int | None = Field(
        default=None,
        ge=1,
        description="Most trials running at once; empty lets the cluster's free CPUs decide.",
        examples=[4],
    )
    reuse_actors: bool | None = Field(
        default=None,
        description=(
            "true: always run consecutive trials in the same worker process. Empty or false: "
            "the radas default, which reuses them where it is safe (function trainables, and "
            "class trainables that implement reset_config); RADAS_REUSE_ACTORS=0 in the "
            "worker's environment turns reuse off."
        ),
        examples=[True],
    )
    search_alg: SearchAlgName | None = Field(
        default=None,
        description=(
            "Search algorithm: basic (Tune's variant generator: grid and random search; "
            "also 'variant_generator', 'random'), optuna, hyperopt (pip install "
            "'radas-flows[search]'), bayesopt (pip install bayesian-optimization). "
            "Empty means basic."
        ),
        examples=["optuna"],
    )
    search_alg_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            'Keyword arguments for the search algorithm\'s constructor, e.g. {"seed": 0} '
            'for optuna, {"n_initial_points": 5} for hyperopt. Not metric, mode or space.'
        ),
        examples=[{"seed": 0}],
    )
    scheduler: SchedulerName | None = Field(
        default=None,
        description=(
            "Trial scheduler: fifo, asha (async successive halving), hyperband, "
            "median_stopping, pbt (population based training). Empty means fifo."
        ),
        examples=["asha"],
    )
    scheduler_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            'Keyword arguments for the scheduler, e.g. {"max_t": 100, "grace_period": 10} '
            'for asha; pbt needs {"hyperparam_mutations": {...}} in the param_space grammar.'
        ),
        examples=[{"max_t": 100, "grace_period": 10, "reduction_factor": 2}],
    )
    stop: dict[str, int | float] | None = Field(
        default=None,
        description=(
            "Stop a trial once any reported value reaches its threshold, "
            'e.g. {"training_iteration": 10, "score": 0.99}.'
        ),
        examples=[{"training_iteration": 10}],
    )
    time_budget_s: float | None = Field(
        default=None,
        gt=0,
        description="Stop the whole experiment after this many seconds.",
        examples=[3600],
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_values_are_numbers(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        for key, threshold in value.items():
            if not key:
                raise ValueError("stop: an empty metric name; use e.g. {'training_iteration': 10}")
            if isinstance(threshold, bool) or (
                isinstance(threshold, float) and not math.isfinite(threshold)
            ):
                raise ValueError(
                    f"stop.{key}: the threshold must be a finite number, got {threshold!r}"
                )
        return value

    @field_validator("search_alg_kwargs", "scheduler_kwargs")
    @classmethod
    def _no_reserved_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key in RESERVED_KWARGS:
                raise ValueError(f"{key!r} is not allowed here; {RESERVED_KWARGS[key]}")
        return value

    @model_validator(mode="after")
    def _objective_is_complete(self) -> TunerSettings:
        if (self.metric is None) != (self.mode is None):
            given = "metric" if self.mode is None else "mode"
            raise ValueError(
                f"{given} is set without {'mode' if given == 'metric' else 'metric'}: "
                "set both (e.g. metric='score', mode='max') or neither"
            )
        for field, name in (("search_alg", self.search_alg), ("scheduler", self.scheduler)):
            if name in NEEDS_METRIC and self.metric is None:
                raise ValueError(
                    f"{field} {name!r} needs metric and mode: set both "
                    "(e.g. metric='score', mode='max')"
                )
        if self.search_alg_kwargs and self.search_alg is None:
            raise ValueError("search_alg_kwargs is set without search_alg: name the algorithm")
        if self.scheduler_kwargs and self.scheduler is None:
            raise ValueError("scheduler_kwargs is set without scheduler: name the scheduler")
        return self


def build_tuner_init_kwargs(
    settings: TunerSettings, *, param_space: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Build the ``tune_config`` and ``run_config`` arguments of ``ray.tune.Tuner``.

    Metric and mode go into ``TuneConfig`` only; Tune passes them on to the search algorithm
    and the scheduler. Calling this before submitting anything validates the settings
    fully (constructor arguments included). Both results are dataclasses: add storage and
    names with ``dataclasses.replace``.

    Args:
        settings: The validated tuner settings.
        param_space: When given, also check that the search algorithm can use it.

    Returns:
        ``{"tune_config": ray.tune.TuneConfig(...), "run_config": ray.tune.RunConfig(...)}``.

    Raises:
        ParameterError: A search algorithm or scheduler argument is wrong, or the search
            algorithm cannot use ``param_space``.

    Example:
        >>> kwargs = build_tuner_init_kwargs(TunerSettings(num_samples=4))
        >>> kwargs["tune_config"].num_samples
        4
    """
    from ray import tune

    if param_space is not None:
        check_search_space(settings.search_alg, param_space)
    search_alg = build_search_alg(settings.search_alg, settings.search_alg_kwargs)
    scheduler = build_scheduler(settings.scheduler, settings.scheduler_kwargs)
    tune_config = tune.TuneConfig(
        metric=settings.metric,
        mode=settings.mode,
        search_alg=search_alg,
        scheduler=scheduler,
        num_samples=settings.num_samples,
        max_concurrent_trials=settings.max_concurrent_trials,
        time_budget_s=settings.time_budget_s,
        reuse_actors=bool(settings.reuse_actors),
    )
    run_config = tune.RunConfig(stop=dict(settings.stop) if settings.stop else None)
    return {"tune_config": tune_config, "run_config": run_config}


def run_config_notes(run_config: Any, full_name: str) -> list[str]:
    """Warnings for the ``RunConfig`` fields radas_flows sets itself (name, storage).

    radas_flows names every Tune experiment after ``experiment_name`` and stores it under its
    results root, so that ``run_choice``, restore and analysis find it; a user's ``name``,
    ``storage_path`` or ``storage_filesystem`` is therefore not used. Everything else of the
    ``RunConfig`` (stop, callbacks, checkpoints, failure config, ``verbose``...) is kept.

    Args:
        run_config: The user's ``ray.tune.RunConfig`` (or None).
        full_name: The experiment's prefixed, sanitized name.

    Returns:
        One text per field that will not be used, saying what is used instead.

    Example:
        >>> from ray import tune
        >>> [note] = run_config_notes(tune.RunConfig(name="mine"), "_p_lr")
        >>> note[:68]
        "tuner_init_kwargs['run_config'].name='mine' is not used: radas_flows"
    """
    if run_config is None:
        return []
    import os

    from ray.train.constants import DEFAULT_STORAGE_PATH

    where = "tuner_init_kwargs['run_config']"
    notes = []
    if run_config.name is not None and run_config.name != full_name:
        notes.append(
            f"{where}.name={run_config.name!r} is not used: radas_flows names the Tune "
            f"experiment after experiment_name, prefixed with the working directory "
            f"({full_name!r}), so that run_choice, restore and dos=['analyze'] find it. "
            "Remove name from the RunConfig to silence this warning."
        )
    defaults = {str(DEFAULT_STORAGE_PATH), os.environ.get("RAY_STORAGE")}
    if run_config.storage_path is not None and str(run_config.storage_path) not in defaults:
        notes.append(
            f"{where}.storage_path={run_config.storage_path!r} is not used: radas_flows "
            "stores every experiment in <results root>/<user_name>/<experiment> (the results "
            "root is RADAS_RESULTS_ROOT for local runs, the cluster's results_root for a "
            "cluster), where restore and analysis read it back; set RADAS_RESULTS_ROOT to store "
            "local results elsewhere, and remove storage_path from the RunConfig."
        )
    if run_config.storage_filesystem is not None:
        notes.append(
            f"{where}.storage_filesystem is not used: radas_flows reads and writes the "
            "results root with its own filesystem (a local or shared folder, or s3:// with the "
            "S3 settings of docs/storage.md); remove storage_filesystem from the RunConfig."
        )
    return notes
