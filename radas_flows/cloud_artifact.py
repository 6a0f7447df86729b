"""Save and load Python objects as per-user artifacts in S3-compatible storage."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from radas_flows.artifact_formats import SUPPORTED_EXTENSIONS, extension, read_bytes, write_bytes
from radas_flows.data import validate_user_name
from radas_flows.secrets import redact_registered, register_secret

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "DEFAULT_PREFIX",
    "SUPPORTED_EXTENSIONS",
    "CloudArtifactError",
    "init",
    "load_cloud_artifact",
    "rm_cloud_artifact",
    "save_cloud_artifact",
]

#: Key prefix used when neither ``prefix`` nor ``RADAS_S3_PREFIX`` is given.
DEFAULT_PREFIX = "radas-artifacts"
_CONNECT_TIMEOUT_S = 5
_READ_TIMEOUT_S = 60
_MAX_ATTEMPTS = 2


class CloudArtifactError(RuntimeError):
    """Cloud artifacts are not set up, or the S3 service cannot be used."""


@dataclass(frozen=True)
class _Store:
    user_name: str
    bucket: str
    prefix: str
    endpoint_url: str | None
    client: S3Client = field(repr=False)

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or "the default AWS S3 endpoint"

    def key(self, path: str) -> str:
        parts = [p for p in (self.prefix, self.user_name) if p]
        return "/".join([*parts, _check_path(path)])


_store: _Store | None = None
_store_lock = threading.Lock()


def _check_path(path: object) -> str:
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(
            f"Artifact path must be a string, got {type(path).__name__} ({path!r}); "
            "e.g. 'results/summary.pkl'."
        )
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or any(ord(c) < 32 for c in path)
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError(
            f"Invalid artifact path {path!r}: use a relative path such as 'results/run1.pkl' "
            "without '..', '.', empty parts, a leading '/', backslashes or control characters "
            "(artifacts cannot leave the user's prefix)."
        )
    return path


def _check_prefix(prefix: str) -> str:
    stripped = prefix.strip("/")
    if stripped:
        try:
            _check_path(stripped)
        except ValueError as e:
            raise ValueError(
                f"Invalid S3 prefix {prefix!r} (RADAS_S3_PREFIX or prefix=): use plain names "
                "separated by '/', e.g. 'team/radas-artifacts'."
            ) from e
    return stripped


_AWS_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EC2_METADATA_DISABLED",
)
_session_cache: dict[str, Any] = {}


def _session() -> Any:
    """A boto3 session, reused while the AWS environment is unchanged.

    A new session reloads botocore's service models (about 0.5 s); trainables that call
    ``init`` for every trial in a reused worker would pay that each time. The cache key is a
    digest of the AWS variables, so no credential is kept in clear text.
    """
    import boto3

    material = "\0".join(f"{name}={os.environ.get(name, '')}" for name in _AWS_ENV_VARS)
    fingerprint = hashlib.sha256(material.encode("utf-8")).hexdigest()
    with _store_lock:
        session = _session_cache.get(fingerprint)
        if session is None:
            _session_cache.clear()
            session = boto3.session.Session()
            _session_cache[fingerprint] = session
    return session


def _make_client(endpoint_url: str | None, session: Any = None) -> S3Client:
    from botocore.config import Config

    session = session or _session()
    client = session.client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(
            connect_timeout=_CONNECT_TIMEOUT_S,
            read_timeout=_READ_TIMEOUT_S,
            retries={"max_attempts": _MAX_ATTEMPTS, "mode": "standard"},
        ),
    )
    credentials = session.get_credentials()
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        for value in (frozen.access_key, frozen.secret_key, frozen.token):
            register_secret(value)
    return client


def init(
    user_name: str,
    *,
    bucket: str | None = None,
    prefix: str | None = None,
    endpoint_url: str | None = None,
    block: Any = None,
) -> None:
    """Set up cloud artifacts for this process.

    Artifacts live at ``s3://<bucket>/<prefix>/<user_name>/<path>``. AWS credentials come the
    standard AWS way (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
    ``~/.aws``, instance roles). Call ``init`` in every process that uses artifacts (e.g. at
    the start of a trainable), with the environment variables set on the cluster.

    Args:
        user_name: The user's name; it becomes one key component.
        bucket: The bucket; default ``RADAS_S3_BUCKET``.
        prefix: Key prefix before the user name; default ``RADAS_S3_PREFIX``, else
            ``radas-artifacts``. Pass ``""`` for none.
        endpoint_url: An S3-compatible endpoint (MinIO, Ceph, ...); default
            ``RADAS_S3_ENDPOINT_URL``, else AWS.
        block: A prefect-aws block, or its name (default ``RADAS_S3_BLOCK``): an
            ``S3Bucket`` gives the bucket, its folder as the prefix, and its credentials; an
            ``AwsCredentials`` block (``"aws-credentials/<name>"``) the credentials and
            endpoint. The arguments above win over the block; the environment fills the rest.

    Raises:
        ValueError: Invalid user name or prefix, or no bucket configured.

    Example:
        ```python
        import radas_flows.cloud_artifact as rda

        rda.init(user_name="alice")
        rda.save_cloud_artifact("my_dict.pkl", {"a": 1, "b": 2})
        rda.load_cloud_artifact("my_dict.pkl")  # {'a': 1, 'b': 2}
        ```
    """
    global _store
    name = validate_user_name(user_name)
    block = block or os.environ.get("RADAS_S3_BLOCK", "").strip() or None
    from_block = None
    if block is not None:
        from radas_flows.aws_blocks import s3_settings_from_block

        from_block = s3_settings_from_block(block)
        bucket = bucket or from_block.bucket
        if prefix is None:
            prefix = from_block.prefix
        endpoint_url = endpoint_url or from_block.endpoint_url
    bucket = bucket or os.environ.get("RADAS_S3_BUCKET", "").strip()
    if not bucket:
        raise ValueError(
            "No S3 bucket configured for cloud artifacts; set RADAS_S3_BUCKET or pass "
            "bucket='<bucket name>' to init()."
        )
    if "/" in bucket or any(c.isspace() for c in bucket):
        raise ValueError(
            f"Invalid S3 bucket name {bucket!r}; give the bare bucket name (put key prefixes "
            "in RADAS_S3_PREFIX or prefix=)."
        )
    if prefix is None:
        prefix = os.environ.get("RADAS_S3_PREFIX", DEFAULT_PREFIX)
    clean_prefix = _check_prefix(prefix)
    endpoint = endpoint_url or os.environ.get("RADAS_S3_ENDPOINT_URL", "").strip() or None
    client = _make_client(endpoint, from_block.session if from_block else None)
    with _store_lock:
        _store = _Store(name, bucket, clean_prefix, endpoint, client)


def _get_store() -> _Store:
    store = _store
    if store is None:
        raise CloudArtifactError(
            "Cloud artifacts are not initialised; call "
            "radas_flows.cloud_artifact.init(user_name='<your name>') first."
        )
    return store


def _fail(store: _Store, e: Exception, path: str, action: str) -> NoReturn:
    """Turn a boto error into an error that names the fix; never shows credentials."""
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    where = f"s3://{store.bucket}/{store.key(path)}"
    if isinstance(e, BotoConnectionError | HTTPClientError):
        raise CloudArtifactError(
            f"Cannot reach the S3 endpoint {store.endpoint} to {action} {where} "
            f"({type(e).__name__}); check RADAS_S3_ENDPOINT_URL and that the service is up."
        ) from e
    if isinstance(e, NoCredentialsError | PartialCredentialsError):
        raise CloudArtifactError(
            f"No usable AWS credentials to {action} {where}; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)."
        ) from e
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(
                f"No cloud artifact {path!r} for user {store.user_name!r} ({where})."
            ) from e
        if code == "NoSuchBucket":
            raise CloudArtifactError(
                f"Bucket {store.bucket!r} does not exist at {store.endpoint}; create it or set "
                "RADAS_S3_BUCKET to an existing bucket."
            ) from e
        if code in (
            "403",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
        ):
            raise PermissionError(
                f"S3 denied access to {action} {where} ({code}); check the AWS credentials and "
                "the bucket's permissions."
            ) from e
        raise CloudArtifactError(
            f"S3 error while trying to {action} {where}: {redact_registered(str(e))}"
        ) from e
    raise e


def save_cloud_artifact(path: str, obj: Any) -> None:
    """Store an object under the user's prefix; the extension picks the format.

    ``.pkl``: pickle (any picklable object); ``.json``: JSON; ``.csv``: a DataFrame as CSV (the
    index is not stored); ``.parquet``: a DataFrame as Parquet; ``.txt``: a str as UTF-8 text.
    An existing artifact at ``path`` is replaced.

    Args:
        path: Relative path such as ``"results/run1.pkl"`` (no ``..``, no leading ``/``).
        obj: The object to store.

    Raises:
        CloudArtifactError: ``init`` was not called, or S3 cannot be reached or used.
        ValueError: Invalid path or unsupported extension.
        TypeError: The object does not fit the format.
        PermissionError: S3 denied access.

    Example:
        ```python
        import radas_flows.cloud_artifact as rda

        rda.init(user_name="alice")
        rda.save_cloud_artifact("sweeps/lr.csv", df)
        ```
    """
    store = _get_store()
    key = store.key(path)
    data, content_type = write_bytes(extension(path), obj, path)
    try:
        store.client.put_object(Bucket=store.bucket, Key=key, Body=data, ContentType=content_type)
    except Exception as e:
        _fail(store, e, path, "save")


def load_cloud_artifact(path: str) -> Any:
    """Load an object saved with :func:`save_cloud_artifact`.

    Warning:
        ``.pkl`` artifacts are unpickled, and unpickling can run arbitrary code: load only
        artifacts that you (or people you trust) wrote, from a bucket only they can write to.

    Args:
        path: The path it was saved under.

    Returns:
        The object (a DataFrame for ``.csv`` / ``.parquet``, a str for ``.txt``).

    Raises:
        FileNotFoundError: No artifact at ``path``.
        CloudArtifactError: ``init`` was not called, or S3 cannot be reached or used.
        ValueError: Invalid path or unsupported extension.
        PermissionError: S3 denied access.

    Example:
        ```python
        import radas_flows.cloud_artifact as rda

        rda.init(user_name="alice")
        loaded_dict = rda.load_cloud_artifact("my_dict.pkl")
        ```
    """
    store = _get_store()
    key = store.key(path)
    ext = extension(path)
    try:
        response = store.client.get_object(Bucket=store.bucket, Key=key)
        data = response["Body"].read()
    except Exception as e:
        _fail(store, e, path, "load")
    return read_bytes(ext, data)


def rm_cloud_artifact(path: str, *, missing_ok: bool = False) -> None:
    """Delete an artifact.

    Args:
        path: The path it was saved under.
        missing_ok: Do nothing when there is no such artifact instead of raising.

    Raises:
        FileNotFoundError: No artifact at ``path`` (unless ``missing_ok``).
        CloudArtifactError: ``init`` was not called, or S3 cannot be reached or used.
        ValueError: Invalid path.
        PermissionError: S3 denied access.

    Example:
        ```python
        import radas_flows.cloud_artifact as rda

        rda.init(user_name="alice")
        rda.rm_cloud_artifact("my_dict.pkl")
        ```
    """
    store = _get_store()
    key = store.key(path)
    try:
        store.client.head_object(Bucket=store.bucket, Key=key)
    except Exception as e:
        try:
            _fail(store, e, path, "delete")
        except FileNotFoundError:
            if missing_ok:
                return
            raise
    try:
        store.client.delete_object(Bucket=store.bucket, Key=key)
    except Exception as e:
        _fail(store, e, path, "delete")
