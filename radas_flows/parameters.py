"""Experiment parameters that travel as JSON: search spaces, tuner settings, plots, trainables."""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from radas_flows.errors import RadasValueError

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import SearchAlgorithm, Searcher

__all__ = [
    "ANALYSIS_FUNCTION_FIELDS",
    "FIGURE_LEVEL_PLOT_FUNCTIONS",
    "PARAM_SPACE_GRAMMAR",
    "PARAM_SPACE_WORDS",
    "RUN_WITH_PATTERN",
    "SCHEDULER_NAMES",
    "SEABORN_PLOT_FUNCTIONS",
    "SEARCH_ALG_NAMES",
    "FunctionParameter",
    "ParamSpace",
    "ParameterError",
    "PlotSettings",
    "PythonObjectsParameter",
    "SchedulerName",
    "SeabornPlotName",
    "SearchAlgName",
    "TrainableParameter",
    "TrainableReference",
    "TunerSettings",
    "build_scheduler",
    "build_search_alg",
    "build_tuner_init_kwargs",
    "check_search_space",
    "describe_param_space",
    "import_reference",
    "parse_param_space",
    "resolve_callable_reference",
    "resolve_plot_fn",
    "resolve_trainable_reference",
    "spec_arguments",
    "supported_plot_formats",
    "validate_param_space",
    "validate_trainable_reference",
]


class ParameterError(RadasValueError):
    """An experiment parameter is malformed; the message names the field and the fix."""


# ---------------------------------------------------------------------------------------------
# Search-space grammar
# ---------------------------------------------------------------------------------------------

#: Each grammar word with the shape of its argument, in the order the documentation lists them.
_FORMS: dict[str, str] = {
    "grid_search": "[v1, v2, ...]",
    "choice": "[v1, v2, ...]",
    "uniform": "[lo, hi]",
    "quniform": "[lo, hi, q]",
    "loguniform": "[lo, hi]",
    "qloguniform": "[lo, hi, q]",
    "randint": "[lo, hi]",
    "qrandint": "[lo, hi, q]",
    "lograndint": "[lo, hi]",
    "qlograndint": "[lo, hi, q]",
    "randn": "[mean, sd]",
    "qrandn": "[mean, sd, q]",
}

#: The words that turn a single-key JSON object into a Tune search space.
PARAM_SPACE_WORDS: tuple[str, ...] = tuple(_FORMS)

#: One-paragraph statement of the grammar, quoted in every parse error.
PARAM_SPACE_GRAMMAR: str = (
    "param_space grammar: a JSON object whose only key is one of "
    + ", ".join(f'{{"{word}": {shape}}}' for word, shape in _FORMS.items())
    + " is a Tune search space (lo < hi; log forms need 0 < lo; integer forms take integers, "
    "hi exclusive; q > 0 and lo, hi multiples of q for float q-forms; sd > 0; values inside "
    "grid_search and choice are taken literally); any other object is a nested dict; "
    "strings, numbers, booleans, null and lists are plain values."
)

_NUMBER_KINDS = {
    "uniform": "number",
    "quniform": "number",
    "loguniform": "number",
    "qloguniform": "number",
    "randn": "number",
    "qrandn": "number",
    "randint": "integer",
    "qrandint": "integer",
    "lograndint": "integer",
    "qlograndint": "integer",
}


def _normalized(word: str) -> str:
    return word.lower().replace("_", "").replace("-", "").replace(" ", "")


_NORMALIZED_WORDS = {_normalized(word): word for word in PARAM_SPACE_WORDS}


