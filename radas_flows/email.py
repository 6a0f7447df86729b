"""Send plain-text or HTML emails with attachments through SMTP."""

# This module is named like the standard library's ``email`` package. Python 3 imports are
# absolute, so ``import email`` anywhere (this file included) still means the standard library;
# only code that puts the ``radas_flows`` directory itself on ``sys.path`` (or a relative
# ``from . import email``) gets this module. Modules of this package must therefore always use
# absolute imports (``from radas_flows.email import send_email``), and this directory must never
# be added to ``sys.path``.
from __future__ import annotations

import logging
import mimetypes
import os
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from radas_flows.secrets import redact_registered, redact_text, register_secret

if TYPE_CHECKING:
    from prefect_email import EmailServerCredentials

__all__ = [
    "Attachment",
    "EmailConfigError",
    "EmailSendError",
    "SmtpSettings",
    "resolve_smtp_settings",
    "send_email",
]

logger = logging.getLogger(__name__)

Security: TypeAlias = Literal["ssl", "starttls", "none"]
#: An attachment: a file path, or ``(filename, content)``.
Attachment: TypeAlias = str | os.PathLike[str] | tuple[str, bytes]

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


def _recipients(to_address: str | Sequence[str]) -> list[str]:
    raw = to_address.split(",") if isinstance(to_address, str) else list(to_address)
    recipients = [r.strip() for r in raw if isinstance(r, str) and r.strip()]
    bad = [r for r in recipients if "@" not in r or any(c.isspace() for c in r)]
    if not recipients or bad or len(recipients) != len(raw):
        raise ValueError(
            f"Invalid to_address {to_address!r}; pass an address such as 'alice@example.com' "
            "or a list of them."
        )
    return recipients


def _read_attachment(item: Attachment) -> tuple[str, bytes]:
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[0], str) or not item[0]:
            raise ValueError(
                f"Attachment {item[:1]!r}... must be a path or a (filename, bytes) pair."
            )
        filename, content = item
        if isinstance(content, str):
            content = content.encode("utf-8")
        if not isinstance(content, bytes | bytearray | memoryview):
            raise TypeError(
                f"Attachment {filename!r} content is {type(content).__name__}; pass bytes."
            )
        return Path(filename).name, bytes(content)
    if not isinstance(item, str | os.PathLike):
        raise TypeError(
            f"Attachment of type {type(item).__name__} is neither a path nor a "
            "(filename, bytes) pair."
        )
    path = Path(item)
    try:
        return path.name, path.read_bytes()
    except OSError as e:
        raise FileNotFoundError(
            f"Cannot read attachment {str(path)!r} ({e.strerror or e}); check the path."
        ) from e


def _build_message(
    settings: SmtpSettings,
    recipients: list[str],
    subject: str,
    body: str,
    files: list[tuple[str, bytes]],
    html: bool,
) -> EmailMessage:
    if any(c in subject for c in "\r\n"):
        raise ValueError(f"subject {subject!r} contains a line break; use a single line.")
    msg = EmailMessage()
    msg["Subject"] = redact_registered(subject)
    msg["From"] = settings.from_address
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=settings.from_address.rpartition("@")[2] or None)
    msg.set_content(redact_registered(body), subtype="html" if html else "plain")
    for filename, content in files:
        ctype, encoding = mimetypes.guess_type(filename)
        if ctype is None or encoding is not None:
            ctype = "application/octet-stream"
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _deliver(settings: SmtpSettings, msg: EmailMessage) -> None:
    where = f"{settings.host}:{settings.port}"
    secrets = [settings.password]
    fix = (
        f"Check the SMTP settings from {settings.source} (host, port, security "
        f"{settings.security!r}) and that the server is reachable."
    )
    server: smtplib.SMTP | None = None
    try:
        if settings.security == "ssl":
            server = smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                context=_tls_context(settings.verify),
            )
        else:
            server = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
            if settings.security == "starttls":
                server.starttls(context=_tls_context(settings.verify))
        if settings.user:
            if settings.security == "none":
                logger.warning(
                    "Logging in to SMTP server %s without TLS: the password travels in plain "
                    "text. Use RADAS_SMTP_SECURITY=starttls or ssl.",
                    where,
                )
            server.login(settings.user, settings.password or "")
        server.send_message(msg)
    except smtplib.SMTPAuthenticationError as e:
        raise EmailSendError(
            f"SMTP server {where} rejected the login of user {settings.user!r} "
            f"({e.smtp_code}); check RADAS_SMTP_USER / RADAS_SMTP_PASSWORD or the block's "
            "username / password."
        ) from e
    except smtplib.SMTPException as e:
        reason = redact_text(redact_registered(str(e)), secrets)
        raise EmailSendError(
            f"SMTP server {where} failed to send the email ({type(e).__name__}: {reason}). {fix}"
        ) from e
    except OSError as e:
        reason = redact_text(redact_registered(e.strerror or str(e) or type(e).__name__), secrets)
        raise EmailSendError(
            f"Cannot connect to SMTP server {where} ({type(e).__name__}: {reason}). {fix}"
        ) from e
    finally:
        if server is not None:
            try:
                server.quit()
            except (smtplib.SMTPException, OSError):
                server.close()


def send_email(
    to_address: str | Sequence[str],
    subject: str,
    body: str,
    *,
    attachments: Sequence[Attachment] | None = None,
    html: bool = False,
    credentials: EmailServerCredentials | str | None = None,
) -> None:
    """Send an email through the configured SMTP server.

    The SMTP server comes from ``credentials``, ``RADAS_SMTP_BLOCK`` or the ``RADAS_SMTP_*``
    environment variables (see :func:`resolve_smtp_settings`). Registered secrets are scrubbed
    from the subject and body; the password never appears in errors or logs.

    Args:
        to_address: One address, several separated by commas, or a list of addresses.
        subject: One-line subject.
        body: The text (or HTML when ``html=True``).
        attachments: File paths, or ``(filename, bytes)`` pairs; the MIME type follows the
            file name's extension.
        html: Send ``body`` as ``text/html`` instead of ``text/plain``.
        credentials: A prefect-email ``EmailServerCredentials`` block, or a saved block's name.

    Raises:
        EmailConfigError: No or invalid SMTP settings.
        ValueError: A bad address, subject or attachment.
        FileNotFoundError: An attachment path cannot be read.
        EmailSendError: The server cannot be reached or refuses the login or the message.

    Example:
        ```python
        from radas_flows.email import send_email

        send_email(
            to_address="recipient@example.com",
            subject="Sweep finished",
            body="Best score 0.93 with lr=0.01",
            attachments=["figure.png", ("results.csv", b"lr,score\\n0.01,0.93\\n")],
        )
        ```
    """
    recipients = _recipients(to_address)
    if not isinstance(subject, str) or not isinstance(body, str):
        raise TypeError("subject and body must be strings.")
    files = [_read_attachment(a) for a in attachments or ()]
    settings = resolve_smtp_settings(credentials)
    msg = _build_message(settings, recipients, subject, body, files, html)
    _deliver(settings, msg)
    logger.info(
        "Sent email %r to %s through %s:%s",
        redact_registered(subject),
        recipients,
        settings.host,
        settings.port,
    )
