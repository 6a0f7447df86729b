"""Send plain-text or HTML emails with attachments, through prefect-email's SMTP connection."""

# This module is named like the standard library's ``email`` package. Python 3 imports are
# absolute, so ``import email`` anywhere (this file included) still means the standard library;
# only code that puts the ``radas_flows`` directory itself on ``sys.path`` (or a relative
# ``from . import email``) gets this module. Modules of this package must therefore always use
# absolute imports (``from radas_flows.email import send_email``), and this directory must never
# be added to ``sys.path``.
from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
import smtplib
import socket
import threading
from collections.abc import Iterator, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from radas_flows.secrets import redact_registered, redact_text
from radas_flows.smtp_settings import (
    EmailConfigError,
    EmailSendError,
    SmtpSettings,
    resolve_smtp_settings,
)

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

#: An attachment: a file path, or ``(filename, content)``.
Attachment: TypeAlias = str | os.PathLike[str] | tuple[str, bytes]


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


_BLOCK_SMTP_TYPES = {"ssl": "SSL", "starttls": "STARTTLS", "none": "INSECURE"}
# prefect-email's get_server() connects without a timeout; Python's socket default timeout is
# what smtplib then uses. It is set only while get_server() connects, logs in and does
# STARTTLS, one connection at a time; the socket keeps it for sending.
_connect_lock = threading.Lock()


@contextlib.contextmanager
def _default_timeout(seconds: float) -> Iterator[None]:
    with _connect_lock:
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(seconds)
        try:
            yield
        finally:
            socket.setdefaulttimeout(old)


def _server_credentials(settings: SmtpSettings) -> EmailServerCredentials:
    """The settings as a prefect-email block (in memory: nothing is saved)."""
    from prefect_email import EmailServerCredentials

    return EmailServerCredentials(
        smtp_server=settings.host,
        smtp_port=settings.port,
        smtp_type=_BLOCK_SMTP_TYPES[settings.security],
        username=settings.user,
        password=settings.password or "",
        verify=settings.verify,
    )


def _connect(settings: SmtpSettings) -> smtplib.SMTP:
    """Connect (TLS as the settings say) and log in, through prefect-email's ``get_server``.

    When the login or STARTTLS fails, ``get_server`` raises with its half-open connection
    still in its frame, which the error's traceback keeps alive: close it here.
    """
    try:
        with _default_timeout(settings.timeout):
            return _server_credentials(settings).get_server()
    except BaseException as e:
        tb = e.__traceback__
        while tb is not None:
            for value in list(tb.tb_frame.f_locals.values()):
                if isinstance(value, smtplib.SMTP):
                    value.close()
            tb = tb.tb_next
        raise


def _deliver(settings: SmtpSettings, msg: EmailMessage) -> None:
    where = f"{settings.host}:{settings.port}"
    secrets = [settings.password]
    fix = (
        f"Check the SMTP settings from {settings.source} (host, port, security "
        f"{settings.security!r}) and that the server is reachable."
    )
    if settings.user and settings.security == "none":
        logger.warning(
            "Logging in to SMTP server %s without TLS: the password travels in plain text. "
            "Use RADAS_SMTP_SECURITY=starttls or ssl.",
            where,
        )
    server: smtplib.SMTP | None = None
    try:
        server = _connect(settings)
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