def _fail(path: str, problem: str) -> ParameterError:
    return ParameterError(f"{path}: {problem}. {PARAM_SPACE_GRAMMAR}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_multiple(value: float, q: float) -> bool:
    return math.isclose(value / q, round(value / q))


def _check_form(word: str, args: Any, path: str) -> list[Any]:
    """Check the argument of one grammar word and return it as a list."""
    shape = _FORMS[word]
    if not isinstance(args, list | tuple):
        raise _fail(path, f'"{word}" takes a list {shape}, got {args!r}')
    args = list(args)
    if word in ("grid_search", "choice"):
        if not args:
            raise _fail(path, f'"{word}" needs at least one value, got an empty list')
        return args

    arity = shape.count(",") + 1
    if len(args) != arity:
        raise _fail(path, f'"{word}" takes {shape} ({arity} values), got {args!r}')
    kind = _NUMBER_KINDS[word]
    check = _is_integer if kind == "integer" else _is_number
    bad = [value for value in args if not check(value)]
    if bad:
        raise _fail(path, f'"{word}" takes {shape} as {kind}s, got {args!r}')

    if word in ("randn", "qrandn"):
        if args[1] <= 0:
            raise _fail(path, f'"{word}" needs sd > 0, got {args!r}')
        if word == "qrandn" and args[2] <= 0:
            raise _fail(path, f'"{word}" needs q > 0, got {args!r}')
        return args

    lo, hi = args[0], args[1]
    if not lo < hi:
        raise _fail(path, f'"{word}" needs lo < hi, got {args!r}')
    if word.lstrip("q").startswith("log") and lo <= 0:
        raise _fail(path, f'"{word}" samples on a log scale and needs 0 < lo, got {args!r}')
    if arity == 3:
        q = args[2]
        if q <= 0:
            raise _fail(path, f'"{word}" needs q > 0, got {args!r}')
        if kind == "number" and not (_is_multiple(lo, q) and _is_multiple(hi, q)):
            raise _fail(path, f'"{word}" needs lo and hi to be multiples of q, got {args!r}')
        if kind == "integer" and math.ceil(lo / q) > math.floor(hi / q):
            raise _fail(path, f'"{word}" has no multiple of q between lo and hi, got {args!r}')
    return args


def _build_domain(word: str, args: list[Any]) -> Any:
    from ray import tune

    if word in ("grid_search", "choice"):
        return getattr(tune, word)(args)
    return getattr(tune, word)(*args)


def _walk(value: Any, path: str, build: bool) -> Any:
    """Check (and with ``build`` convert) one value of a JSON search space."""
    if isinstance(value, list):
        return [_walk(item, f"{path}[{index}]", build) for index, item in enumerate(value)]
    if not isinstance(value, Mapping):
        return value
    if len(value) == 1:
        (key,) = value.keys()
        if key in _FORMS:
            args = _check_form(key, value[key], path)
            return _build_domain(key, args) if build else dict(value)
        if key == "sample_from":
            raise _fail(
                path,
                '"sample_from" needs a Python function and cannot travel as JSON; '
                "call run_experiment() from Python with tune.sample_from(...) instead",
            )
        if isinstance(key, str) and _normalized(key) in _NORMALIZED_WORDS:
            word = _NORMALIZED_WORDS[_normalized(key)]
            raise _fail(path, f'unknown search-space word "{key}"; did you mean "{word}"?')
    return {key: _walk(item, f"{path}.{key}", build) for key, item in value.items()}


def _check_top(obj: Any, path: str) -> None:
    if not isinstance(obj, Mapping):
        raise _fail(path, f"must be a JSON object of parameters, got {type(obj).__name__} {obj!r}")
    if len(obj) == 1 and next(iter(obj)) in _FORMS:
        raise _fail(
            path,
            f"must be an object of named parameters, not a search space itself, got {obj!r}; "
            f'wrap it, e.g. {{"x": {dict(obj)!r}}}',
        )


def validate_param_space(obj: dict[str, Any], *, path: str = "param_space") -> dict[str, Any]:
    """Check a JSON search space against the grammar without importing Ray.

    Args:
        obj: The search space as decoded JSON.
        path: The name used for the root in error messages.

    Returns:
        ``obj`` unchanged, so the function can serve as a pydantic validator.

    Raises:
        ParameterError: A grammar form is malformed; the message names its path.

    Example:
        >>> validate_param_space({"lr": {"loguniform": [1e-4, 1e-1]}, "epochs": 3})
        {'lr': {'loguniform': [0.0001, 0.1]}, 'epochs': 3}
    """
    _check_top(obj, path)
    _walk(obj, path, build=False)
    return obj


def parse_param_space(obj: dict[str, Any], *, path: str = "param_space") -> dict[str, Any]:
    """Turn a JSON search space into the ``param_space`` that ``ray.tune.Tuner`` takes.

    A JSON object with exactly one key that is a grammar word (see ``PARAM_SPACE_GRAMMAR``)
    becomes the matching Tune search-space object; any other object is a nested dict walked
    recursively, as are lists; everything else passes through unchanged, Tune ``Domain``
    objects included, so parsing twice is harmless. Values inside ``grid_search`` and
    ``choice`` are taken literally. A key that differs from a grammar word only by case or
    separators (``"Uniform"``, ``"grid-search"``) is an error, not a nested dict.

    Args:
        obj: The search space as decoded JSON.
        path: The name used for the root in error messages.

    Returns:
        A new dict with Tune search-space objects in place of the grammar forms.

    Raises:
        ParameterError: A grammar form is malformed; the message names its path
            (``param_space.model.lr``) and quotes the grammar.

    Example:
        >>> space = parse_param_space({"model": {"lr": {"loguniform": [1e-4, 1e-1]}}})
        >>> type(space["model"]["lr"]).__name__
        'Float'
    """
    _check_top(obj, path)
    result: dict[str, Any] = _walk(obj, path, build=True)
    return result


def _plain(value: Any) -> Any:
    """Return ``value`` as JSON-friendly data (numpy scalars and tuples included)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and type(value).__module__ == "numpy":
        return tolist()
    return repr(value)


def _describe_domain(domain: Any) -> dict[str, Any]:
    from ray.tune.search.sample import (
        Categorical,
        Float,
        Function,
        Grid,
        Integer,
        LogUniform,
        Normal,
        Quantized,
    )

    if isinstance(domain, Function):
        name = getattr(domain.func, "__qualname__", repr(domain.func))
        return {"sample_from": name}
    if isinstance(domain, Categorical):
        word = "grid_search" if isinstance(domain.sampler, Grid) else "choice"
        return {word: _plain(domain.categories)}
    sampler = domain.sampler
    q = None
    if isinstance(sampler, Quantized):
        q = sampler.q
        sampler = sampler.get_sampler()
    prefix = "q" if q is not None else ""
    tail = [_plain(q)] if q is not None else []
    if isinstance(domain, Float):
        if isinstance(sampler, Normal):
            return {f"{prefix}randn": [sampler.mean, sampler.sd, *tail]}
        word = "loguniform" if isinstance(sampler, LogUniform) else "uniform"
        return {prefix + word: [_plain(domain.lower), _plain(domain.upper), *tail]}
    if isinstance(domain, Integer):
        word = "lograndint" if isinstance(sampler, LogUniform) else "randint"
        return {prefix + word: [_plain(domain.lower), _plain(domain.upper), *tail]}
    return {"domain": repr(domain)}


def describe_param_space(space: Any) -> Any:
    """Describe a search space (built in Python or parsed from JSON) in the JSON grammar.

    The inverse of ``parse_param_space`` for display: Tune ``Domain`` objects become grammar
    forms, numpy values become plain numbers, and values JSON cannot hold become their
    ``repr``. A ``tune.sample_from`` becomes ``{"sample_from": "<function name>"}``, which is
    for display only (``parse_param_space`` rejects it).

    Args:
        space: A ``param_space`` dict, or any value inside one.

    Returns:
        JSON-serializable data in the grammar of ``PARAM_SPACE_GRAMMAR``.

    Example:
        >>> from ray import tune
        >>> describe_param_space({"lr": tune.loguniform(1e-4, 1e-1), "n": tune.randint(1, 5)})
        {'lr': {'loguniform': [0.0001, 0.1]}, 'n': {'randint': [1, 5]}}
    """
    if space is None or isinstance(space, str | bool | int | float):
        return space
    if isinstance(space, Mapping):
        return {str(key): describe_param_space(value) for key, value in space.items()}
    if isinstance(space, list | tuple):
        return [describe_param_space(value) for value in space]
    if type(space).__module__.startswith("ray.tune"):
        from ray.tune.search.sample import Domain

        if isinstance(space, Domain):
            return _describe_domain(space)
    return _plain(space)


#: A flow parameter type for a JSON search space: the UI shows a JSON editor with this help.
ParamSpace = Annotated[
    dict[str, Any],
    AfterValidator(validate_param_space),
    Field(
        description=(
            "Tune search space as JSON: "
            + PARAM_SPACE_GRAMMAR.removeprefix("param_space grammar: ")
        ),
        examples=[
            {
                "lr": {"loguniform": [1e-4, 1e-1]},
                "batch_size": {"choice": [32, 64]},
                "model": {"depth": {"grid_search": [2, 4]}},
                "epochs": 10,
            }
        ],
    ),
]


# ---------------------------------------------------------------------------------------------
# Search algorithms and schedulers by name
# ---------------------------------------------------------------------------------------------

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
_RESERVED_KWARGS = {
    "metric": "set TunerSettings.metric instead, it reaches the search algorithm and scheduler",
    "mode": "set TunerSettings.mode instead, it reaches the search algorithm and scheduler",
    "space": "the search space comes from param_space",
}
_PYTHON_ONLY_KWARGS = {"sampler", "storage", "analysis", "custom_explore_fn"}

_NEEDS_METRIC = {name for name, spec in _SEARCH_ALGS.items() if spec[3]} | {
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
        if arg not in _RESERVED_KWARGS and arg not in _PYTHON_ONLY_KWARGS
    ]
    for key in kwargs:
        if key in _RESERVED_KWARGS:
            raise ParameterError(f"{field}.{key}: not allowed here; {_RESERVED_KWARGS[key]}.")
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
            raise _fail(path, "PBT cannot mutate a grid_search; use choice or a plain list")
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


# ---------------------------------------------------------------------------------------------
# Tuner settings
# ---------------------------------------------------------------------------------------------


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
            if key in _RESERVED_KWARGS:
                raise ValueError(f"{key!r} is not allowed here; {_RESERVED_KWARGS[key]}")
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
            if name in _NEEDS_METRIC and self.metric is None:
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


# ---------------------------------------------------------------------------------------------
# Plot settings
# ---------------------------------------------------------------------------------------------

SeabornPlotName = Literal[
    "relplot",
    "scatterplot",
    "lineplot",
    "displot",
    "histplot",
    "kdeplot",
    "ecdfplot",
    "rugplot",
    "catplot",
    "stripplot",
    "swarmplot",
    "boxplot",
    "violinplot",
    "boxenplot",
    "pointplot",
    "barplot",
    "countplot",
    "lmplot",
    "regplot",
    "residplot",
    "heatmap",
    "clustermap",
    "pairplot",
    "jointplot",
]

#: Seaborn plotting functions a plot may name.
SEABORN_PLOT_FUNCTIONS: tuple[str, ...] = get_args(SeabornPlotName)

#: Those of them that make their own figure and return a grid (``g.figure``), not an Axes.
FIGURE_LEVEL_PLOT_FUNCTIONS: frozenset[str] = frozenset(
    {"relplot", "displot", "catplot", "lmplot", "clustermap", "pairplot", "jointplot"}
)


def resolve_plot_fn(name: str) -> Callable[..., Any]:
    """Return the seaborn plotting function with this name.

    Args:
        name: One of ``SEABORN_PLOT_FUNCTIONS``.

    Returns:
        ``seaborn.<name>``.

    Raises:
        ParameterError: The name is not on the list.

    Example:
        >>> resolve_plot_fn("lineplot").__name__
        'lineplot'
    """
    if name not in SEABORN_PLOT_FUNCTIONS:
        close = difflib.get_close_matches(name, SEABORN_PLOT_FUNCTIONS, n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        raise ParameterError(
            f"plot fn: {name!r} is not a seaborn plotting function this package supports; "
            f"choose one of {list(SEABORN_PLOT_FUNCTIONS)}.{hint}"
        )
    import seaborn

    fn: Callable[..., Any] = getattr(seaborn, name)
    return fn


def supported_plot_formats() -> dict[str, str]:
    """Return the file formats matplotlib can save figures in, by extension.

    Example:
        >>> "png" in supported_plot_formats()
        True
    """
    from matplotlib.backend_bases import FigureCanvasBase

    formats: dict[str, str] = FigureCanvasBase.get_supported_filetypes()
    return dict(formats)


class PlotSettings(BaseModel):
    """The results figure: a seaborn function by name, its arguments and the file format.

    Example:
        >>> plot = PlotSettings(fn="lineplot", kwargs={"x": "config/a", "y": "score"})
        >>> plot.format
        'png'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fn: SeabornPlotName = Field(
        description=(
            "Seaborn plotting function, called as seaborn.<fn>(data=results, **kwargs). "
            "Figure-level ones (relplot, displot, catplot, lmplot, ...) allow facets."
        ),
        examples=["lineplot", "relplot"],
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Keyword arguments of the seaborn function; columns are named as in the results "
            'table, e.g. {"x": "config/a", "y": "score", "hue": "config/b"}.'
        ),
        examples=[{"x": "config/a", "y": "score", "hue": "config/b"}],
    )
    format: str | None = Field(
        default="png",
        description=(
            "File format of the saved figure, any format matplotlib saves: png, svg, pdf, "
            "jpg, eps, ... Empty keeps the figure unsaved."
        ),
        examples=["png", "svg", "pdf"],
    )

    @field_validator("format")
    @classmethod
    def _format_is_supported(cls, value: str | None) -> str | None:
        if value is None:
            return None
        key = value.strip().lower().removeprefix(".")
        formats = supported_plot_formats()
        if key not in formats:
            raise ValueError(
                f"{value!r} is not a format matplotlib can save; choose one of {sorted(formats)}"
            )
        return key


