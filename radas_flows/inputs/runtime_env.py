"""The runtime_env rules, for local and cluster runs alike: allowed keys and value types."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from radas_flows.errors import RadasValueError

__all__ = [
    "IMAGE_URI_RULE",
    "LOCAL_RUNTIME_ENV_KEYS",
    "RUNTIME_ENV_KEYS",
    "WORKING_DIR_RULE",
    "RuntimeEnvError",
    "check_runtime_env",
    "local_runtime_env",
]

#: The runtime_env keys a user may set on a cluster (``working_dir`` is always set by radas_flows).
RUNTIME_ENV_KEYS: tuple[str, ...] = (
    "pip",
    "uv",
    "conda",
    "env_vars",
    "py_modules",
    "excludes",
    "py_executable",
    "nsight",
    "image_uri",
)

#: Those a local Ray applies too (``pip``, ``uv`` and ``conda`` where their tools are installed
#: here); ``nsight`` and ``image_uri`` need a cluster.
LOCAL_RUNTIME_ENV_KEYS: tuple[str, ...] = (
    "pip",
    "uv",
    "conda",
    "env_vars",
    "py_modules",
    "excludes",
    "py_executable",
)

WORKING_DIR_RULE = (
    "working_dir (str): Specifies the working directory for the Ray workers. Radas "
    "automatically sets this to the current working directory where you run your script "
    "(i.e., where you `cd` to before running `python`). Do not specify this field yourself."
)
"""The reference's rule for ``working_dir``, quoted in errors."""

IMAGE_URI_RULE = (
    "The `image_uri` field currently cannot be used together with other fields of "
    "runtime_env (e.g., `working_dir`, `py_modules`, `excludes`, `pip`, etc.). If you need "
    "to use `image_uri`, it must be the only field in runtime_env."
)
"""The reference's rule for ``image_uri``, quoted in errors."""

_PIP_DICT_KEYS = frozenset({"packages", "pip_check", "pip_version", "pip_install_options"})
_UV_DICT_KEYS = frozenset({"packages", "uv_check", "uv_version", "uv_pip_install_options"})


class RuntimeEnvError(RadasValueError):
    """A user's runtime_env breaks one of the rules."""


