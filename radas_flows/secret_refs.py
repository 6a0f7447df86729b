"""Secrets in ``param_space`` by reference: environment variables, Prefect Secret blocks, memory."""

from __future__ import annotations

import secrets as _stdlib_secrets
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from radas_flows.errors import RadasValueError
from radas_flows.secrets import (
    is_secret_key,
    protect_logs,
    register_secret,
    secret_strings,
    split_secrets,
)

__all__ = [
    "REFERENCE_KEYS",
    "is_secret_reference",
    "release_secrets",
    "resolve_secret_references",
    "separate_secrets",
    "stash_secrets",
]

#: The forms a value under a secret key may take instead of the secret itself:
#: ``{"env": "VAR"}`` (an environment variable where the flow runs), ``{"secret_block": "name"}``
#: (a Prefect ``Secret`` block), ``{"secret_ref": "<token>"}`` (a value ``run_experiment`` holds
#: in its own process for the length of the run).
REFERENCE_KEYS: tuple[str, ...] = ("env", "secret_block", "secret_ref")

_stash: dict[str, Any] = {}
_stash_lock = threading.Lock()


def is_secret_reference(value: object) -> bool:
    """Tell whether a value is a secret reference such as ``{"env": "WANDB_API_KEY"}``.

    Example:
        >>> is_secret_reference({"env": "WANDB_API_KEY"}), is_secret_reference({"env": 1})
        (True, False)
    """
    return (
        isinstance(value, Mapping)
        and len(value) == 1
        and next(iter(value)) in REFERENCE_KEYS
        and isinstance(next(iter(value.values())), str)
        and bool(next(iter(value.values())))
    )


def _is_empty(value: object) -> bool:
    return value is None or value == ""


def _map_secrets(space: Any, fn: Any, path: tuple[str, ...] = ()) -> Any:
    """Copy ``space`` with ``fn(path, value)`` applied to each non-empty secret-keyed value."""
    if isinstance(space, Mapping):
        out: dict[Any, Any] = {}
        for key, value in space.items():
            where = (*path, str(key))
            if is_secret_key(key) and not _is_empty(value):
                out[key] = fn("/".join(where), value)
            else:
                out[key] = _map_secrets(value, fn, where)
        return out
    if isinstance(space, list):
        return [_map_secrets(v, fn, (*path, str(i))) for i, v in enumerate(space)]
    if isinstance(space, tuple):
        return tuple(_map_secrets(v, fn, (*path, str(i))) for i, v in enumerate(space))
    return space


def stash_secrets(param_space: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Replace each literal secret by a ``{"secret_ref": token}`` held in this process.

    ``run_experiment`` passes the result to the ``radas`` flow, so Prefect stores references
    as the flow run's parameters, never the secrets. References already in the space stay.

    Args:
        param_space: The parameter space as the caller wrote it.

    Returns:
        ``(space with references, tokens)``; give the tokens to :func:`release_secrets` once
        the flow has ended.

    Example:
        >>> space, tokens = stash_secrets({"lr": 0.1, "wandb": {"api_key": "k-1"}})
        >>> space["wandb"]["api_key"] == {"secret_ref": tokens[0]}
        True
        >>> resolve_secret_references(space)["wandb"]["api_key"]
        'k-1'
        >>> release_secrets(tokens)
    """
    tokens: list[str] = []

    def stash(_where: str, value: Any) -> Any:
        if is_secret_reference(value):
            return value
        token = _stdlib_secrets.token_hex(16)
        with _stash_lock:
            _stash[token] = value
        tokens.append(token)
        return {"secret_ref": token}

    return _map_secrets(dict(param_space), stash), tokens


def release_secrets(tokens: Iterable[str]) -> None:
    """Forget the values stashed by :func:`stash_secrets` (unknown tokens are ignored).

    Example:
        >>> release_secrets(["no-such-token"])
    """
    with _stash_lock:
        for token in tokens:
            _stash.pop(token, None)


def _resolve(where: str, value: Any) -> Any:
    if not is_secret_reference(value):
        return value
    kind, name = next(iter(value.items()))
    if kind == "env":
        import os

        found = os.environ.get(name)
        if not found:
            raise RadasValueError(
                f"param_space[{where!r}] refers to the environment variable {name!r}, which is "
                "not set where the flow runs. Set it in that environment (the worker's, or the "
                "deployment's job_variables env), or use {'secret_block': '<name>'}."
            )
        return found
    if kind == "secret_block":
        from prefect.blocks.system import Secret

        try:
            block: Secret = Secret.load(name, _sync=True)  # type: ignore[call-arg, assignment]
        except Exception as e:
            raise RadasValueError(
                f"param_space[{where!r}] refers to the Prefect Secret block {name!r}, which "
                f"cannot be loaded ({type(e).__name__}). Create it first, e.g. "
                f"`Secret(value=...).save({name!r})` or in the UI under Blocks."
            ) from e
        return block.get()
    with _stash_lock:
        if name in _stash:
            return _stash[name]
    raise RadasValueError(
        f"param_space[{where!r}] holds a secret reference of another process: secrets given "
        "to run_experiment live only in the calling process for the length of its run, so a "
        "deployment run or a retried flow run cannot see them. Give such runs "
        "{'env': 'VARIABLE'} or {'secret_block': '<name>'} under the secret key instead."
    )


def resolve_secret_references(param_space: Mapping[str, Any]) -> dict[str, Any]:
    """Replace each secret reference under a secret key by the value it refers to.

    Args:
        param_space: A parameter space that may hold references (see :data:`REFERENCE_KEYS`).

    Returns:
        A copy with the references resolved; everything else unchanged.

    Raises:
        RadasValueError: A reference cannot be resolved (the message names the key and the
            variable or block, never a value).

    Example:
        >>> import os
        >>> os.environ["DOC_TOKEN"] = "t-9"
        >>> resolve_secret_references({"hf_token": {"env": "DOC_TOKEN"}, "n": {"env": "X"}})
        {'hf_token': 't-9', 'n': {'env': 'X'}}
    """
    return _map_secrets(dict(param_space), _resolve)


def separate_secrets(param_space: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resolve references, split the secrets off and protect the logs from them.

    The secret strings are registered (:func:`radas_flows.secrets.register_secret`) and the
    secret filter is installed on Prefect's, Ray's and the root logger's handlers.

    Args:
        param_space: The parameter space: literal secrets and references alike.

    Returns:
        ``(redacted space, {"path/to/key": value})`` as
        :func:`radas_flows.secrets.split_secrets` returns them.

    Raises:
        RadasValueError: A reference cannot be resolved, or a secret holds a search space.

    Example:
        >>> space, found = separate_secrets({"a": 1, "api_key": "k-3"})
        >>> space, found
        ({'a': 1, 'api_key': '***'}, {'api_key': 'k-3'})
    """
    resolved = resolve_secret_references(param_space)
    try:
        space, found = split_secrets(resolved)
    except ValueError as e:
        raise RadasValueError(
            f"{e} Put a fixed value there, or move the search space to a key that is not a secret."
        ) from e
    if found:
        for value in secret_strings(found):
            register_secret(value)
        protect_logs()
    return space, found