# ---------------------------------------------------------------------------------------------
# Trainable references
# ---------------------------------------------------------------------------------------------


_REFERENCE_EXAMPLE = "e.g. 'train:trainable' for the function trainable in train.py"


def _split_reference(ref: object, field: str = "trainable") -> tuple[str, str]:
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ParameterError(
            f"{field}={ref!r} is not a 'module:attribute' reference: it must have exactly one "
            f"colon, {_REFERENCE_EXAMPLE}."
        )
    module, attribute = (part.strip() for part in ref.split(":"))
    if module.endswith(".py") or "/" in module or "\\" in module:
        stem = module.removesuffix(".py").replace("/", ".").replace("\\", ".").strip(".")
        raise ParameterError(
            f"{field}={ref!r} names a file, not a module: name the module instead, "
            f"e.g. '{stem}:{attribute or 'trainable'}'."
        )
    for part, what in ((module, "module"), (attribute, "attribute")):
        if not part or not all(piece.isidentifier() for piece in part.split(".")):
            raise ParameterError(
                f"{field}={ref!r} has an invalid {what} {part!r}: use dotted Python names, "
                f"{_REFERENCE_EXAMPLE}."
            )
    return module, attribute


def validate_trainable_reference(ref: str) -> str:
    """Check the form of a ``"module:attribute"`` reference without importing anything.

    Args:
        ref: The reference, e.g. ``"train:trainable"`` or ``"pkg.models:Net.train"``.

    Returns:
        ``ref`` unchanged, so the function can serve as a pydantic validator.

    Raises:
        ParameterError: The reference is not of the form ``module:attribute``.

    Example:
        >>> validate_trainable_reference("train:trainable")
        'train:trainable'
    """
    _split_reference(ref)
    return ref


