"""send_email against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import radas_flows.email as remail
import radas_flows.smtp_settings as smtp_settings
from radas_flows.email import EmailConfigError, EmailSendError, send_email
from radas_flows.secrets import register_secret

if TYPE_CHECKING:
    from conftest import Credentials, TlsFiles
    from tests.smtp_server import SmtpServer

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _full_text(exc: BaseException) -> str:
    """The exception as a traceback would print it, chained causes included."""
    return "".join(traceback.format_exception(exc))


def test_plain_email_reaches_server_with_facts_and_attachments(
    smtp_server: SmtpServer, smtp_env: Callable[..., None], tmp_path: Path
) -> None:
    smtp_env(smtp_server, RADAS_SMTP_FROM="radas@example.org")
    figure = tmp_path / "figure.png"
    figure.write_bytes(PNG_BYTES)
    csv_bytes = b"lr,score\n0.01,0.93\n0.1,0.71\n"

    send_email(
        to_address="alice@example.com",
        subject="[radas] lr-sweep finished: 2/2 trials completed",
        body="Experiment: lr-sweep\nBest score: 0.93\nBest config: lr=0.01\n",
        attachments=[figure, ("results.csv", csv_bytes)],
    )

    assert len(smtp_server.messages) == 1
    msg = smtp_server.messages[0]
    assert msg["Subject"] == "[radas] lr-sweep finished: 2/2 trials completed"
    assert msg["From"] == "radas@example.org"
    assert msg["To"] == "alice@example.com"
    assert smtp_server.envelopes == [("radas@example.org", ["alice@example.com"])]
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Best score: 0.93" in text
    assert "Best config: lr=0.01" in text
    parts = {p.get_filename(): p for p in msg.iter_attachments()}
    assert set(parts) == {"figure.png", "results.csv"}
    assert parts["figure.png"].get_content_type() == "image/png"
    assert parts["figure.png"].get_payload(decode=True) == PNG_BYTES
    assert parts["results.csv"].get_content_type() == "text/csv"
    assert parts["results.csv"].get_payload(decode=True) == csv_bytes


def test_html_email_to_several_recipients(
    smtp_server: SmtpServer, smtp_env: Callable[..., None]
) -> None:
    smtp_env(smtp_server)

    send_email(
        ["alice@example.com", "bob@example.com"],
        "Sweep report",
        "<h1>lr-sweep</h1><p>best <b>0.93</b></p>",
        html=True,
    )

    msg = smtp_server.messages[0]
    assert msg.get_content_type() == "text/html"
    assert "<b>0.93</b>" in msg.get_content()
    assert msg["From"] == smtp_settings.DEFAULT_FROM
    assert smtp_server.envelopes[0][1] == ["alice@example.com", "bob@example.com"]


def test_login_with_user_and_password(
    smtp_server_factory: Callable[..., SmtpServer],
    smtp_env: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
    smtp_credentials: Credentials,
) -> None:
    server = smtp_server_factory(login=(smtp_credentials.user, smtp_credentials.password))
    smtp_env(
        server, RADAS_SMTP_USER=smtp_credentials.user, RADAS_SMTP_PASSWORD=smtp_credentials.password
    )

    # The connection is prefect-email's EmailServerCredentials.get_server(), which warns too,
    # to its own logger (Prefect's loggers do not propagate to the root logger).
    prefect_email_log = logging.getLogger("prefect.prefect_email.credentials")
    prefect_email_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="radas_flows.email"):
            send_email("alice@example.com", "hello", "body")
    finally:
        prefect_email_log.removeHandler(caplog.handler)

    assert server.logins == [(smtp_credentials.user, smtp_credentials.password)]
    assert len(server.messages) == 1
    assert "plain text" in caplog.text
    assert "SMTP login is not secure without a verified SSL/TLS" in caplog.text
    assert smtp_credentials.password not in caplog.text


def test_rejected_login_names_user_never_password(
    smtp_server_factory: Callable[..., SmtpServer],
    smtp_env: Callable[..., None],
    smtp_credentials: Credentials,
) -> None:
    server = smtp_server_factory(login=(smtp_credentials.user, "the-right-one"))
    smtp_env(
        server, RADAS_SMTP_USER=smtp_credentials.user, RADAS_SMTP_PASSWORD=smtp_credentials.password
    )

    with pytest.raises(EmailSendError, match=r"rejected the login of user 'radas-mailer'") as info:
        send_email("alice@example.com", "hello", "body")

    assert smtp_credentials.password not in _full_text(info.value)
    assert f"127.0.0.1:{server.port}" in str(info.value)
    assert server.messages == []
    # The refused connection is closed, though the error (and its cause's traceback) lives on.
    import psutil

    open_to_server = [
        c
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == server.port and c.status == psutil.CONN_ESTABLISHED
    ]
    assert open_to_server == [], open_to_server


def test_unreachable_server_clear_error_fast_without_password(
    smtp_env: Callable[..., None],
    free_port: Callable[[], int],
    smtp_credentials: Credentials,
) -> None:
    port = free_port()
    smtp_env(
        RADAS_SMTP_HOST="127.0.0.1",
        RADAS_SMTP_PORT=str(port),
        RADAS_SMTP_SECURITY="none",
        RADAS_SMTP_USER=smtp_credentials.user,
        RADAS_SMTP_PASSWORD=smtp_credentials.password,
    )

    start = time.monotonic()
    with pytest.raises(EmailSendError, match=rf"Cannot connect to SMTP server 127\.0\.0\.1:{port}"):
        try:
            send_email("alice@example.com", "hello", "body")
        except EmailSendError as e:
            assert smtp_credentials.password not in _full_text(e)
            assert "RADAS_SMTP" in str(e)
            raise
    assert time.monotonic() - start < 10


def test_a_server_that_never_answers_times_out(
    smtp_env: Callable[..., None], smtp_credentials: Credentials
) -> None:
    """A server that accepts the connection and never greets: RADAS_SMTP_TIMEOUT applies."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(4)
        port = hung.getsockname()[1]
        smtp_env(
            RADAS_SMTP_HOST="127.0.0.1",
            RADAS_SMTP_PORT=str(port),
            RADAS_SMTP_SECURITY="starttls",
            RADAS_SMTP_TIMEOUT="1",
            RADAS_SMTP_PASSWORD=smtp_credentials.password,
        )
        start = time.monotonic()
        with pytest.raises(EmailSendError, match=r"timed out") as info:
            send_email("alice@example.com", "hello", "body")
        assert time.monotonic() - start < 10
    assert smtp_credentials.password not in _full_text(info.value)
    assert socket.getdefaulttimeout() is None  # put back after connecting