def _check_str_list(key: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuntimeEnvError(f"runtime_env[{key!r}] must be a list of strings, got {value!r}.")


def _check_requirements(key: str, value: Any, dict_keys: frozenset[str]) -> None:
    if isinstance(value, str):
        if not value.strip():
            raise RuntimeEnvError(f"runtime_env[{key!r}] is an empty string; name a file.")
        return
    if isinstance(value, list):
        _check_str_list(key, value)
        return
    if isinstance(value, dict):
        unknown = sorted(set(value) - dict_keys)
        if unknown:
            raise RuntimeEnvError(
                f"runtime_env[{key!r}] has unknown keys {unknown}; allowed: "
                f"{', '.join(sorted(dict_keys))}."
            )
        if "packages" not in value:
            raise RuntimeEnvError(
                f"runtime_env[{key!r}] as a dict needs 'packages' (a list of requirements)."
            )
        _check_str_list(f"{key}']['packages", value["packages"])
        return
    raise RuntimeEnvError(
        f"runtime_env[{key!r}] must be a list of requirements, a requirements file path or "
        f"a dict with 'packages', got {type(value).__name__} {value!r}."
    )


def _check_env_vars(value: Any) -> None:
    if not isinstance(value, dict):
        raise RuntimeEnvError(f"runtime_env['env_vars'] must be a dict of strings, got {value!r}.")
    for name, val in value.items():
        if not isinstance(name, str) or not isinstance(val, str):
            raise RuntimeEnvError(
                f"runtime_env['env_vars'] must map strings to strings; {name!r}: {val!r} "
                f"is not. Write the value as a string, e.g. {str(name)!r}: {str(val)!r}."
            )


def _check_value(key: str, value: Any) -> None:
    """Check the type of one runtime_env value (the reference's types)."""
    if key == "pip":
        _check_requirements(key, value, _PIP_DICT_KEYS)
    elif key == "uv":
        _check_requirements(key, value, _UV_DICT_KEYS)
    elif key == "conda":
        if not isinstance(value, str | dict) or (isinstance(value, str) and not value.strip()):
            raise RuntimeEnvError(
                f"runtime_env['conda'] must be an environment name, an environment.yml path "
                f"or a dict (the environment YAML), got {value!r}."
            )
    elif key == "env_vars":
        _check_env_vars(value)
    elif key == "py_modules":
        if not isinstance(value, list) or not all(
            isinstance(v, str | os.PathLike | ModuleType) for v in value
        ):
            raise RuntimeEnvError(
                f"runtime_env['py_modules'] must be a list of paths, URIs or imported "
                f"modules, got {value!r}."
            )
    elif key == "excludes":
        _check_str_list(key, value)
    elif key == "py_executable":
        if not isinstance(value, str) or not value.strip():
            raise RuntimeEnvError(
                f"runtime_env['py_executable'] must be a non-empty string, got {value!r}."
            )
    elif key == "nsight":
        if not (
            isinstance(value, str)
            or (
                isinstance(value, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
            )
        ):
            raise RuntimeEnvError(
                f"runtime_env['nsight'] must be \"default\" or a dict of string options, "
                f"got {value!r}."
            )
    elif key == "image_uri" and (not isinstance(value, str) or not value.strip()):
        raise RuntimeEnvError(
            f"runtime_env['image_uri'] must be an image name such as "
            f"'anyscale/ray:2.31.0-py39-cpu', got {value!r}."
        )


def check_runtime_env(runtime_env: object, *, local: bool) -> dict[str, Any]:
    """Check a user's runtime_env against the rules of a local or a cluster run.

    The rules (from the radas reference): ``working_dir`` is always the directory the user
    runs their script from and may not be set; the keys are ``RUNTIME_ENV_KEYS``, and
    ``LOCAL_RUNTIME_ENV_KEYS`` for a local run; ``image_uri`` must be the only field; at
    most one of ``pip``, ``uv`` and ``conda``; each value has the type Ray expects.

    Args:
        runtime_env: The user's runtime_env (``None`` is empty).
        local: Check for a local run (this Python environment) instead of a cluster job.

    Returns:
        A shallow copy of ``runtime_env`` as a dict.

    Raises:
        RuntimeEnvError: A rule is broken; the message names the key and the fix.

    Example:
        >>> check_runtime_env({"env_vars": {"OMP_NUM_THREADS": "1"}}, local=True)
        {'env_vars': {'OMP_NUM_THREADS': '1'}}
    """
    if not isinstance(runtime_env, Mapping | None):
        raise RuntimeEnvError(f"runtime_env must be a dict, got {type(runtime_env).__name__}.")
    env = dict(runtime_env or {})
    if "working_dir" in env:
        raise RuntimeEnvError(
            f"runtime_env['working_dir'] must not be set (got {env['working_dir']!r}): it is "
            f'always the directory you run your script from. The rule: "{WORKING_DIR_RULE}" '
            "Remove 'working_dir', and cd into the directory holding your script and "
            "trainable before running it."
        )
    unknown = sorted(k for k in env if k not in RUNTIME_ENV_KEYS)
    if unknown:
        raise RuntimeEnvError(
            f"runtime_env has unknown key(s) {unknown}; the allowed keys are "
            f"{', '.join(RUNTIME_ENV_KEYS)}."
        )
    if "image_uri" in env and len(env) > 1:
        others = sorted(k for k in env if k != "image_uri")
        raise RuntimeEnvError(
            f"runtime_env sets 'image_uri' together with {others}. The rule: "
            f"\"{IMAGE_URI_RULE}\" Remove the other fields, or drop 'image_uri'."
        )
    installers = [k for k in ("pip", "uv", "conda") if k in env]
    if len(installers) > 1:
        raise RuntimeEnvError(
            f"runtime_env sets {' and '.join(repr(k) for k in installers)}; only one of "
            f"'pip', 'uv' and 'conda' may be set. To use pip with conda, set only 'conda' "
            f"and list the pip packages inside the conda environment "
            f"(dependencies: [..., {{pip: [...]}}])."
        )
    if local:
        not_local = sorted(set(env) - set(LOCAL_RUNTIME_ENV_KEYS))
        if not_local:
            raise RuntimeEnvError(
                f"runtime_env key(s) {not_local!r} need a cluster: a local Ray has no "
                "container runtime or profiler set up for them. Run with "
                "run_with='cluster:<name>', or leave them out."
            )
    for key, value in env.items():
        _check_value(key, value)
    if local and installers:
        _check_local_installer(installers[0])
    return env


def _check_local_installer(key: str) -> None:
    """Refuse ``pip``/``uv``/``conda`` on a local run when this machine lacks what Ray runs.

    For ``pip`` and ``uv`` Ray copies this virtual environment (or makes one with
    ``virtualenv``) and runs ``python -m pip`` or ``python -m uv`` in it; for ``conda`` it
    runs the ``conda`` program.
    """
    import importlib.util
    import shutil
    import sys

    def installed(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    missing: list[str] = []
    if key in ("pip", "uv"):
        if not installed("virtualenv"):
            missing.append("virtualenv")
        if key == "pip" and not installed("pip"):
            missing.append("pip")
        if key == "uv" and not installed("uv") and not installed("pip"):
            missing.append("uv (or pip, to install uv from the package index)")
        if missing:
            raise RuntimeEnvError(
                f"runtime_env[{key!r}] on a local run needs {' and '.join(missing)} in this "
                f"Python environment ({sys.prefix}): Ray installs the packages into a copy of "
                f"it. Install {' and '.join(m.split(' ')[0] for m in missing)} there (for "
                f"example `{sys.executable} -m ensurepip` for pip, or `uv pip install "
                f"--python {sys.executable} ...`), or run on a cluster."
            )
        return
    home = os.environ.get("RAY_CONDA_HOME")  # Ray runs $RAY_CONDA_HOME/bin/conda, else conda
    conda = os.path.join(home, "bin", "conda") if home else os.environ.get("CONDA_EXE", "conda")
    if not shutil.which(conda):
        raise RuntimeEnvError(
            "runtime_env['conda'] on a local run needs conda on this machine: no `conda` "
            "program was found (PATH, CONDA_EXE or RAY_CONDA_HOME). Install conda, use "
            "'pip' or 'uv' instead, or run on a cluster."
        )


def local_runtime_env(runtime_env: Mapping[str, Any]) -> dict[str, Any]:
    """Return the parts of a checked runtime_env that a local Ray applies.

    Example:
        >>> local_runtime_env({"env_vars": {"A": "1"}, "excludes": ["*.log"]})
        {'env_vars': {'A': '1'}, 'excludes': ['*.log']}
    """
    return {k: v for k, v in runtime_env.items() if k in LOCAL_RUNTIME_ENV_KEYS}