#: A flow parameter type for a trainable given as ``"module:attribute"``.
TrainableReference = Annotated[
    str,
    AfterValidator(validate_trainable_reference),
    Field(
        description=(
            "The trainable as 'module:attribute', imported from the run's working directory: "
            "a function taking config, or a ray.tune.Trainable subclass."
        ),
        examples=["train:trainable", "experiments.mnist:train_fn"],
    ),
]


def _locations(module: Any) -> list[str]:
    """Where a module's code lies: its file, or the folders of a namespace package."""
    file = getattr(module, "__file__", None)
    if file:
        return [os.path.abspath(file)]
    return [os.path.abspath(p) for p in getattr(module, "__path__", [])]


def import_reference(
    ref: str,
    *,
    field: str = "trainable",
    cwd: str | os.PathLike[str] | None = None,
    pickle_by_value: bool = True,
) -> Any:
    """Import the object that a ``"module:attribute"`` reference names.

    ``cwd`` (the run's working directory, by default the current one) goes first on
    ``sys.path`` and stays there, so the module's own imports of sibling modules keep
    working. With ``pickle_by_value``, a module found in ``cwd`` is registered with Ray's
    cloudpickle so that Ray workers, which may not have ``cwd`` on their path, get its code
    by value (its imports of other modules in ``cwd`` still need ``cwd`` on the workers'
    path, e.g. ``runtime_env={"working_dir": cwd}``).

    Args:
        ref: ``"module:attribute"``; both parts may be dotted (``"pkg.mod:Class.method"``).
        field: The parameter name used in error messages.
        cwd: Directory to import from.
        pickle_by_value: Register the module with ``ray.cloudpickle.register_pickle_by_value``.

    Returns:
        The object the reference names.

    Raises:
        ParameterError: Malformed reference, module not found in ``cwd``, import error inside
            the module, or a missing attribute.

    Example:
        >>> import_reference("json:dumps", field="process_df_fn").__name__
        'dumps'
    """
    module_name, attribute = _split_reference(ref, field)
    directory = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ParameterError(
                f"{field}={ref!r}: module {module_name!r} cannot be imported: it is not in "
                f"{directory} (the run's working directory, searched first) nor on the Python "
                f"path. Run from the directory that holds {module_name.replace('.', '/')}.py, "
                "or install it in the environment."
            ) from e
        raise ParameterError(
            f"{field}={ref!r}: importing module {module_name!r} failed because {missing!r} "
            f"is not installed ({e}); add it to the environment or to runtime_env pip."
        ) from e
    except Exception as e:
        raise ParameterError(
            f"{field}={ref!r}: importing module {module_name!r} raised {type(e).__name__}: {e}"
        ) from e

    target: Any = module
    walked = module_name
    for piece in attribute.split("."):
        if not hasattr(target, piece):
            names = sorted(n for n in dir(target) if not n.startswith("_"))
            raise ParameterError(
                f"{field}={ref!r}: {walked!r} has no attribute {piece!r}; it defines {names}."
            )
        target = getattr(target, piece)
        walked = f"{walked}.{piece}"

    top = sys.modules[module_name.split(".")[0]]
    if pickle_by_value and any(path.startswith(directory + os.sep) for path in _locations(top)):
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(top)
    return target


