"""Tune search algorithms and trial schedulers by name, built from JSON arguments."""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args

from radas_flows.inputs.rules import ParameterError
from radas_flows.inputs.space import grammar_error, parse_param_space

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import SearchAlgorithm, Searcher

__all__ = [
    "NEEDS_METRIC",
    "RESERVED_KWARGS",
    "SCHEDULER_NAMES",
    "SEARCH_ALG_NAMES",
    "SchedulerName",
    "SearchAlgName",
    "build_scheduler",
    "build_search_alg",
    "check_search_space",
]

SearchAlgName = Literal["basic", "variant_generator", "random", "optuna", "hyperopt", "bayesopt"]
SchedulerName = Literal[
    "fifo", "asha", "async_hyperband", "hyperband", "median_stopping", "median_stopping_rule", "pbt"
]

#: Names ``build_search_alg`` accepts (``basic``, ``variant_generator``, ``random`` are one).
SEARCH_ALG_NAMES: tuple[str, ...] = get_args(SearchAlgName)
#: Names ``build_scheduler`` accepts (aliases: ``async_hyperband``, ``median_stopping_rule``).
SCHEDULER_NAMES: tuple[str, ...] = get_args(SchedulerName)

_SEARCH_EXTRA = "pip install 'radas-flows[search]'"

# name -> (module, class, (package to import, how to install it) or None, needs metric and mode)
_SEARCH_ALGS: dict[str, tuple[str, str, tuple[str, str] | None, bool]] = {
    "basic": ("ray.tune.search.basic_variant", "BasicVariantGenerator", None, False),
    "variant_generator": ("ray.tune.search.basic_variant", "BasicVariantGenerator", None, False),
    "random": ("ray.tune.search.basic_variant", "BasicVariantGenerator", None, False),
    "optuna": ("ray.tune.search.optuna", "OptunaSearch", ("optuna", _SEARCH_EXTRA), True),
    "hyperopt": ("ray.tune.search.hyperopt", "HyperOptSearch", ("hyperopt", _SEARCH_EXTRA), True),
    "bayesopt": (
        "ray.tune.search.bayesopt",
        "BayesOptSearch",
        ("bayes_opt", "pip install bayesian-optimization"),
        True,
    ),
}

# name -> (module, class, needs metric and mode)
_SCHEDULERS: dict[str, tuple[str, str, bool]] = {
    "fifo": ("ray.tune.schedulers", "FIFOScheduler", False),
    "asha": ("ray.tune.schedulers", "ASHAScheduler", True),
    "async_hyperband": ("ray.tune.schedulers", "AsyncHyperBandScheduler", True),
    "hyperband": ("ray.tune.schedulers", "HyperBandScheduler", True),
    "median_stopping": ("ray.tune.schedulers", "MedianStoppingRule", True),
    "median_stopping_rule": ("ray.tune.schedulers", "MedianStoppingRule", True),
    "pbt": ("ray.tune.schedulers", "PopulationBasedTraining", True),
}

# Keyword arguments that come from elsewhere, or that only Python objects can fill.
RESERVED_KWARGS = {
    "metric": "set TunerSettings.metric instead, it reaches the search algorithm and scheduler",
    "mode": "set TunerSettings.mode instead, it reaches the search algorithm and scheduler",
    "space": "the search space comes from param_space",
}
_PYTHON_ONLY_KWARGS = {"sampler", "storage", "analysis", "custom_explore_fn"}

NEEDS_METRIC = {name for name, spec in _SEARCH_ALGS.items() if spec[3]} | {
    name for name, spec in _SCHEDULERS.items() if spec[2]
}


def _normalize_name(name: str, field: str, names: tuple[str, ...]) -> str:
    key = name.strip().lower().replace("-", "_")
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        raise ParameterError(f"{field}: unknown name {name!r}; choose one of {list(names)}.{hint}")
    return key


def _check_kwargs(cls: type, kwargs: Mapping[str, Any], field: str, label: str) -> None:
    accepted = [
        arg
        for arg in inspect.signature(cls).parameters
        if arg not in RESERVED_KWARGS and arg not in _PYTHON_ONLY_KWARGS
    ]
    for key in kwargs:
        if key in RESERVED_KWARGS:
            raise ParameterError(f"{field}.{key}: not allowed here; {RESERVED_KWARGS[key]}.")
        if key in _PYTHON_ONLY_KWARGS:
            raise ParameterError(
                f"{field}.{key}: {label} takes a Python object here, which cannot travel as "
                "JSON; build the object in Python and pass it in tuner_init_kwargs instead."
            )
        if key not in accepted:
            raise ParameterError(
                f"{field}.{key}: {label} has no argument {key!r}; it accepts {accepted}."
            )


def _construct(cls: type, kwargs: dict[str, Any], field: str, label: str) -> Any:
    from ray.tune.error import TuneError

    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError, KeyError, TuneError) as e:
        raise ParameterError(f"{field}: {label}({kwargs!r}) failed: {e}") from e


