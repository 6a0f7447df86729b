"""What is a secret in a parameter space, and redaction of trees, texts and log records."""

# Named like the standard library's ``secrets``: import it as ``radas_flows.secrets`` (absolute
# imports only) and never put this directory on ``sys.path``.

from __future__ import annotations

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
    scrub_errors,
    scrub_exception,
)
from radas_flows._trial_secrets import redact_metrics, restore_secrets, secret_strings, with_secrets

__all__ = [
    "NOT_SECRET_KEY",
    "PROTECTED_LOGGERS",
    "REDACTED",
    "REFERENCE_KEYS",
    "SECRET_KEY_PATTERN",
    "NotSecret",
    "Secret",
    "SecretFilter",
    "install_secret_filter",
    "is_secret_key",
    "is_secret_reference",
    "protect_logs",
    "redact",
    "redact_metrics",
    "redact_registered",
    "redact_text",
    "register_secret",
    "registered_secrets",
    "restore_secrets",
    "scrub_errors",
    "scrub_exception",
    "secret_strings",
    "split_secrets",
    "with_secrets",
]

#: Keys whose string values are secrets (case-insensitive search anywhere in the key).
#: ``token`` does not match ``tokens`` or ``tokenizer`` so that hyperparameters such as
#: ``max_tokens`` stay visible; ``hf_token``, ``access_token`` and ``token`` are secrets. Only
#: strings are secrets by default: ``max_token_len=512`` or ``private_key_size=2048`` is not.
SECRET_KEY_PATTERN: re.Pattern[str] = re.compile(
    r"api[_-]?key|passw(?:or)?d|token(?!s|iz)|secret|access[_-]?key|private[_-]?key|credential",
    re.IGNORECASE,
)

#: The forms a value under a secret key may take instead of the secret itself:
#: ``{"env": "VAR"}`` (an environment variable), ``{"secret_block": "name"}`` (a Prefect
#: ``Secret`` block), ``{"secret_ref": "<token>"}`` (a value ``run_experiment`` holds in its own
#: process for the length of the run). See :mod:`radas_flows.secret_refs`.
REFERENCE_KEYS: tuple[str, ...] = ("env", "secret_block", "secret_ref")

#: The JSON form of :class:`NotSecret`: ``{"not_secret": value}`` is ``value``, never a secret.
NOT_SECRET_KEY = "not_secret"

#: Separator of the flat secret paths returned by :func:`split_secrets`.
_PATH_SEP = "/"


class Secret:
    """Mark a string as a secret whatever key it sits under.

    The value reaches the trainable; everything else (Tune's stored config, the results table,
    logs, Prefect parameters) sees ``"***"``. Its ``repr`` never shows the value.

    Example:
        >>> from radas_flows.secrets import Secret, split_secrets
        >>> s = Secret("k-123")
        >>> s, s.get_secret_value()
        (Secret('***'), 'k-123')
        >>> split_secrets({"wandb_project_key": s})[0]
        {'wandb_project_key': '***'}
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise TypeError(
                f"Secret() takes a non-empty string, got {type(value).__name__}; numbers and "
                "booleans are not secrets (pass them as they are)."
            )
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("radas_flows.secrets.Secret", self._value))


class NotSecret:
    """Mark a value under a secret-looking key as an ordinary value (shown, searchable).

    From JSON write ``{"not_secret": value}``.

    Example:
        >>> from radas_flows.secrets import NotSecret, split_secrets
        >>> split_secrets({"token_type": NotSecret("bpe"), "hf_token": {"not_secret": "public"}})
        ({'token_type': 'bpe', 'hf_token': 'public'}, {})
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"NotSecret({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotSecret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("radas_flows.secrets.NotSecret", repr(self.value)))


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


def is_secret_reference(value: object) -> bool:
    """Tell whether a value is a secret reference such as ``{"env": "WANDB_API_KEY"}``.

    Example:
        >>> is_secret_reference({"env": "WANDB_API_KEY"}), is_secret_reference({"env": 1})
        (True, False)
    """
    if not isinstance(value, Mapping) or len(value) != 1:
        return False
    kind, name = next(iter(value.items()))
    return kind in REFERENCE_KEYS and isinstance(name, str) and bool(name)


def not_secret_value(value: object) -> tuple[bool, Any]:
    """``(True, v)`` for ``NotSecret(v)`` or ``{"not_secret": v}``, else ``(False, None)``."""
    if isinstance(value, NotSecret):
        return True, value.value
    if isinstance(value, Mapping) and len(value) == 1 and NOT_SECRET_KEY in value:
        return True, value[NOT_SECRET_KEY]
    return False, None