def resolve_trainable_reference(
    ref: str, *, cwd: str | os.PathLike[str] | None = None, pickle_by_value: bool = True
) -> Callable[..., Any]:
    """Import the trainable that a ``"module:attribute"`` reference names.

    The one implementation behind ``trainable="module:attribute"`` everywhere (flow
    parameters, ``run_experiment``, the cluster driver); see ``import_reference`` for where
    it looks and how the code reaches Ray workers.

    Args:
        ref: ``"module:attribute"``; both parts may be dotted (``"pkg.mod:Class.method"``).
        cwd: Directory to import from (the run's working directory).
        pickle_by_value: Register the module with ``ray.cloudpickle.register_pickle_by_value``.

    Returns:
        The trainable: a callable, or a ``ray.tune.Trainable`` subclass.

    Raises:
        ParameterError: Malformed reference, module not found in ``cwd``, import error inside
            the module, missing attribute, or an object that is not a trainable.

    Example:
        >>> fn = resolve_trainable_reference("train:trainable", cwd="examples")  # doctest: +SKIP
    """
    target = import_reference(ref, field="trainable", cwd=cwd, pickle_by_value=pickle_by_value)
    if inspect.isclass(target):
        from ray.tune import Trainable

        if not issubclass(target, Trainable):
            raise ParameterError(
                f"trainable={ref!r}: class {target.__qualname__} is not a ray.tune.Trainable "
                "subclass; name a function taking config, or subclass ray.tune.Trainable."
            )
    elif not callable(target):
        module_name, attribute = _split_reference(ref)
        raise ParameterError(
            f"trainable={ref!r}: {module_name + '.' + attribute!r} is a "
            f"{type(target).__name__}, not a function or a ray.tune.Trainable subclass."
        )
    fn: Callable[..., Any] = target
    return fn


