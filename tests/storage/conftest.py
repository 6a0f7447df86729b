"""Real S3 (moto server) and TLS material on 127.0.0.1 for the storage tests.

The SMTP server fixtures (``smtp_server``, ``smtp_server_factory``, ``smtp_env``) live in
tests/smtp_server.py and are available to every test.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.smtp_server import free_local_port

SMTP_USER = "radas-mailer"
SMTP_PASSWORD = "smtp-Pa55-w0rd-7c1e9a"
AWS_ACCESS_KEY = "AKIARADASTESTKEY0001"
AWS_SECRET_KEY = "radas-test-secret-key-9f3b2d71c4e8a6"


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Returns a function giving a 127.0.0.1 port with nothing listening on it."""
    return free_local_port


@dataclass(frozen=True)
class Credentials:
    """Test credentials (never real ones)."""

    user: str
    password: str


@pytest.fixture
def smtp_credentials() -> Credentials:
    """The SMTP login the tests use."""
    return Credentials(SMTP_USER, SMTP_PASSWORD)


@pytest.fixture
def aws_credentials() -> Credentials:
    """The AWS access key (user) and secret key (password) the tests use."""
    return Credentials(AWS_ACCESS_KEY, AWS_SECRET_KEY)


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for 127.0.0.1 and its key."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Generate a self-signed CA-style certificate valid for the IP 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "radas-test-smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsFiles(cert=cert_path, key=key_path)


@dataclass(frozen=True)
class S3Server:
    """A moto S3 server and a client for checking what it holds."""

    endpoint_url: str
    host: str
    port: int

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=AWS_ACCESS_KEY,
            aws_secret_access_key=AWS_SECRET_KEY,
            region_name="us-east-1",
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto in server mode on 127.0.0.1, one per test session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(endpoint_url=f"http://{host}:{port}", host=host, port=port)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _no_aws_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty directory: AWS config paths inside it do not exist (same for every test)."""
    return tmp_path_factory.mktemp("no-aws")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, _no_aws_files: Path) -> None:
    """Test credentials only: no profile, no ~/.aws files, no instance-metadata lookups."""
    tmp_path = _no_aws_files
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def s3_bucket(s3_server: S3Server, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server, with RADAS_S3_* pointing at it."""
    bucket = f"radas-test-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("RADAS_S3_BUCKET", bucket)
    monkeypatch.setenv("RADAS_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.delenv("RADAS_S3_PREFIX", raising=False)
    return bucket