def build_search_alg(
    name: str | None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    metric: str | None = None,
    mode: Literal["min", "max"] | None = None,
) -> Searcher | SearchAlgorithm | None:
    """Build a Tune search algorithm from its name and JSON keyword arguments.

    Leave ``metric`` and ``mode`` as ``None`` when the same values go into ``TuneConfig``
    (``build_tuner_init_kwargs`` does so): Tune hands them on, and refuses a search algorithm
    that already has its own.

    Args:
        name: One of ``SEARCH_ALG_NAMES``, or ``None`` for Tune's default.
        kwargs: Keyword arguments of the algorithm's constructor (JSON values only).
        metric: Metric to optimize, passed to algorithms that take one.
        mode: ``"min"`` or ``"max"``, passed with ``metric``.

    Returns:
        The search algorithm, or ``None`` when ``name`` is ``None``.

    Raises:
        ParameterError: Unknown name, an argument the algorithm does not accept, a missing
            optional package (the message says what to install), or a constructor error.

    Example:
        >>> alg = build_search_alg("optuna", {"seed": 1}, metric="score", mode="max")
        >>> type(alg).__name__
        'OptunaSearch'
    """
    if name is None:
        if kwargs:
            raise ParameterError("search_alg_kwargs: given without search_alg; name one.")
        return None
    key = _normalize_name(name, "search_alg", SEARCH_ALG_NAMES)
    module_name, class_name, requirement, takes_metric = _SEARCH_ALGS[key]
    if requirement is not None:
        package, install = requirement
        try:
            importlib.import_module(package)
        except ImportError as e:
            raise ParameterError(
                f"search_alg: {key!r} needs the {package!r} package, which is not installed; "
                f"run `{install}`."
            ) from e
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = dict(kwargs or {})
    _check_kwargs(cls, kwargs, "search_alg_kwargs", class_name)
    if takes_metric:
        kwargs.update({k: v for k, v in (("metric", metric), ("mode", mode)) if v is not None})
    built: Searcher | SearchAlgorithm = _construct(cls, kwargs, "search_alg_kwargs", class_name)
    return built


def _contains_grid(value: Any) -> bool:
    if isinstance(value, Mapping):
        if len(value) == 1 and "grid_search" in value:
            return True
        return any(_contains_grid(item) for item in value.values())
    if isinstance(value, list):
        return any(_contains_grid(item) for item in value)
    return False


def build_scheduler(
    name: str | None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    metric: str | None = None,
    mode: Literal["min", "max"] | None = None,
) -> TrialScheduler | None:
    """Build a Tune trial scheduler from its name and JSON keyword arguments.

    PBT's ``hyperparam_mutations`` use the search-space grammar (``parse_param_space``);
    plain lists are a choice among values, as in Tune. Leave ``metric`` and ``mode`` as
    ``None`` when they go into ``TuneConfig``.

    Args:
        name: One of ``SCHEDULER_NAMES``, or ``None`` for Tune's default (FIFO).
        kwargs: Keyword arguments of the scheduler's constructor (JSON values only).
        metric: Metric the scheduler compares trials by.
        mode: ``"min"`` or ``"max"``, passed with ``metric``.

    Returns:
        The scheduler, or ``None`` when ``name`` is ``None``.

    Raises:
        ParameterError: Unknown name, an argument the scheduler does not accept, a malformed
            mutation space, or a constructor error.

    Example:
        >>> asha = build_scheduler("asha", {"max_t": 10, "grace_period": 1})
        >>> type(asha).__name__
        'AsyncHyperBandScheduler'
    """
    if name is None:
        if kwargs:
            raise ParameterError("scheduler_kwargs: given without scheduler; name one.")
        return None
    key = _normalize_name(name, "scheduler", SCHEDULER_NAMES)
    module_name, class_name, takes_metric = _SCHEDULERS[key]
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = dict(kwargs or {})
    _check_kwargs(cls, kwargs, "scheduler_kwargs", class_name)
    if key == "pbt":
        path = "scheduler_kwargs.hyperparam_mutations"
        mutations = kwargs.get("hyperparam_mutations")
        if not isinstance(mutations, Mapping) or not mutations:
            raise ParameterError(
                f"{path}: PBT needs a non-empty object of parameters to mutate, got "
                f'{mutations!r}; e.g. {{"lr": {{"loguniform": [1e-4, 1e-1]}}, "batch": [16, 32]}}.'
            )
        if _contains_grid(mutations):
            raise grammar_error(path, "PBT cannot mutate a grid_search; use choice or a plain list")
        kwargs["hyperparam_mutations"] = parse_param_space(dict(mutations), path=path)
    if takes_metric:
        kwargs.update({k: v for k, v in (("metric", metric), ("mode", mode)) if v is not None})
    built: TrialScheduler = _construct(cls, kwargs, "scheduler_kwargs", class_name)
    return built


def check_search_space(search_alg: str | None, space: Mapping[str, Any]) -> None:
    """Check that a search algorithm can convert a search space, before anything runs.

    Optuna, HyperOpt and BayesOpt support only some forms (none of them ``grid_search``;
    BayesOpt only ``uniform``). This runs the algorithm's own conversion locally.

    Args:
        search_alg: A name from ``SEARCH_ALG_NAMES``, or ``None``.
        space: The search space, as JSON or as parsed by ``parse_param_space``.

    Raises:
        ParameterError: The algorithm cannot use the space; the message says why.

    Example:
        >>> check_search_space("optuna", {"x": {"uniform": [0, 1]}})
        >>> check_search_space("basic", {"x": {"grid_search": [1, 2]}})
    """
    if search_alg is None:
        return
    key = _normalize_name(search_alg, "search_alg", SEARCH_ALG_NAMES)
    module_name, class_name, requirement, _ = _SEARCH_ALGS[key]
    if requirement is None:
        return
    parsed = parse_param_space(dict(space))
    if not parsed:
        return
    build_search_alg(key)  # reports a missing package first
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        cls.convert_search_space(parsed)
    except (ValueError, TypeError, AttributeError) as e:
        raise ParameterError(
            f"param_space: search_alg {key!r} cannot use this search space: {e} "
            "Use search_alg 'basic' for grid_search, or forms the algorithm supports."
        ) from e