def _is_marked_secret(value: object) -> bool:
    """A :class:`Secret`, or any secret string object (pydantic ``SecretStr``)."""
    return isinstance(value, Secret) or callable(getattr(value, "get_secret_value", None))


def _is_domain(value: object) -> bool:
    return type(value).__module__.startswith("ray.tune")


def walk_secrets(
    obj: Any, leaf: Callable[[str, Any], Any], *, on_search: Callable[[str, str], None] | None
) -> Any:
    """The one walk of a parameter tree: copy ``obj`` with ``leaf(path, value)`` for each secret.

    A secret is a :class:`Secret` (or pydantic ``SecretStr``), a non-empty string anywhere
    below a secret-looking key, or a reference (:data:`REFERENCE_KEYS`) below such a key.
    :class:`NotSecret` values (and ``{"not_secret": v}``) are unwrapped and never secrets;
    numbers and booleans never are.
    A secret inside a search space (``grid_search`` values, ``tune.choice`` categories) is
    first reported to ``on_search(space path, secret path)``, which may raise; the categories
    of a ``tune.choice`` object are inspected, never copied.
    """

    def walk(node: Any, path: tuple[str, ...], secret: bool, space: str | None) -> Any:
        unwrapped, value = not_secret_value(node)
        if unwrapped:
            return value
        where = _PATH_SEP.join(path)
        is_leaf = _is_marked_secret(node) or (
            secret and ((isinstance(node, str) and node) or is_secret_reference(node))
        )
        if is_leaf:
            if space is not None and on_search is not None:
                on_search(space, where)
            return leaf(where, node)
        if isinstance(node, Mapping):
            if set(node) == {"grid_search"} and isinstance(node["grid_search"], list | tuple):
                return {"grid_search": walk(node["grid_search"], path, secret, space or where)}
            return {
                k: walk(v, (*path, str(k)), secret or is_secret_key(k), space)
                for k, v in node.items()
            }
        if isinstance(node, list | tuple):
            items = [walk(v, (*path, str(i)), secret, space) for i, v in enumerate(node)]
            return items if isinstance(node, list) else tuple(items)
        if _is_domain(node) and isinstance(getattr(node, "categories", None), list):
            walk(node.categories, path, secret, space or where)
        return node

    return walk(obj, (), False, None)


def redact(obj: Any) -> Any:
    """Copy nested dicts, lists and tuples with every secret (see :func:`walk_secrets`) replaced.

    Containers are copied; other values are shared with the input. ``None`` and empty strings
    under secret keys stay as they are (nothing to hide, and "not set" stays recognisable);
    numbers and booleans are never secrets.

    Args:
        obj: Any value, typically a parameter space or a configuration dict.

    Returns:
        The redacted copy.

    Example:
        >>> redact({"lr": 0.1, "max_token_len": 512, "wandb": {"api_key": "abc123"}})
        {'lr': 0.1, 'max_token_len': 512, 'wandb': {'api_key': '***'}}
    """
    return walk_secrets(obj, lambda _where, _value: REDACTED, on_search=None)


def split_secrets(param_space: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the secrets from a parameter space.

    Secrets cannot be searched over (Tune stores and shows every sampled config): a search
    space holding one is an error naming its key. Keys containing ``/`` cannot be told apart
    from nesting in the flat paths, so do not use ``/`` in the keys of a secret's parents.

    Args:
        param_space: The parameter space as the user wrote it.

    Returns:
        ``(redacted_space, secrets)``: the space with every secret replaced by
        :data:`REDACTED`, and a flat ``{"path/to/key": value}`` dict of the secrets as written
        (strings, :class:`Secret` objects or references; list items addressed by index).

    Raises:
        TypeError: ``param_space`` is not a mapping.
        ValueError: A search space holds a secret.

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

    def leaf(where: str, value: Any) -> str:
        found[where] = value
        return REDACTED

    def refuse(space: str, where: str) -> None:
        inner = f" (the secret at {where!r})" if where != space else ""
        raise ValueError(
            f"param_space[{space!r}] is a search space holding secret values{inner}: Tune "
            "stores and shows every sampled config in clear, so secrets cannot be searched "
            "over. Give the secret one fixed value outside the search space (or search over "
            "a name or index and look the secret up in the trainable); if the values are not "
            "secrets, wrap them in radas_flows.secrets.NotSecret(...) (JSON: "
            '{"not_secret": ...}).'
        )

    redacted = walk_secrets(param_space, leaf, on_search=refuse)
    return redacted, found
