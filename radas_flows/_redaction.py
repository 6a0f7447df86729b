"""Scrubbing secret values from texts, log records and exceptions (see radas_flows.secrets)."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

__all__ = [
    "PROTECTED_LOGGERS",
    "REDACTED",
    "RedactingStream",
    "SecretFilter",
    "install_secret_filter",
    "protect_logs",
    "redact_process_output",
    "redact_registered",
    "redact_text",
    "register_secret",
    "registered_secrets",
    "scrub_errors",
    "scrub_exception",
    "scrubbed",
]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Placeholder that replaces a secret value.
REDACTED = "***"

_registered: set[str] = set()
_registered_lock = threading.Lock()


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
def scrubbed(values: list[str]) -> Iterator[None]:
    """Scrub ``values`` from any exception raised inside the block (see :func:`scrub_exception`)."""
    try:
        yield
    except BaseException as e:
        replacement = scrub_exception(e, values)
        if replacement is e:
            raise
        raise replacement from None


def scrub_errors(fn: _F) -> _F:
    """Decorate a function (a Prefect task's) so that what it raises holds no registered secret.

    Prefect records a failed task run's exception text in the task run's state directly, not
    through logging, so the log filter never sees it; put this below ``@task``.

    Example:
        >>> key = "t4sk-secret"
        >>> register_secret(key)
        >>> @scrub_errors
        ... def stage():
        ...     raise ValueError(f"bad key {key}")
        >>> try:
        ...     stage()
        ... except ValueError as e:
        ...     print(e)
        bad key ***
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BaseException as e:
            clean = scrub_exception(e)
            if clean is e:
                raise
            raise clean from None

    return wrapper  # type: ignore[return-value]


class RedactingStream:
    """A text stream that writes through to another with the registered secrets replaced.

    A cluster job's driver puts it on ``sys.stdout`` and ``sys.stderr``: the job's log (which
    the flow relays, and which the Ray dashboard shows) then holds no secret the job resolved.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_registered(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def redact_process_output() -> None:
    """Put a :class:`RedactingStream` on ``sys.stdout`` and ``sys.stderr`` (once)."""
    import sys

    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