def test_starttls_with_verified_certificate(
    smtp_server_factory: Callable[..., SmtpServer],
    smtp_env: Callable[..., None],
    tls_files: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    smtp_credentials: Credentials,
) -> None:
    server = smtp_server_factory(
        login=(smtp_credentials.user, smtp_credentials.password),
        tls_context=tls_files.server_context(),
        require_starttls=True,
        auth_require_tls=True,
    )
    smtp_env(
        server,
        RADAS_SMTP_SECURITY="starttls",
        RADAS_SMTP_USER=smtp_credentials.user,
        RADAS_SMTP_PASSWORD=smtp_credentials.password,
    )
    # The default TLS context trusts the test certificate through OpenSSL's SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))

    send_email("alice@example.com", "over starttls", "secure body")

    assert server.logins == [(smtp_credentials.user, smtp_credentials.password)]
    assert server.messages[0]["Subject"] == "over starttls"


def test_starttls_untrusted_certificate_fails_unless_verify_off(
    smtp_server_factory: Callable[..., SmtpServer],
    smtp_env: Callable[..., None],
    tls_files: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = smtp_server_factory(tls_context=tls_files.server_context(), require_starttls=True)
    smtp_env(server, RADAS_SMTP_SECURITY="starttls")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    with pytest.raises(EmailSendError, match=rf"127\.0\.0\.1:{server.port}.*CERTIFICATE_VERIFY"):
        send_email("alice@example.com", "untrusted", "body")
    assert server.messages == []

    monkeypatch.setenv("RADAS_SMTP_VERIFY", "false")
    send_email("alice@example.com", "unverified", "body")
    assert server.messages[0]["Subject"] == "unverified"


def test_implicit_ssl(
    smtp_server_factory: Callable[..., SmtpServer],
    smtp_env: Callable[..., None],
    tls_files: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = smtp_server_factory(ssl_context=tls_files.server_context())
    smtp_env(server, RADAS_SMTP_SECURITY="ssl")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))

    send_email("alice@example.com", "over ssl", "body")

    assert server.messages[0]["Subject"] == "over ssl"


def test_prefect_email_block_object(
    smtp_server_factory: Callable[..., SmtpServer],
    smtp_env: Callable[..., None],
    smtp_credentials: Credentials,
) -> None:
    from prefect_email import EmailServerCredentials

    server = smtp_server_factory(login=(smtp_credentials.user, smtp_credentials.password))
    smtp_env(RADAS_SMTP_FROM="radas@example.org")  # RADAS_SMTP_HOST stays unset
    block = EmailServerCredentials(
        username=smtp_credentials.user,
        password=smtp_credentials.password,
        smtp_server="127.0.0.1",
        smtp_type="INSECURE",
        smtp_port=server.port,
    )

    send_email("alice@example.com", "via block", "body", credentials=block)

    assert server.logins == [(smtp_credentials.user, smtp_credentials.password)]
    assert server.messages[0]["From"] == "radas@example.org"
    settings = remail.resolve_smtp_settings(block)
    assert (settings.host, settings.port, settings.security) == ("127.0.0.1", server.port, "none")
    assert smtp_credentials.password not in repr(settings)


