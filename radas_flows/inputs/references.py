"""Code given as ``"module:attribute"``: check the form, import it, register it with Ray."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import site
import sys
import sysconfig
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from radas_flows.inputs.rules import ParameterError

__all__ = [
    "SEPARATE_FILE_RULE",
    "TrainableReference",
    "check_project_module",
    "import_reference",
    "reference_of",
    "resolve_callable_reference",
    "resolve_trainable_reference",
    "split_reference",
    "validate_trainable_reference",
]

SEPARATE_FILE_RULE = (
    "When using a cluster, the trainable MUST be defined in a separate file "
    "(for example trainable.py next to your script, imported with `from trainable import "
    "trainable`), and you run your script from that directory."
)
"""The reference's rule for cluster trainables, quoted in errors."""

_REFERENCE_EXAMPLE = "e.g. 'train:trainable' for the function trainable in train.py"


def split_reference(ref: object, field: str = "trainable") -> tuple[str, str]:
    """Split ``"module:attribute"`` into its parts; raise ParameterError naming ``field``."""
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
    split_reference(ref)
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


_RADAS_FLOWS_DIR = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _foreign_areas() -> list[tuple[str, str]]:
    """``(folder, what it is)`` for code that is never the project's, most specific first."""
    areas = [(_RADAS_FLOWS_DIR, "radas_flows itself")]
    site_dirs = {sysconfig.get_path(name) for name in ("purelib", "platlib")}
    site_dirs.update(getattr(site, "getsitepackages", list)())
    site_dirs.add(site.getusersitepackages())
    areas += [(path, "installed in site-packages") for path in sorted(site_dirs) if path]
    for name in ("stdlib", "platstdlib"):
        areas.append((sysconfig.get_path(name), "the standard library"))
    if sys.prefix != sys.base_prefix:  # a virtual environment: nothing in it is project code
        areas.append((sys.prefix, "installed in the virtual environment"))
    return [(os.path.realpath(path), what) for path, what in areas if path]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _where(locations: list[str], directory: str, *, namespace: bool = False) -> str | None:
    """What the code at ``locations`` is, when it is not the project's in ``directory``.

    A namespace package (``namespace``) may also have portions outside the project on the
    path, as long as none is in a foreign area and one is in the project; the module imported
    from it is checked on its own file afterwards.
    """
    if not locations:
        return "built into Python"
    project = os.path.realpath(directory)
    outside = []
    for location in (os.path.realpath(path) for path in locations):
        for folder, what in _foreign_areas():
            if _inside(location, folder):
                return what
        if not _inside(location, project):
            outside.append(location)
    if outside and (not namespace or len(outside) == len(locations)):
        return f"outside the run's working directory ({outside[0]})"
    return None


def _is_namespace(module: Any) -> bool:
    return not getattr(module, "__file__", None) and hasattr(module, "__path__")


def _spec_locations(module_name: str) -> tuple[list[str], bool] | None:
    """Where a top-level module would be imported from, without running it, and whether it
    is a namespace package (None: not found)."""
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return _locations(loaded), _is_namespace(loaded)
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations is not None:
        paths = [os.path.abspath(p) for p in spec.submodule_search_locations]
        return paths, not (spec.has_location and spec.origin)
    return ([os.path.abspath(spec.origin)] if spec.has_location and spec.origin else []), False


def _not_project_error(field: str, ref: str, module: str, what: str, directory: str) -> str:
    named, attribute = (part.strip() for part in ref.split(":", 1))
    return (
        f"{field}={ref!r}: module {module!r} is {what}, not code of the project in {directory}: "
        "references given as parameters may name only modules in the project (files under the "
        "run's working directory), never the standard library, site-packages or radas_flows "
        "itself. To use it, expose it from the project: add a small module there, e.g. "
        f"hooks.py containing `from {named} import {attribute.split('.')[0]}`, and give "
        f"{field}='hooks:{attribute}'."
    )


def check_project_module(ref: str, *, field: str, directory: str, module: Any = None) -> None:
    """Refuse a reference whose module is not the project's code in ``directory``.

    Checked before the module is imported (from where it would be found) and, with
    ``module``, again after (the module that was imported).

    Raises:
        ParameterError: The module is part of the standard library, installed in
            site-packages or the virtual environment, radas_flows itself, or outside
            ``directory``; the message says how to expose a function from the project.

    Example:
        >>> check_project_module("os:system", field="process_df_fn", directory="/p")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        radas_flows.inputs.rules.ParameterError: process_df_fn='os:system': module 'os' is the standard library, not code of the project in /p: ...
    """  # noqa: E501
    module_name = ref.split(":", 1)[0].strip()
    top = module_name.split(".")[0]
    checks = [(top, _spec_locations(top))]
    if module is not None:
        checks.append((module_name, (_locations(module), _is_namespace(module))))
    for name, found in checks:
        if found is None:  # not found: the import reports it
            continue
        what = _where(found[0], directory, namespace=found[1])
        if what is not None:
            raise ParameterError(_not_project_error(field, ref, name, what, directory))


