"""A real SMTP server (aiosmtpd) on 127.0.0.1 for tests, as pytest fixtures.

tests/conftest.py imports the fixtures, so every test can use them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

__all__ = ["SmtpServer", "free_local_port", "smtp_env", "smtp_server", "smtp_server_factory"]


def free_local_port() -> int:
    """A port that nothing listens on right now (bound, read and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpServer:
    """A running aiosmtpd server and what it received."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


class _StoringHandler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.server.messages.append(msg)
        self.server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SmtpServer]]:
    """Start aiosmtpd servers on 127.0.0.1; keyword arguments go to aiosmtpd's Controller.

    ``login=(user, password)`` makes the server accept exactly that login (AUTH allowed without
    TLS unless ``auth_require_tls=True`` is passed).
    """
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    controllers: list[Any] = []

    def start(login: tuple[str, str] | None = None, **kwargs: Any) -> SmtpServer:
        server = SmtpServer(host="127.0.0.1", port=free_local_port())
        if login is not None:

            def authenticator(
                _server: Any, _session: Any, _envelope: Any, _mechanism: str, auth_data: Any
            ) -> AuthResult:
                if not isinstance(auth_data, LoginPassword):
                    return AuthResult(success=False, handled=False)
                user = auth_data.login.decode()
                password = auth_data.password.decode()
                server.logins.append((user, password))
                # handled=False: aiosmtpd then answers 535 itself on a failed login.
                return AuthResult(success=(user, password) == login, handled=False)

            kwargs.setdefault("authenticator", authenticator)
            kwargs.setdefault("auth_require_tls", False)
        controller = Controller(
            _StoringHandler(server), hostname=server.host, port=server.port, **kwargs
        )
        controller.start()
        controllers.append(controller)
        return server

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpServer]) -> SmtpServer:
    """A plain (no TLS, no login) SMTP server."""
    return smtp_server_factory()


@pytest.fixture
def smtp_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the RADAS_SMTP_* variables at a server; unset every other SMTP setting first."""
    for name in (
        "RADAS_SMTP_HOST",
        "RADAS_SMTP_PORT",
        "RADAS_SMTP_USER",
        "RADAS_SMTP_PASSWORD",
        "RADAS_SMTP_FROM",
        "RADAS_SMTP_SECURITY",
        "RADAS_SMTP_BLOCK",
        "RADAS_SMTP_TIMEOUT",
        "RADAS_SMTP_VERIFY",
    ):
        monkeypatch.delenv(name, raising=False)

    def configure(server: SmtpServer | None = None, **env: str) -> None:
        if server is not None:
            monkeypatch.setenv("RADAS_SMTP_HOST", server.host)
            monkeypatch.setenv("RADAS_SMTP_PORT", str(server.port))
            monkeypatch.setenv("RADAS_SMTP_SECURITY", "none")
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return configure
