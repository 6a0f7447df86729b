"""S3 settings from a prefect-aws block: an ``S3Bucket`` or an ``AwsCredentials`` block."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from radas_flows.secrets import redact_registered, register_secret

__all__ = ["S3BlockSettings", "block_filesystem", "s3_settings_from_block"]

_SLUGS = ("s3-bucket", "aws-credentials", "minio-credentials")


@dataclass(frozen=True)
class S3BlockSettings:
    """What a prefect-aws block says about S3.

    Attributes:
        bucket: The ``S3Bucket`` block's ``bucket_name`` (``None`` for a credentials block).
        prefix: Its ``bucket_folder`` when not empty.
        endpoint_url: The credentials' ``aws_client_parameters.endpoint_url``.
        session: A boto3 session made from the block's credentials (never shown in ``repr``).
        source: The block, for messages.
    """

    bucket: str | None
    prefix: str | None
    endpoint_url: str | None
    session: Any = field(repr=False)
    source: str


def _load(name: str) -> Any:
    try:
        import prefect_aws  # noqa: F401  (registers the block types)
        from prefect.blocks.core import Block
    except ImportError as e:
        raise ValueError(
            f"The S3 block {name!r} needs prefect-aws: pip install 'radas-flows[aws]'."
        ) from e
    slug, _, rest = name.partition("/")
    reference = name if rest and slug in _SLUGS else f"s3-bucket/{name}"
    try:
        return Block.load(reference, _sync=True)  # type: ignore[call-arg]
    except Exception as e:
        raise ValueError(
            f"Cannot load the prefect-aws block {reference!r} ({type(e).__name__}: "
            f"{redact_registered(str(e))}); create it in the Prefect UI (Blocks), name an "
            f"existing one as 's3-bucket/<name>' or 'aws-credentials/<name>', or unset "
            f"RADAS_S3_BLOCK to use the environment."
        ) from e


def s3_settings_from_block(block: Any) -> S3BlockSettings:
    """Read bucket, folder, endpoint and credentials from a prefect-aws block.

    Args:
        block: An ``S3Bucket``, ``AwsCredentials`` or ``MinIOCredentials`` block, or a saved
            block's name: ``"<name>"`` (an ``S3Bucket``), ``"s3-bucket/<name>"``,
            ``"aws-credentials/<name>"`` or ``"minio-credentials/<name>"``.

    Returns:
        The settings; the secret key and session token are registered for redaction.

    Raises:
        ValueError: The block cannot be loaded, or is of another kind.

    Example:
        >>> s3_settings_from_block("s3-bucket/artifacts").bucket  # doctest: +SKIP
        'my-bucket'
    """
    source = f"prefect-aws block {block!r}" if isinstance(block, str) else "the prefect-aws block"
    loaded = _load(block) if isinstance(block, str) else block
    bucket = getattr(loaded, "bucket_name", None)
    credentials: Any = getattr(loaded, "credentials", None) if bucket is not None else loaded
    if not hasattr(credentials, "get_boto3_session"):
        raise ValueError(
            f"{source} is a {type(loaded).__name__}; use an S3Bucket, AwsCredentials or "
            "MinIOCredentials block."
        )
    for secret_field in ("aws_secret_access_key", "minio_root_password"):
        secret = getattr(credentials, secret_field, None)
        if secret is not None:
            register_secret(secret.get_secret_value())
    register_secret(getattr(credentials, "aws_session_token", None))
    parameters = getattr(credentials, "aws_client_parameters", None)
    folder = str(getattr(loaded, "bucket_folder", "") or "").strip("/")
    return S3BlockSettings(
        bucket=bucket,
        prefix=folder or None,
        endpoint_url=getattr(parameters, "endpoint_url", None) or None,
        session=credentials.get_boto3_session(),
        source=source,
    )


_FILESYSTEMS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _unpickled_filesystem(name: str, endpoint: str | None, region: str | None) -> Any:
    """What a pickled block filesystem becomes: this process's one for the block, else one
    with the standard AWS environment's credentials (a Ray worker, a later reader), so the
    pickle never holds a secret.
    """
    if name in _FILESYSTEMS:
        return _FILESYSTEMS[name]
    import pyarrow.fs

    return pyarrow.fs.S3FileSystem(endpoint_override=endpoint, region=region or "")


def block_filesystem(name: str) -> Any:
    """A pyarrow S3 filesystem with the credentials and endpoint of the prefect-aws block ``name``.

    One per block in a process. It pickles as the block's name (with the endpoint and region),
    never its keys: Ray Tune stores its ``RunConfig`` in the experiment folder (``tuner.pkl``).

    Raises:
        ValueError: The block cannot be loaded, or gives no credentials.
    """
    with _LOCK:
        if name in _FILESYSTEMS:
            return _FILESYSTEMS[name]
        import pyarrow.fs

        settings = s3_settings_from_block(name)
        found = settings.session.get_credentials()
        if found is None:
            raise ValueError(f"{settings.source} gives no AWS credentials; set its keys.")
        frozen = found.get_frozen_credentials()
        register_secret(frozen.secret_key)
        register_secret(frozen.token)
        region = settings.session.region_name

        class _BlockS3FileSystem(pyarrow.fs.S3FileSystem):
            def __reduce__(self) -> tuple[Any, ...]:
                return (_unpickled_filesystem, (name, settings.endpoint_url, region))

        filesystem = _BlockS3FileSystem(
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            session_token=frozen.token,
            endpoint_override=settings.endpoint_url,
            region=region or "",
        )
        _FILESYSTEMS[name] = filesystem
        return filesystem
