"""Secret redaction for parameter spaces, texts and log records."""

# Named like the standard library's ``secrets``: import it as ``radas_flows.secrets`` (absolute
# imports only) and never put this directory on ``sys.path``.

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

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

#: Placeholder that replaces a secret value.
REDACTED = "***"

#: Separator of the flat secret paths returned by :func:`split_secrets`.
_PATH_SEP = "/"

_registered: set[str] = set()
_registered_lock = threading.Lock()


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
    if isinstance(obj, Mapping):
        return {
            k: (REDACTED if is_secret_key(k) and not _is_empty(v) else redact(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(redact(v) for v in obj)
    return obj


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

    def walk(obj: Any, path: tuple[str, ...]) -> Any:
        if isinstance(obj, Mapping):
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                if is_secret_key(k) and not _is_empty(v):
                    where = _PATH_SEP.join((*path, str(k)))
                    if _is_search_space(v):
                        raise ValueError(
                            f"param_space[{where!r}] is a secret but holds a search space; "
                            "secrets must be constants (one value for every trial)."
                        )
                    found[where] = v
                    out[k] = REDACTED
                else:
                    out[k] = walk(v, (*path, str(k)))
            return out
        if isinstance(obj, list):
            return [walk(v, (*path, str(i))) for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            return tuple(walk(v, (*path, str(i))) for i, v in enumerate(obj))
        return obj

    return walk(param_space, ()), found


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


def redact_text(text: str, secrets_values: Iterable[object]) -> str:
    """Replace every occurrence of the given secret values in a text.

    Only non-empty strings are replaced (numbers and other values are not credentials and would
    erase ordinary digits); longer values are replaced first.

    Args:
        text: Any text: a message, an exception text, a rendered table.
        secrets_values: The raw secret values.

    Returns:
        The text with each value replaced by :data:`REDACTED`.

    Example:
        >>> redact_text("login as bob with hunter2", ["hunter2", None, 42])
        'login as bob with ***'
    """
    values = sorted({v for v in secrets_values if isinstance(v, str) and v}, key=len, reverse=True)
    for value in values:
        text = text.replace(value, REDACTED)
    return text


def register_secret(value: object) -> None:
    """Add a value to the process-wide set of secrets scrubbed from texts and logs.

    Args:
        value: A string, or an object with ``get_secret_value()`` (pydantic ``SecretStr``).
            ``None`` and empty strings are ignored.

    Raises:
        TypeError: ``value`` is neither a string, ``None`` nor a secret string object.

    Example:
        >>> register_secret("s3cr3t-token-value")
        >>> redact_registered("token=s3cr3t-token-value")
        'token=***'
    """
    getter = getattr(value, "get_secret_value", None)
    if callable(getter):
        value = getter()
    if value is None or value == "":
        return
    if not isinstance(value, str):
        raise TypeError(
            f"register_secret expects a string secret, got {type(value).__name__}; "
            "pass str(value) if the secret really is that value."
        )
    with _registered_lock:
        _registered.add(value)


def registered_secrets() -> frozenset[str]:
    """Return the secrets registered with :func:`register_secret` in this process.

    Example:
        >>> register_secret("another-s3cr3t")
        >>> "another-s3cr3t" in registered_secrets()
        True
    """
    with _registered_lock:
        return frozenset(_registered)


def redact_registered(text: str) -> str:
    """Replace every registered secret in a text (see :func:`register_secret`).

    Example:
        >>> register_secret("pw-0xCAFE")
        >>> redact_registered("password is pw-0xCAFE")
        'password is ***'
    """
    return redact_text(text, registered_secrets())


class SecretFilter(logging.Filter):
    """Logging filter that scrubs registered secrets from messages, tracebacks and stacks.

    Attach it to handlers (a filter on a logger does not see records propagated from child
    loggers); :func:`install_secret_filter` does that. The record is rewritten, never dropped.

    Args:
        secrets: Extra values to scrub besides the process-wide registered ones.

    Example:
        >>> import logging, io
        >>> stream = io.StringIO()
        >>> handler = logging.StreamHandler(stream)
        >>> handler.addFilter(SecretFilter(["pa55word"]))
        >>> log = logging.getLogger("radas_flows.doctest.secretfilter")
        >>> log.addHandler(handler)
        >>> log.warning("connecting with %s", "pa55word")
        >>> stream.getvalue()
        'connecting with ***\\n'
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._extra = frozenset(s for s in secrets if isinstance(s, str) and s)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` so that it holds no secret; always keep it."""
        values = self._extra | registered_secrets()
        if not values:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let the handler report it as usual
            return True
        redacted = redact_text(message, values)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, values)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, values)
        return True


def install_secret_filter(logger: logging.Logger | None = None) -> SecretFilter:
    """Attach one :class:`SecretFilter` to a logger and to each of its current handlers.

    Handlers added later are not covered; call again after configuring logging. Calling twice
    does not add a second filter.

    Args:
        logger: The logger to protect; the root logger by default.

    Returns:
        The filter in use.

    Example:
        >>> import logging
        >>> f = install_secret_filter(logging.getLogger("radas_flows.doctest.install"))
        >>> f is install_secret_filter(logging.getLogger("radas_flows.doctest.install"))
        True
    """
    target = logger if logger is not None else logging.getLogger()
    existing = next((f for f in target.filters if isinstance(f, SecretFilter)), None)
    secret_filter = existing if existing is not None else SecretFilter()
    if existing is None:
        target.addFilter(secret_filter)
    for handler in target.handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(secret_filter)
    return secret_filter


#: Loggers whose handlers :func:`protect_logs` guards: the root logger (console, pytest, most
#: applications), Prefect's run loggers (their handler sends records to the Prefect API), Ray's
#: and this package's.
PROTECTED_LOGGERS: tuple[str, ...] = (
    "",
    "prefect",
    "prefect.flow_runs",
    "prefect.task_runs",
    "prefect.extra",
    "ray",
    "ray.tune",
    "ray.train",
    "radas_flows",
)


def protect_logs(loggers: Iterable[str] = PROTECTED_LOGGERS) -> None:
    """Install the :class:`SecretFilter` on the handlers of Prefect's, Ray's and the root logger.

    Registered secrets (:func:`register_secret`) are then scrubbed from every record these
    handlers emit, the Prefect API's log handler included. Call it after logging is configured
    (inside a flow run it is); calling it again covers handlers added since.

    Args:
        loggers: Logger names; :data:`PROTECTED_LOGGERS` by default.

    Example:
        >>> register_secret("pr0tected-value")
        >>> protect_logs()
        >>> all(
        ...     any(isinstance(f, SecretFilter) for f in h.filters)
        ...     for h in logging.getLogger().handlers
        ... )
        True
    """
    for name in loggers:
        install_secret_filter(logging.getLogger(name))


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


def _holds(text: str, values: Iterable[str]) -> bool:
    return any(value in text for value in values)


def scrub_exception(
    exc: BaseException, secrets_values: Iterable[object] | None = None
) -> BaseException:
    """Remove secret values from an exception's text, its notes and its chained causes.

    The exception is cleaned in place (its ``args``, string attributes and notes), so the same
    object, with its type and traceback, can be raised on. When its text still holds a secret
    after that (an exception computing its message some other way), a :class:`RuntimeError`
    with the redacted text and traceback is returned instead; raise that one ``from None``.

    Args:
        exc: The exception.
        secrets_values: The raw values; the registered secrets by default.

    Returns:
        ``exc`` itself, or the replacement.

    Example:
        >>> error = ValueError("login failed for key k-0xBEEF")
        >>> scrub_exception(error, ["k-0xBEEF"]) is error, str(error)
        (True, 'login failed for key ***')
    """
    values = [
        v
        for v in (registered_secrets() if secrets_values is None else secrets_values)
        if isinstance(v, str) and v
    ]
    if not values:
        return exc
    seen: set[int] = set()

    def clean(error: BaseException | None) -> None:
        if error is None or id(error) in seen:
            return
        seen.add(id(error))
        with contextlib.suppress(Exception):
            error.args = tuple(
                redact_text(a, values) if isinstance(a, str) else a for a in error.args
            )
        for name, value in list(getattr(error, "__dict__", {}).items()):
            if isinstance(value, str) and _holds(value, values):
                with contextlib.suppress(Exception):
                    setattr(error, name, redact_text(value, values))
            elif name == "__notes__" and isinstance(value, list):
                value[:] = [redact_text(n, values) if isinstance(n, str) else n for n in value]
        for name in ("filename", "filename2", "strerror"):  # OSError's slots
            value = getattr(error, name, None)
            if isinstance(value, str) and _holds(value, values):
                with contextlib.suppress(Exception):
                    setattr(error, name, redact_text(value, values))
        clean(error.__cause__)
        clean(error.__context__)

    clean(exc)
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        text = f"{type(exc).__name__}: <the error text cannot be shown>"
    if not _holds(text, values):
        return exc
    return RuntimeError(redact_text(text, values).rstrip())


@contextlib.contextmanager
def _scrubbed(values: list[str]) -> Iterator[None]:
    try:
        yield
    except BaseException as e:
        replacement = scrub_exception(e, values)
        if replacement is e:
            raise
        raise replacement from None


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
                with _scrubbed(values):
                    super().setup(restore_secrets(config, secrets), *args, **kwargs)

            def step(self) -> Any:
                with _scrubbed(values):
                    return super().step()

            def reset_config(self, new_config: dict[str, Any]) -> bool:
                with _scrubbed(values):
                    return bool(super().reset_config(restore_secrets(new_config, secrets)))

        _WithSecrets.__name__ = trainable.__name__
        _WithSecrets.__qualname__ = trainable.__qualname__
        return _WithSecrets

    function: Callable[..., Any] = trainable

    @functools.wraps(function)
    def trainable_with_secrets(config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        with _scrubbed(values):
            return function(restore_secrets(config, secrets), *args, **kwargs)

    return trainable_with_secrets
