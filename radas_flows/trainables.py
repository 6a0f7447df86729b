"""Trainables by reference: ``module:attribute`` strings that a cluster job can import."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from radas_flows.errors import RadasValueError

SEPARATE_FILE_RULE = (
    "When using a cluster, the trainable MUST be defined in a separate file "
    "(for example trainable.py next to your script, imported with `from trainable import "
    "trainable`), and you run your script from that directory."
)


def reference_of(trainable: Any) -> str | None:
    """``"module:qualname"`` of an importable trainable, or None (``__main__``, lambdas, locals).

    Example:
        >>> import json
        >>> reference_of(json.dumps)
        'json:dumps'
    """
    module = getattr(trainable, "__module__", None)
    qualname = getattr(trainable, "__qualname__", None)
    if not module or not qualname or module == "__main__":
        return None
    if "<lambda>" in qualname or "<locals>" in qualname:
        return None
    return f"{module}:{qualname}"


def resolve_trainable_reference(ref: str, *, cwd: str | None = None) -> Any:
    """Import ``"module:attribute"`` (dotted attributes allowed), looking in ``cwd`` first.

    Example:
        >>> resolve_trainable_reference("json:dumps").__name__
        'dumps'
    """
    from radas_flows.spec import is_trainable

    module_name, sep, attr_path = ref.partition(":")
    if not sep or not module_name or not attr_path:
        raise RadasValueError(
            f"trainable={ref!r} is not a 'module:attribute' reference: write it like "
            "'trainable:trainable' (the function `trainable` in trainable.py)."
        )
    if cwd and cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise RadasValueError(
            f"trainable={ref!r}: module {module_name!r} cannot be imported from "
            f"{cwd or 'the current directory'} ({e}). Run from the directory that holds "
            f"{module_name.replace('.', '/')}.py."
        ) from e
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            raise RadasValueError(
                f"trainable={ref!r}: {module_name!r} has no attribute {attr_path!r}."
            ) from e
    if not is_trainable(obj):
        raise RadasValueError(
            f"trainable={ref!r} resolves to {obj!r}, which is not a function or a "
            "ray.tune.Trainable subclass."
        )
    return obj
