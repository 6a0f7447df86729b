"""The ``radas`` flow's parameter types, and their conversion into ``build_spec`` arguments."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    model_serializer,
)

from radas_flows.inputs.plot_settings import SEABORN_PLOT_FUNCTIONS, PlotSettings, resolve_plot_fn
from radas_flows.inputs.references import (
    resolve_callable_reference,
    split_reference,
    validate_trainable_reference,
)
from radas_flows.inputs.rules import ParameterError
from radas_flows.inputs.space import (
    ParamSpace,
    describe_param_space,
    grammar_error,
    parse_param_space,
    validate_param_space,
)
from radas_flows.inputs.tuner_settings import TunerSettings, build_tuner_init_kwargs

__all__ = [
    "ANALYSIS_FUNCTION_FIELDS",
    "FunctionParameter",
    "ParamSpaceParameter",
    "PythonObjectsParameter",
    "PythonParamSpace",
    "TrainableParameter",
    "spec_arguments",
]

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
        split_reference(value, field)
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


class PythonParamSpace(BaseModel):
    """A ``param_space`` built in Python: it reaches Tune exactly as given.

    ``run_experiment`` hands its ``param_space`` to the ``radas`` flow in this wrapper, so the
    JSON grammar (which applies to parameters that arrive as JSON: deployments, the UI, the
    CLI) never reinterprets it: Tune domains and ``grid_search`` are search spaces, every other
    value, ``{"choice": "resnet"}`` included, is a value. Prefect stores the parameter as
    :func:`~radas_flows.inputs.space.describe_param_space` shows it.

    Example:
        >>> wrapped = PythonParamSpace(space={"model": {"choice": "resnet"}})
        >>> spec_arguments({"param_space": wrapped})["param_space"]
        {'model': {'choice': 'resnet'}}
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    space: dict[str, Any]

    @model_serializer
    def _described(self) -> Any:
        return describe_param_space(self.space)


def _check_param_space(value: Any) -> Any:
    if value is None or isinstance(value, PythonParamSpace):
        return value
    if not isinstance(value, Mapping):
        raise grammar_error("param_space", f"must be a JSON object, got {value!r}")
    return validate_param_space(dict(value))


#: ``param_space`` of the ``radas`` flow: the JSON grammar, or (from ``run_experiment``) a
#: :class:`PythonParamSpace` object, which JSON cannot produce and the UI form does not show.
ParamSpaceParameter = Annotated[
    Any,
    BeforeValidator(_check_param_space),
    WithJsonSchema(TypeAdapter(ParamSpace | None).json_schema()),
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
    if isinstance(raw_space, PythonParamSpace):  # built in Python: no JSON grammar
        args["param_space"] = dict(raw_space.space)
        raw_space = None
    elif raw_space is not None:
        if not isinstance(raw_space, Mapping):
            raise grammar_error("param_space", f"must be a JSON object, got {raw_space!r}")
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