def resolve_callable_reference(
    ref: str, *, field: str, cwd: str | os.PathLike[str] | None = None
) -> Callable[..., Any]:
    """Import a function named ``"module:attribute"`` (an analysis hook given as JSON).

    Args:
        ref: ``"module:attribute"``, e.g. ``"analysis:process_df"``.
        field: The parameter name used in error messages (``process_df_fn``...).
        cwd: Directory to import from (the run's working directory).

    Returns:
        The function.

    Raises:
        ParameterError: The reference cannot be imported or does not name a callable.

    Example:
        >>> resolve_callable_reference("json:dumps", field="process_df_fn").__name__
        'dumps'
    """
    target = import_reference(ref, field=field, cwd=cwd)
    if not callable(target):
        raise ParameterError(
            f"{field}={ref!r} names a {type(target).__name__}, not a function: name a "
            "function, e.g. 'analysis:process_df'."
        )
    fn: Callable[..., Any] = target
    return fn


# ---------------------------------------------------------------------------------------------
# Flow parameters: JSON for deployments and the UI, Python objects for Python callers
# ---------------------------------------------------------------------------------------------

#: What ``run_with`` accepts, as the UI and the server check it.
RUN_WITH_PATTERN = r"^(local|cluster:[A-Za-z0-9][A-Za-z0-9._-]*)$"