def test_prefect_email_block_unreachable_names_block_and_address(
    smtp_env: Callable[..., None],
    free_port: Callable[[], int],
    smtp_credentials: Credentials,
) -> None:
    from prefect_email import EmailServerCredentials

    smtp_env()
    port = free_port()
    block = EmailServerCredentials(
        username=smtp_credentials.user,
        password=smtp_credentials.password,
        smtp_server="127.0.0.1",
        smtp_type="INSECURE",
        smtp_port=port,
    )
    match = rf"127\.0\.0\.1:{port}.*EmailServerCredentials"
    with pytest.raises(EmailSendError, match=match) as info:
        send_email("alice@example.com", "x", "y", credentials=block)
    assert smtp_credentials.password not in _full_text(info.value)


def test_block_saved_on_prefect_server_loaded_by_name(
    prefect_api: None,
    smtp_server_factory: Callable[..., SmtpServer],
    smtp_env: Callable[..., None],
    smtp_credentials: Credentials,
) -> None:
    from prefect_email import EmailServerCredentials

    server = smtp_server_factory(login=(smtp_credentials.user, smtp_credentials.password))
    smtp_env(RADAS_SMTP_BLOCK="radas-smtp-test")
    EmailServerCredentials(
        username=smtp_credentials.user,
        password=smtp_credentials.password,
        smtp_server="127.0.0.1",
        smtp_type="INSECURE",
        smtp_port=server.port,
    ).save("radas-smtp-test", overwrite=True)

    send_email("alice@example.com", "via saved block", "body")

    with pytest.raises(EmailConfigError, match=r"block 'no-such-block'.*RADAS_SMTP_BLOCK"):
        send_email("alice@example.com", "x", "y", credentials="no-such-block")
    assert server.logins == [(smtp_credentials.user, smtp_credentials.password)]
    assert [m["Subject"] for m in server.messages] == ["via saved block"]


def test_no_configuration_names_the_variables(smtp_env: Callable[..., None]) -> None:
    smtp_env()
    match = r"RADAS_SMTP_HOST.*RADAS_SMTP_PORT.*RADAS_SMTP_BLOCK"
    with pytest.raises(EmailConfigError, match=match):
        send_email("alice@example.com", "x", "y")


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"RADAS_SMTP_SECURITY": "tls"}, r"RADAS_SMTP_SECURITY='tls'.*ssl, starttls, none"),
        ({"RADAS_SMTP_PORT": "smtp"}, r"RADAS_SMTP_PORT='smtp' is not a port"),
        ({"RADAS_SMTP_PORT": "70000"}, r"RADAS_SMTP_PORT=70000 is out of range"),
        ({"RADAS_SMTP_TIMEOUT": "soon"}, r"RADAS_SMTP_TIMEOUT='soon'"),
    ],
)
def test_invalid_settings(smtp_env: Callable[..., None], env: dict[str, str], match: str) -> None:
    smtp_env(RADAS_SMTP_HOST="127.0.0.1", **env)
    with pytest.raises(EmailConfigError, match=match):
        send_email("alice@example.com", "x", "y")


def test_default_ports_by_security(smtp_env: Callable[..., None]) -> None:
    smtp_env(RADAS_SMTP_HOST="smtp.example.org")
    assert remail.resolve_smtp_settings().port == 587
    smtp_env(RADAS_SMTP_SECURITY="ssl")
    assert remail.resolve_smtp_settings().port == 465
    smtp_env(RADAS_SMTP_SECURITY="NONE", RADAS_SMTP_USER="me@example.org")
    settings = remail.resolve_smtp_settings()
    assert (settings.port, settings.security, settings.from_address) == (
        25,
        "none",
        "me@example.org",
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"to_address": "not-an-address"}, ValueError, r"Invalid to_address 'not-an-address'"),
        ({"to_address": "a@example.com,,b@example.com"}, ValueError, r"Invalid to_address"),
        ({"subject": "two\nlines"}, ValueError, r"line break"),
        ({"attachments": ["/no/such/file.png"]}, FileNotFoundError, r"/no/such/file\.png"),
        ({"attachments": [("data.bin", 42)]}, TypeError, r"'data\.bin' content is int"),
    ],
)
def test_bad_arguments_send_nothing(
    smtp_server: SmtpServer,
    smtp_env: Callable[..., None],
    kwargs: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    smtp_env(smtp_server)
    arguments: dict[str, object] = {"to_address": "alice@example.com", "subject": "s", "body": "b"}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        send_email(**arguments)  # type: ignore[arg-type]
    assert smtp_server.messages == []


def test_registered_secrets_are_scrubbed_from_subject_and_body(
    smtp_server: SmtpServer, smtp_env: Callable[..., None]
) -> None:
    smtp_env(smtp_server)
    token = "ray-token-5e2c7b1a9d"
    register_secret(token)

    send_email("alice@example.com", f"token {token}", f"the token is {token}\n")

    msg = smtp_server.messages[0]
    assert token not in msg.as_string()
    assert msg["Subject"] == "token ***"
    assert "the token is ***" in msg.get_content()
