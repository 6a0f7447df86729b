"""Where email goes: SMTP settings from a prefect-email block or ``RADAS_SMTP_*`` variables."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from radas_flows.secrets import redact_registered, register_secret

if TYPE_CHECKING:
    from prefect_email import EmailServerCredentials

__all__ = [
    "EmailConfigError",
    "EmailSendError",
    "Security",
    "SmtpSettings",
    "resolve_smtp_settings",
]

logger = logging.getLogger(__name__)

Security: TypeAlias = Literal["ssl", "starttls", "none"]

_ENV_VARS = (
    "RADAS_SMTP_HOST",
    "RADAS_SMTP_PORT",
    "RADAS_SMTP_USER",
    "RADAS_SMTP_PASSWORD",
    "RADAS_SMTP_FROM",
    "RADAS_SMTP_SECURITY",
)
_DEFAULT_PORTS: dict[str, int] = {"ssl": 465, "starttls": 587, "none": 25}
_BLOCK_TYPES: dict[str, Security] = {"SSL": "ssl", "STARTTLS": "starttls", "INSECURE": "none"}
DEFAULT_FROM = "radas-flows@localhost"
DEFAULT_TIMEOUT_S = 30.0


class EmailConfigError(ValueError):
    """The SMTP settings are missing or invalid."""


class EmailSendError(RuntimeError):
    """The SMTP server could not be reached or refused the message."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send email.

    Attributes:
        host: SMTP server host name or address.
        port: SMTP server port.
        security: ``ssl`` (implicit TLS), ``starttls`` or ``none`` (plain text).
        user: Login name; no login when ``None``.
        password: Login password (never shown in ``repr``).
        from_address: The ``From`` address.
        verify: Whether TLS certificates are verified.
        timeout: Socket timeout in seconds.
        source: Where the settings came from, for error messages.
    """

    host: str
    port: int
    security: Security = "starttls"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    from_address: str = DEFAULT_FROM
    verify: bool = True
    timeout: float = DEFAULT_TIMEOUT_S
    source: str = "environment"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _parse_security(value: str, where: str) -> Security:
    lowered = value.strip().lower()
    if lowered not in _DEFAULT_PORTS:
        raise EmailConfigError(
            f"{where}={value!r} is not a valid SMTP security mode; use one of ssl, starttls, none."
        )
    return lowered  # type: ignore[return-value]


def _parse_port(value: str | int, where: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError) as e:
        raise EmailConfigError(f"{where}={value!r} is not a port number; use e.g. 587.") from e
    if not 0 < port < 65536:
        raise EmailConfigError(f"{where}={port} is out of range; use a port in 1-65535.")
    return port


def _common_options() -> tuple[float, bool]:
    raw_timeout = _env("RADAS_SMTP_TIMEOUT")
    try:
        timeout = float(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT_S
    except ValueError as e:
        raise EmailConfigError(
            f"RADAS_SMTP_TIMEOUT={raw_timeout!r} is not a number of seconds; use e.g. 30."
        ) from e
    verify = (_env("RADAS_SMTP_VERIFY") or "true").lower() not in ("0", "false", "no", "off")
    return timeout, verify


def _from_address(user: str | None) -> str:
    explicit = _env("RADAS_SMTP_FROM")
    if explicit:
        return explicit
    return user if user and "@" in user else DEFAULT_FROM


def _settings_from_block(block: Any, source: str) -> SmtpSettings:
    server = block.smtp_server
    host = str(getattr(server, "value", server))
    smtp_type = block.smtp_type
    type_name = str(getattr(smtp_type, "name", smtp_type)).upper()
    if type_name not in _BLOCK_TYPES:
        raise EmailConfigError(
            f"{source} has smtp_type {smtp_type!r}; use one of SSL, STARTTLS, INSECURE."
        )
    security = _BLOCK_TYPES[type_name]
    port = (
        _parse_port(block.smtp_port, f"{source} smtp_port")
        if block.smtp_port is not None
        else _DEFAULT_PORTS[security]
    )
    password_obj = block.password
    password = password_obj.get_secret_value() if password_obj is not None else None
    register_secret(password)
    timeout, verify_env = _common_options()
    verify = bool(block.verify) if block.verify is not None else verify_env
    return SmtpSettings(
        host=host,
        port=port,
        security=security,
        user=block.username or None,
        password=password or None,
        from_address=_from_address(block.username),
        verify=verify,
        timeout=timeout,
        source=source,
    )


def _load_block(name: str) -> Any:
    try:
        from prefect_email import EmailServerCredentials
    except ImportError as e:  # pragma: no cover - prefect-email is a dependency
        raise EmailConfigError(
            "Loading an SMTP block needs prefect-email: pip install prefect-email."
        ) from e
    try:
        return EmailServerCredentials.load(name, _sync=True)
    except Exception as e:
        raise EmailConfigError(
            f"Cannot load the EmailServerCredentials block {name!r} ({type(e).__name__}: "
            f"{redact_registered(str(e))}); create it in the Prefect UI or with "
            f"EmailServerCredentials(...).save({name!r}), or unset RADAS_SMTP_BLOCK and use "
            "the RADAS_SMTP_* environment variables."
        ) from e


def resolve_smtp_settings(
    credentials: EmailServerCredentials | str | None = None,
) -> SmtpSettings:
    """Work out the SMTP settings, without connecting.

    Order: the ``credentials`` argument (a prefect-email ``EmailServerCredentials`` block, or the
    name of a saved one), then the block named by ``RADAS_SMTP_BLOCK``, then the environment:

    - ``RADAS_SMTP_HOST`` (required), ``RADAS_SMTP_PORT`` (default 465 / 587 / 25 by security),
    - ``RADAS_SMTP_SECURITY``: ``ssl``, ``starttls`` (default) or ``none``,
    - ``RADAS_SMTP_USER`` and ``RADAS_SMTP_PASSWORD`` (login only when a user is set),
    - ``RADAS_SMTP_FROM`` (default: the user when it is an address, else
      ``radas-flows@localhost``; applies to blocks too),
    - ``RADAS_SMTP_TIMEOUT`` seconds (default 30) and ``RADAS_SMTP_VERIFY`` (default true;
      ``false`` skips TLS certificate checks) apply to blocks too, except that a block's own
      ``verify`` wins.

    The password is registered with :func:`radas_flows.secrets.register_secret`.

    Args:
        credentials: A block, a block name, or ``None``.

    Returns:
        The settings.

    Raises:
        EmailConfigError: Nothing configured, a block that cannot be loaded, or a bad value.

    Example:
        >>> import os
        >>> os.environ.update(RADAS_SMTP_HOST="127.0.0.1", RADAS_SMTP_SECURITY="none")
        >>> s = resolve_smtp_settings()
        >>> (s.host, s.port, s.security, s.from_address)
        ('127.0.0.1', 25, 'none', 'radas-flows@localhost')
    """
    if credentials is not None:
        if isinstance(credentials, str):
            return _settings_from_block(
                _load_block(credentials), f"EmailServerCredentials block {credentials!r}"
            )
        return _settings_from_block(credentials, "the EmailServerCredentials block")
    block_name = _env("RADAS_SMTP_BLOCK")
    if block_name:
        return _settings_from_block(
            _load_block(block_name),
            f"EmailServerCredentials block {block_name!r} (RADAS_SMTP_BLOCK)",
        )
    host = _env("RADAS_SMTP_HOST")
    if host is None:
        raise EmailConfigError(
            "No SMTP server configured: set RADAS_SMTP_HOST (and as needed "
            f"{', '.join(_ENV_VARS[1:])}), or RADAS_SMTP_BLOCK to the name of a saved "
            "prefect-email EmailServerCredentials block, or pass "
            "credentials=EmailServerCredentials(...)."
        )
    security = _parse_security(_env("RADAS_SMTP_SECURITY") or "starttls", "RADAS_SMTP_SECURITY")
    raw_port = _env("RADAS_SMTP_PORT")
    port = _parse_port(raw_port, "RADAS_SMTP_PORT") if raw_port else _DEFAULT_PORTS[security]
    user = _env("RADAS_SMTP_USER")
    password = os.environ.get("RADAS_SMTP_PASSWORD") or None
    register_secret(password)
    timeout, verify = _common_options()
    return SmtpSettings(
        host=host,
        port=port,
        security=security,
        user=user,
        password=password,
        from_address=_from_address(user),
        verify=verify,
        timeout=timeout,
        source="environment (RADAS_SMTP_*)",
    )
