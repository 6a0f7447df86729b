"""The JSON search-space grammar: validate, parse into Tune domains, describe back."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from radas_flows.inputs.rules import ParameterError

__all__ = [
    "PARAM_SPACE_GRAMMAR",
    "PARAM_SPACE_WORDS",
    "ParamSpace",
    "describe_param_space",
    "grammar_error",
    "parse_param_space",
    "validate_param_space",
]

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


def grammar_error(path: str, problem: str) -> ParameterError:
    """The error for a malformed search space at ``path``, quoting the grammar."""
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
        raise grammar_error(path, f'"{word}" takes a list {shape}, got {args!r}')
    args = list(args)
    if word in ("grid_search", "choice"):
        if not args:
            raise grammar_error(path, f'"{word}" needs at least one value, got an empty list')
        return args

    arity = shape.count(",") + 1
    if len(args) != arity:
        raise grammar_error(path, f'"{word}" takes {shape} ({arity} values), got {args!r}')
    kind = _NUMBER_KINDS[word]
    check = _is_integer if kind == "integer" else _is_number
    bad = [value for value in args if not check(value)]
    if bad:
        raise grammar_error(path, f'"{word}" takes {shape} as {kind}s, got {args!r}')

    if word in ("randn", "qrandn"):
        if args[1] <= 0:
            raise grammar_error(path, f'"{word}" needs sd > 0, got {args!r}')
        if word == "qrandn" and args[2] <= 0:
            raise grammar_error(path, f'"{word}" needs q > 0, got {args!r}')
        return args

    lo, hi = args[0], args[1]
    if not lo < hi:
        raise grammar_error(path, f'"{word}" needs lo < hi, got {args!r}')
    if word.lstrip("q").startswith("log") and lo <= 0:
        raise grammar_error(path, f'"{word}" samples on a log scale and needs 0 < lo, got {args!r}')
    if arity == 3:
        q = args[2]
        if q <= 0:
            raise grammar_error(path, f'"{word}" needs q > 0, got {args!r}')
        if kind == "number" and not (_is_multiple(lo, q) and _is_multiple(hi, q)):
            raise grammar_error(
                path, f'"{word}" needs lo and hi to be multiples of q, got {args!r}'
            )
        if kind == "integer" and math.ceil(lo / q) > math.floor(hi / q):
            raise grammar_error(
                path, f'"{word}" has no multiple of q between lo and hi, got {args!r}'
            )
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
            raise grammar_error(
                path,
                '"sample_from" needs a Python function and cannot travel as JSON; '
                "call run_experiment() from Python with tune.sample_from(...) instead",
            )
        if isinstance(key, str) and _normalized(key) in _NORMALIZED_WORDS:
            word = _NORMALIZED_WORDS[_normalized(key)]
            raise grammar_error(path, f'unknown search-space word "{key}"; did you mean "{word}"?')
    return {key: _walk(item, f"{path}.{key}", build) for key, item in value.items()}


def _check_top(obj: Any, path: str) -> None:
    if not isinstance(obj, Mapping):
        raise grammar_error(
            path, f"must be a JSON object of parameters, got {type(obj).__name__} {obj!r}"
        )
    if len(obj) == 1 and next(iter(obj)) in _FORMS:
        raise grammar_error(
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
