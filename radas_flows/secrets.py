"""Secret redaction for parameter spaces, texts and log records."""

# Named like the standard library's ``secrets``: import it as ``radas_flows.secrets`` (absolute
# imports only) and never put this directory on ``sys.path``.

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from radas_flows._redaction import (
    PROTECTED_LOGGERS,
    REDACTED,
    SecretFilter,
    install_secret_filter,
    protect_logs,
    redact_registered,
    redact_text,
    register_secret,
    registered_secrets,
    scrub_exception,
    scrubbed,
)

__all__ = [
    "PROTECTED_LOGGERS",
    "REDACTED",
    "SECRET_KEY_PATTERN",
    "SecretFilter",
    "install_secret_filter",
    "is_secret_key",
    "protect_logs",
    "redact",
    "redact_registered",
    "redact_text",
    "register_secret",
    "registered_secrets",
    "restore_secrets",
    "scrub_exception",
    "secret_strings",
    "split_secrets",
    "with_secrets",
]

#: Keys whose values are secrets (case-insensitive search anywhere in the key).
#: ``token`` does not match ``tokens`` or ``tokenizer`` so that hyperparameters such as
#: ``max_tokens`` stay visible; ``hf_token``, ``access_token`` and ``token`` are secrets.
SECRET_KEY_PATTERN: re.Pattern[str] = re.compile(
    r"api[_-]?key|passw(?:or)?d|token(?!s|iz)|secret|access[_-]?key|private[_-]?key|credential",
    re.IGNORECASE,
)

#: Separator of the flat secret paths returned by :func:`split_secrets`.
_PATH_SEP = "/"