def import_reference(
    ref: str,
    *,
    field: str = "trainable",
    cwd: str | os.PathLike[str] | None = None,
    pickle_by_value: bool = True,
    project_only: bool = True,
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
        project_only: The reference arrived as a parameter (JSON): its module must be the
            project's code, a file under ``cwd`` (see :func:`check_project_module`), and the
            attribute path may not pass through a module or a special ``__name__``. Checked
            before anything is imported. Only radas itself, resolving a reference it wrote
            (the cluster driver), turns it off.

    Returns:
        The object the reference names.

    Raises:
        ParameterError: Malformed reference, a module outside the project, module not found
            in ``cwd``, import error inside the module, or a missing attribute.

    Example:
        >>> import_reference("json:dumps", field="process_df_fn", project_only=False).__name__
        'dumps'
    """
    module_name, attribute = split_reference(ref, field)
    directory = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    importlib.invalidate_caches()
    if project_only:
        check_project_module(ref, field=field, directory=directory)
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

    if project_only:
        check_project_module(ref, field=field, directory=directory, module=module)
    target: Any = module
    walked = module_name
    for piece in attribute.split("."):
        if project_only and piece.startswith("__") and piece.endswith("__"):
            raise ParameterError(
                f"{field}={ref!r} names a special attribute {piece!r}: name a function or "
                "class the project defines or imports, e.g. 'hooks:process_df'."
            )
        if not hasattr(target, piece):
            names = sorted(n for n in dir(target) if not n.startswith("_"))
            raise ParameterError(
                f"{field}={ref!r}: {walked!r} has no attribute {piece!r}; it defines {names}."
            )
        target = getattr(target, piece)
        walked = f"{walked}.{piece}"
        if project_only and inspect.ismodule(target) and _where(_locations(target), directory):
            raise ParameterError(
                f"{field}={ref!r} reaches the module {target.__name__!r} through an attribute "
                f"({walked!r}): name modules before the colon; references given as parameters "
                "may name only modules in the project. To use a function of that module, "
                f"import it in a module of the project (`from {target.__name__} import ...`) "
                "and name it there."
            )

    top = sys.modules[module_name.split(".")[0]]
    if pickle_by_value and any(path.startswith(directory + os.sep) for path in _locations(top)):
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(top)
    return target


def resolve_trainable_reference(
    ref: str,
    *,
    cwd: str | os.PathLike[str] | None = None,
    pickle_by_value: bool = True,
    project_only: bool = True,
) -> Callable[..., Any]:
    """Import the trainable that a ``"module:attribute"`` reference names.

    The one implementation behind ``trainable="module:attribute"`` everywhere (flow
    parameters, ``run_experiment``, the cluster driver); see ``import_reference`` for where
    it looks and how the code reaches Ray workers.

    Args:
        ref: ``"module:attribute"``; both parts may be dotted (``"pkg.mod:Class.method"``).
        cwd: Directory to import from (the run's working directory).
        pickle_by_value: Register the module with ``ray.cloudpickle.register_pickle_by_value``.
        project_only: Only modules of the project (see ``import_reference``).

    Returns:
        The trainable: a callable, or a ``ray.tune.Trainable`` subclass.

    Raises:
        ParameterError: Malformed reference, module not found in ``cwd``, import error inside
            the module, missing attribute, or an object that is not a trainable.

    Example:
        >>> fn = resolve_trainable_reference("train:trainable", cwd="examples")  # doctest: +SKIP
    """
    target = import_reference(
        ref,
        field="trainable",
        cwd=cwd,
        pickle_by_value=pickle_by_value,
        project_only=project_only,
    )
    if inspect.isclass(target):
        from ray.tune import Trainable

        if not issubclass(target, Trainable):
            raise ParameterError(
                f"trainable={ref!r}: class {target.__qualname__} is not a ray.tune.Trainable "
                "subclass; name a function taking config, or subclass ray.tune.Trainable."
            )
    elif not callable(target):
        module_name, attribute = split_reference(ref)
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
        ParameterError: The reference names code outside the project (see
            ``import_reference``), cannot be imported or does not name a callable.

    Example:
        >>> resolve_callable_reference("analysis:process_df", field="process_df_fn",
        ...                            cwd="my_project")  # doctest: +SKIP
    """
    target = import_reference(ref, field=field, cwd=cwd)
    if not callable(target):
        raise ParameterError(
            f"{field}={ref!r} names a {type(target).__name__}, not a function: name a "
            "function, e.g. 'analysis:process_df'."
        )
    fn: Callable[..., Any] = target
    return fn