#: The analysis hooks that take a function, or a ``"module:attribute"`` reference from JSON.
ANALYSIS_FUNCTION_FIELDS: tuple[str, ...] = (
    "tuner_to_df_fn",
    "process_df_fn",
    "process_sns_fn",
    "process_g_fn",
)


def _check_trainable_value(value: Any) -> Any:
    if isinstance(value, str):
        return validate_trainable_reference(value)
    if value is None or not callable(value):
        raise ParameterError(
            f"trainable={value!r} is not a trainable: give 'module:attribute' (e.g. "
            "'train:trainable'), or from Python a function taking config or a "
            "ray.tune.Trainable subclass."
        )
    return value


def _check_function(field: str, value: Any) -> Any:
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        if field == "plot_fn" and ":" not in value:
            if value not in SEABORN_PLOT_FUNCTIONS:
                close = difflib.get_close_matches(value, SEABORN_PLOT_FUNCTIONS, n=1)
                hint = f' Did you mean "{close[0]}"?' if close else ""
                raise ParameterError(
                    f"plot_fn={value!r} is neither a seaborn plotting function this package "
                    f"supports ({', '.join(SEABORN_PLOT_FUNCTIONS)}) nor a 'module:attribute' "
                    f"reference.{hint}"
                )
            return value
        _split_reference(value, field)
        return value
    raise ParameterError(
        f"{field}={value!r} is not a function: give 'module:attribute' (imported from the "
        "run's working directory) or, from Python, the function itself."
    )


def _check_function_parameter(value: Any, info: ValidationInfo) -> Any:
    return _check_function(info.field_name or "function", value)


#: ``trainable`` of the ``radas`` flow: ``"module:attribute"`` from JSON, the object from Python.
TrainableParameter = Annotated[
    Any,
    BeforeValidator(_check_trainable_value),
    WithJsonSchema(
        {
            "type": "string",
            "description": (
                "The trainable as 'module:attribute', imported from the run's working "
                "directory: a function taking config, or a ray.tune.Trainable subclass."
            ),
            "examples": ["examples.two_moons.trainable:trainable"],
        }
    ),
]

#: An analysis hook or ``plot_fn``: a function from Python, ``"module:attribute"`` from JSON
#: (``plot_fn`` also takes a seaborn function's name).
FunctionParameter = Annotated[
    Any,
    BeforeValidator(_check_function_parameter),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "description": (
                "A function from Python, or 'module:attribute' imported from the run's "
                "working directory."
            ),
        }
    ),
]

#: ``tuner_init_kwargs``: Tune's config objects, which only Python callers can build.
PythonObjectsParameter = Annotated[
    dict[str, Any] | None,
    WithJsonSchema(
        {
            "anyOf": [{"type": "object"}, {"type": "null"}],
            "description": "Python callers only; from JSON use `tuner`.",
        }
    ),
]


def _resolve_function(field: str, value: Any, cwd: str | None) -> Any:
    if not isinstance(value, str):
        return value
    if field == "plot_fn" and ":" not in value:
        return resolve_plot_fn(value)
    return resolve_callable_reference(value, field=field, cwd=cwd)