def is_secret_key(key: object) -> bool:
    """Tell whether a mapping key names a secret.

    Args:
        key: A dictionary key; keys that are not strings are never secret.

    Returns:
        True when the key matches :data:`SECRET_KEY_PATTERN`.

    Example:
        >>> is_secret_key("api_key"), is_secret_key("DB_Password"), is_secret_key("max_tokens")
        (True, True, False)
    """
    return isinstance(key, str) and SECRET_KEY_PATTERN.search(key) is not None


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _redact_tree(obj: Any, path: tuple[str, ...], found: dict[str, Any] | None) -> Any:
    """The one walk of the secret-key tree: copy ``obj`` with each secret-keyed value redacted.

    Each secret replaced is recorded in ``found`` (when given) under its flat path.
    """
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            where = (*path, str(k))
            if is_secret_key(k) and not _is_empty(v):
                if found is not None:
                    found[_PATH_SEP.join(where)] = v
                out[k] = REDACTED
            else:
                out[k] = _redact_tree(v, where, found)
        return out
    if isinstance(obj, list | tuple):
        items = [_redact_tree(v, (*path, str(i)), found) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def redact(obj: Any) -> Any:
    """Copy nested dicts, lists and tuples with every secret-keyed value replaced.

    Containers are copied; other values are shared with the input. ``None`` and empty strings
    under secret keys stay as they are (nothing to hide, and "not set" stays recognisable).

    Args:
        obj: Any value, typically a parameter space or a configuration dict.

    Returns:
        The redacted copy.

    Example:
        >>> redact({"lr": 0.1, "wandb": {"enable": True, "api_key": "abc123"}})
        {'lr': 0.1, 'wandb': {'enable': True, 'api_key': '***'}}
    """
    return _redact_tree(obj, (), None)


def _is_search_space(value: object) -> bool:
    if isinstance(value, Mapping) and set(value) == {"grid_search"}:
        return True
    return type(value).__module__.startswith("ray.tune")


def split_secrets(param_space: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the secrets from a parameter space.

    The secret values must be constants (not search-space objects): they are put back as they
    are by :func:`restore_secrets`. Keys containing ``/`` cannot be told apart from nesting in
    the flat paths, so do not use ``/`` in the keys of a secret's parents.

    Args:
        param_space: The parameter space as the user wrote it.

    Returns:
        ``(redacted_space, secrets)``: the space with every secret replaced by
        :data:`REDACTED`, and a flat ``{"path/to/key": value}`` dict of the secrets (list
        items are addressed by their index).

    Raises:
        TypeError: ``param_space`` is not a mapping.
        ValueError: A secret holds a search space (``tune.grid_search``, ``tune.choice``, ...).

    Example:
        >>> space, found = split_secrets({"a": 1, "wandb": {"api_key": "k-42", "enable": True}})
        >>> space
        {'a': 1, 'wandb': {'api_key': '***', 'enable': True}}
        >>> found
        {'wandb/api_key': 'k-42'}
    """
    if not isinstance(param_space, Mapping):
        raise TypeError(
            f"param_space must be a dict, got {type(param_space).__name__}; "
            "pass the search space as a dict such as {'lr': tune.grid_search([0.1, 0.01])}."
        )
    found: dict[str, Any] = {}
    redacted = _redact_tree(param_space, (), found)
    for where, value in found.items():
        if _is_search_space(value):
            raise ValueError(
                f"param_space[{where!r}] is a secret but holds a search space; "
                "secrets must be constants (one value for every trial)."
            )
    return redacted, found


def _copy_containers(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _copy_containers(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_copy_containers(v) for v in obj]
    return obj


def restore_secrets(config: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    """Put the secrets found by :func:`split_secrets` back into a trial's config.

    Args:
        config: The config a trial received (with :data:`REDACTED` placeholders).
        secrets: The flat ``{"path/to/key": value}`` dict from :func:`split_secrets`.

    Returns:
        A copy of ``config`` (containers copied; tuples become lists) holding the real values.
        Missing parent dicts are created.

    Raises:
        ValueError: A secret's path runs through a value that is neither a dict nor a list.

    Example:
        >>> restore_secrets({"a": 1, "wandb": {"api_key": "***"}}, {"wandb/api_key": "k-42"})
        {'a': 1, 'wandb': {'api_key': 'k-42'}}
    """
    out: dict[str, Any] = _copy_containers(config)
    for path, value in secrets.items():
        parts = path.split(_PATH_SEP)
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                try:
                    index = int(part)
                    node[index]
                except (ValueError, IndexError) as e:
                    raise ValueError(
                        f"Cannot restore secret at {path!r}: {part!r} is not an index of the "
                        f"list at that place in the config (length {len(node)})."
                    ) from e
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ValueError(
                    f"Cannot restore secret at {path!r}: the config holds a "
                    f"{type(node).__name__} where a dict or list was expected."
                )
    return out


def secret_strings(secrets: Mapping[str, Any]) -> list[str]:
    """Every non-empty string inside the values of a secrets dict (nested values included).

    Example:
        >>> secret_strings({"wandb/api_key": "k-1", "db/credentials": {"user": "u", "pw": "p-2"}})
        ['k-1', 'u', 'p-2']
    """
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if value:
                found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item)
        else:
            getter = getattr(value, "get_secret_value", None)
            if callable(getter):
                walk(getter())

    for value in secrets.values():
        walk(value)
    return found


def with_secrets(trainable: Any, secrets: Mapping[str, Any]) -> Any:
    """Wrap a trainable so it gets the real secrets while everything else sees redacted ones.

    Tune stores, logs and shows the redacted config; the wrapper puts the secrets back
    (:func:`restore_secrets`) just before the trainable runs, and scrubs them from any
    exception the trainable raises (which Tune would otherwise write to the trial's
    ``error.txt`` and report everywhere).

    Args:
        trainable: A function of ``config`` or a ``ray.tune.Trainable`` subclass.
        secrets: The flat ``{"path/to/key": value}`` dict from :func:`split_secrets`.

    Returns:
        The wrapped trainable (the trainable itself when there are no secrets).

    Example:
        >>> space, found = split_secrets({"a": 1, "api_key": "k-7"})
        >>> wrapped = with_secrets(lambda config: config["api_key"], found)
        >>> space["api_key"], wrapped(space)
        ('***', 'k-7')
    """
    if not secrets:
        return trainable
    values = secret_strings(secrets)
    if inspect.isclass(trainable):

        class _WithSecrets(trainable):
            def setup(self, config: dict[str, Any], *args: Any, **kwargs: Any) -> None:
                with scrubbed(values):
                    super().setup(restore_secrets(config, secrets), *args, **kwargs)

            def step(self) -> Any:
                with scrubbed(values):
                    return super().step()

            def reset_config(self, new_config: dict[str, Any]) -> bool:
                with scrubbed(values):
                    return bool(super().reset_config(restore_secrets(new_config, secrets)))

        _WithSecrets.__name__ = trainable.__name__
        _WithSecrets.__qualname__ = trainable.__qualname__
        return _WithSecrets

    function: Callable[..., Any] = trainable

    @functools.wraps(function)
    def trainable_with_secrets(config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        with scrubbed(values):
            return function(restore_secrets(config, secrets), *args, **kwargs)

    return trainable_with_secrets
