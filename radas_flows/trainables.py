"""Trainables by reference: ``module:attribute`` strings that a cluster job can import."""

from __future__ import annotations

from typing import Any

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


def resolve_trainable_reference(
    ref: str, *, cwd: str | None = None, pickle_by_value: bool = True
) -> Any:
    """Import ``"module:attribute"`` (dotted attributes allowed), looking in ``cwd`` first.

    Delegates to ``radas_flows.parameters.resolve_trainable_reference``, the one
    implementation (it also registers a module found in ``cwd`` for pickling by value).

    Example:
        >>> resolve_trainable_reference("json:dumps").__name__
        'dumps'
    """
    from radas_flows.parameters import resolve_trainable_reference as resolve

    return resolve(ref, cwd=cwd, pickle_by_value=pickle_by_value)