_Model = TypeVar("_Model", bound=BaseModel)


def _as_model(model: type[_Model], value: Any, field: str) -> _Model:
    if isinstance(value, model):
        return value
    from pydantic import ValidationError

    try:
        return model.model_validate(value)
    except ValidationError as e:
        problems = [
            f"{'.'.join([field, *(str(part) for part in error['loc'])])}: {error['msg']}"
            for error in e.errors()
        ]
        raise ParameterError("; ".join(problems)) from e


def spec_arguments(parameters: Mapping[str, Any], *, cwd: str | None = None) -> dict[str, Any]:
    """Turn the ``radas`` flow's parameters into ``build_spec`` arguments.

    JSON values become Python objects: ``param_space`` grammar forms become Tune search
    spaces (Tune objects pass through unchanged), ``tuner`` becomes ``tuner_init_kwargs``,
    ``plot`` becomes ``plot_fn``/``plot_kwargs``/``plot_format``, and ``"module:attribute"``
    strings for the analysis hooks are imported from ``cwd``. Python objects pass through.

    Args:
        parameters: The flow's parameters by name (``tuner`` and ``plot`` included).
        cwd: The run's working directory, where references are imported from.

    Returns:
        The same parameters without ``tuner`` and ``plot``, ready for ``build_spec``.

    Raises:
        ParameterError: A value is malformed, or two parameters that set the same thing are
            both given (``tuner`` with ``tuner_init_kwargs``, ``plot`` with ``plot_fn``...).

    Example:
        >>> args = spec_arguments(
        ...     {"param_space": {"x": {"uniform": [0, 1]}}, "tuner": {"num_samples": 3}}
        ... )
        >>> type(args["param_space"]["x"]).__name__
        'Float'
        >>> args["tuner_init_kwargs"]["tune_config"].num_samples
        3
    """
    args = {key: value for key, value in parameters.items() if key not in ("tuner", "plot")}
    raw_space = parameters.get("param_space")
    if raw_space is not None:
        if not isinstance(raw_space, Mapping):
            raise _fail("param_space", f"must be a JSON object, got {raw_space!r}")
        args["param_space"] = parse_param_space(dict(raw_space))

    tuner = parameters.get("tuner")
    tuner_init_kwargs = parameters.get("tuner_init_kwargs")
    if tuner_init_kwargs and any(isinstance(v, Mapping) for v in dict(tuner_init_kwargs).values()):
        raise ParameterError(
            "tuner_init_kwargs takes ray.tune.TuneConfig and ray.tune.RunConfig objects, which "
            "only Python callers can build; from JSON, the UI or the CLI give `tuner` instead, "
            'e.g. {"num_samples": 8, "metric": "score", "mode": "max", "search_alg": "optuna"}.'
        )
    if tuner is not None and _as_model(TunerSettings, tuner, "tuner") != TunerSettings():
        if tuner_init_kwargs:
            raise ParameterError(
                "tuner and tuner_init_kwargs are both given: they set the same Tune settings; "
                "give `tuner` (JSON) or `tuner_init_kwargs` (Python objects), not both."
            )
        settings = _as_model(TunerSettings, tuner, "tuner")
        args["tuner_init_kwargs"] = build_tuner_init_kwargs(
            settings, param_space=dict(raw_space) if raw_space else None
        )

    plot = parameters.get("plot")
    if plot is not None:
        given = [k for k in ("plot_fn", "plot_kwargs", "plot_format") if parameters.get(k)]
        if given:
            raise ParameterError(
                f"plot and {', '.join(given)} are both given: they set the same figure; give "
                "`plot` (JSON) or plot_fn/plot_kwargs/plot_format (Python), not both."
            )
        settings_plot = _as_model(PlotSettings, plot, "plot")
        args["plot_fn"] = resolve_plot_fn(settings_plot.fn)
        args["plot_kwargs"] = dict(settings_plot.kwargs)
        args["plot_format"] = settings_plot.format

    for field in (*ANALYSIS_FUNCTION_FIELDS, "plot_fn"):
        if field in args:
            _check_function(field, args[field])
            args[field] = _resolve_function(field, args[field], cwd)
    return args
