"""Ray Jobs API plumbing: authenticated clients, submission ids, runtime_env merging, retries."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from radas_flows.clusters.credentials import auth_headers, redirect_error
from radas_flows.clusters.registry import ClusterAuthError, ClusterConfig
from radas_flows.errors import RadasError
from radas_flows.inputs.runtime_env import RuntimeEnvError, check_runtime_env

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

__all__ = [
    "METADATA_EXPERIMENT",
    "METADATA_USER",
    "ClusterConnectionError",
    "find_jobs",
    "is_transient_error",
    "job_client",
    "job_metadata",
    "merge_runtime_env",
    "submission_id",
    "submission_prefix",
    "with_retries",
]

T = TypeVar("T")

METADATA_USER = "radas_user"
"""Job metadata key holding the user name."""

METADATA_EXPERIMENT = "radas_experiment"
"""Job metadata key holding the (prefixed) experiment name."""

_TRANSIENT_NAMES = frozenset(
    {
        "ConnectionError",
        "Timeout",
        "ConnectTimeout",
        "ReadTimeout",
        "ChunkedEncodingError",
        "ClientConnectionError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
    }
)
_TRANSIENT_STATUS_RE = re.compile(r"status code (502|503|504)\b")


class ClusterConnectionError(RadasError, ConnectionError):
    """A cluster's Jobs API cannot be reached."""


@functools.cache
def _client_class() -> Callable[..., JobSubmissionClient]:
    """Build the JobSubmissionClient subclass used for registry clusters (imports Ray)."""
    import ray
    from ray.dashboard.modules.dashboard_sdk import SubmissionClient
    from ray.job_submission import JobSubmissionClient

    class RegistryJobClient(JobSubmissionClient):
        """A JobSubmissionClient bound to one cluster, with a timeout on every request.

        ``JobSubmissionClient`` lets ``RAY_ADDRESS`` / ``RAY_API_SERVER_ADDRESS`` override
        the address it is given, sends requests without a timeout, follows redirects (with
        the request's body, for 307 and 308) and, when this process has Ray token
        authentication enabled (``RAY_AUTH_MODE=token``), adds this process's own Ray token
        to a cluster the registry names no token for. A client for a registry cluster talks
        to that cluster only, with that cluster's token only, and fails fast when it is down.
        """

        def __init__(
            self,
            cluster: ClusterConfig,
            *,
            headers: dict[str, str],
            timeout: float,
            read_timeout: float,
        ) -> None:
            self._client_ray_version = ray.__version__
            self._cluster = cluster
            # The first request (version and token check) must answer quickly.
            self._request_timeout = (timeout, timeout)
            SubmissionClient.__init__(self, address=cluster.address, headers=dict(headers))
            self._headers = dict(headers)  # nothing Ray adds: only this cluster's token
            self._check_connection_and_version(
                min_version="2.0",
                version_error_message=(
                    "The cluster's Ray is older than 2.0; its Jobs API is not supported."
                ),
            )
            self._request_timeout = (timeout, read_timeout)

        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", self._request_timeout)
            kwargs["allow_redirects"] = False
            response = super()._do_request(method, endpoint, **kwargs)
            if response.is_redirect:
                raise redirect_error(
                    self._cluster,
                    self._address + endpoint,
                    response.status_code,
                    response.headers.get("Location"),
                )
            return response

    return RegistryJobClient


def _token_source(cluster: ClusterConfig) -> str:
    if cluster.token_file is not None:
        return f"token_file {cluster.token_file!r}"
    if cluster.token_env is not None:
        return f"the environment variable {cluster.token_env} (token_env)"
    if cluster.from_block:
        return f"the token of {cluster.where}"
    return "no token"


def job_client(
    cluster: ClusterConfig, *, timeout: float = 5.0, read_timeout: float = 120.0
) -> JobSubmissionClient:
    """Connect to a registry cluster's Ray Jobs API, with its auth token.

    The token (from the cluster's ``token_file`` or ``token_env``) is sent as an
    ``Authorization: Bearer <token>`` header, which Ray 2.60's dashboard checks; no
    ``RAY_AUTH_MODE`` or other process-wide setting is needed or changed. The client
    always talks to ``cluster.address`` (``RAY_ADDRESS`` does not redirect it), follows no
    HTTP redirect (:class:`~radas_flows.clusters.credentials.ClusterRedirectError`), sends
    no token but this cluster's, and every request has a timeout. The connection and the
    token are checked before returning.

    Args:
        cluster: The cluster, from :func:`~radas_flows.clusters.registry.get_cluster`.
        timeout: Seconds to wait for a TCP connection (and for the initial check).
        read_timeout: Seconds to wait for an answer to later requests.

    Returns:
        A ``ray.job_submission.JobSubmissionClient`` for the cluster.

    Raises:
        ClusterAuthError: The token cannot be read, or the cluster rejects it or needs one.
        ClusterConnectionError: The cluster does not answer within ``timeout``.
        ClusterRedirectError: The cluster answered with a redirect.

    Example:
        >>> from radas_flows.clusters.registry import get_cluster
        >>> client = job_client(get_cluster("atol-gpu-5090"))  # doctest: +SKIP
        >>> client.get_job_status("radas-me-1a2b3c4d-20260101T000000-beef")  # doctest: +SKIP
        <JobStatus.RUNNING: 'RUNNING'>
    """
    headers = auth_headers(cluster)
    token = headers.get("Authorization")
    where = cluster.where
    try:
        return _client_class()(cluster, headers=headers, timeout=timeout, read_timeout=read_timeout)
    except Exception as e:
        if type(e).__name__ == "AuthenticationError":
            if token is None:
                raise ClusterAuthError(
                    f"Cluster {cluster.name!r} at {cluster.address} requires a Ray auth token, "
                    f"and the registry names none for it: "
                    + (
                        f"set the token of {where}."
                        if cluster.from_block
                        else f'add token_file = "<path>" or token_env = "<VAR>" to {where}.'
                    )
                ) from e
            raise ClusterAuthError(
                f"Cluster {cluster.name!r} at {cluster.address} rejected the auth token from "
                f"{_token_source(cluster)}: it is not this cluster's token (or it has been "
                f"rotated). Put the cluster's current token there (on the head node, "
                f"`ray get-auth-token` prints it)."
            ) from e
        if is_transient_error(e):
            raise ClusterConnectionError(
                f"Cannot reach cluster {cluster.name!r} at {cluster.address} within "
                f"{timeout:g} s ({type(e).__name__}). Check that it is online with "
                f"`radas clusters`, or fix its address in {where}."
            ) from e
        raise


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "user"


def submission_prefix(user_name: str, experiment_name: str) -> str:
    """Return the fixed start of every submission id of one user's experiment.

    Args:
        user_name: The user.
        experiment_name: The (prefixed) experiment name.

    Returns:
        ``radas-<user>-<8 hex digits of the experiment's sha256>-``.

    Example:
        >>> submission_prefix("yuhang", "_home_yuhang_proj_lr_sweep")
        'radas-yuhang-0de76972-'
    """
    digest = hashlib.sha256(experiment_name.encode("utf-8")).hexdigest()[:8]
    return f"radas-{_slug(user_name)}-{digest}-"


def submission_id(user_name: str, experiment_name: str, *, now: datetime | None = None) -> str:
    """Make a new Ray job submission id for one run of an experiment.

    The id starts with :func:`submission_prefix` (derived from the user and the
    experiment, so the experiment's jobs can be found again) and ends with a UTC
    timestamp and a random suffix, so re-runs never collide.

    Args:
        user_name: The user.
        experiment_name: The (prefixed) experiment name.
        now: The time to stamp; the current time by default.

    Returns:
        ``radas-<user>-<hash8>-<YYYYmmddTHHMMSS>-<4 hex digits>``.

    Example:
        >>> submission_id("yuhang", "lr_sweep").startswith(submission_prefix("yuhang", "lr_sweep"))
        True
    """
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{submission_prefix(user_name, experiment_name)}{stamp}-{secrets.token_hex(2)}"


def job_metadata(user_name: str, experiment_name: str) -> dict[str, str]:
    """Return the metadata every radas job carries (user and experiment).

    Example:
        >>> job_metadata("yuhang", "lr_sweep")
        {'radas_user': 'yuhang', 'radas_experiment': 'lr_sweep'}
    """
    return {METADATA_USER: user_name, METADATA_EXPERIMENT: experiment_name}


def find_jobs(
    client: JobSubmissionClient, user_name: str, experiment_name: str | None = None
) -> list[JobDetails]:
    """List a user's radas jobs on a cluster, oldest first.

    Args:
        client: A client from :func:`job_client`.
        user_name: Only jobs whose metadata names this user.
        experiment_name: When given, only jobs of this (prefixed) experiment.

    Returns:
        The jobs' ``JobDetails`` (``submission_id``, ``status``, ``start_time`` in ms, ...).

    Example:
        >>> jobs = find_jobs(client, "yuhang", "lr_sweep")  # doctest: +SKIP
        >>> [j.submission_id for j in jobs if not j.status.is_terminal()]  # doctest: +SKIP
        ['radas-yuhang-0de76972-20260101T000000-beef']
    """
    jobs = []
    for job in client.list_jobs():
        metadata = job.metadata or {}
        if metadata.get(METADATA_USER) != user_name:
            continue
        if experiment_name is not None and metadata.get(METADATA_EXPERIMENT) != experiment_name:
            continue
        jobs.append(job)
    jobs.sort(key=lambda j: (j.start_time is None, j.start_time or 0, j.submission_id or ""))
    return jobs


def merge_runtime_env(
    user_runtime_env: Mapping[str, Any] | None, working_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """Build a cluster job's runtime_env: the user's fields plus ``working_dir``.

    Rules (from the radas reference): ``working_dir`` is always the directory the user
    runs their script from and may not be set by the user; the other rules are those of
    :func:`radas_flows.inputs.runtime_env.check_runtime_env` for a cluster run;
    with ``image_uri`` the job gets no ``working_dir`` (the image must hold the code).

    Args:
        user_runtime_env: The user's ``runtime_env`` (may be empty or ``None``).
        working_dir: The directory to upload as the job's working dir (the user's cwd).

    Returns:
        A new dict to pass to ``JobSubmissionClient.submit_job(runtime_env=...)``.

    Raises:
        RuntimeEnvError: A rule is broken; the message names the key and the fix.

    Example:
        >>> env = merge_runtime_env({"env_vars": {"OMP_NUM_THREADS": "1"}}, ".")
        >>> sorted(env)
        ['env_vars', 'working_dir']
    """
    user_env = check_runtime_env(user_runtime_env, local=False)
    if "image_uri" in user_env:
        return {"image_uri": user_env["image_uri"]}

    directory = Path(working_dir).expanduser().resolve()
    if not directory.is_dir():
        raise RuntimeEnvError(
            f"The working directory {str(directory)!r} does not exist or is not a directory; "
            f"run your script from the directory that holds it and your trainable."
        )
    merged: dict[str, Any] = {}
    for key, value in user_env.items():
        merged[key] = (
            dict(value)
            if isinstance(value, dict)
            else (list(value) if isinstance(value, list) else value)
        )
    merged["working_dir"] = str(directory)
    return merged


def is_transient_error(exc: BaseException) -> bool:
    """Tell whether an error from the Jobs API is worth retrying (a connection problem).

    Connection failures, timeouts and HTTP 502/503/504 answers are transient;
    authentication errors, unknown jobs and bad requests are not.

    Example:
        >>> is_transient_error(ConnectionError("refused"))
        True
        >>> is_transient_error(RuntimeError("Job x does not exist"))
        False
    """
    if isinstance(exc, ClusterAuthError) or type(exc).__name__ == "AuthenticationError":
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__):
        return True
    return isinstance(exc, RuntimeError) and bool(_TRANSIENT_STATUS_RE.search(str(exc)))


def with_retries(
    fn: Callable[[], T],
    attempts: int = 5,
    backoff: float = 0.5,
    *,
    max_backoff: float = 8.0,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``, retrying with exponential backoff when it fails with a transient error.

    Only errors :func:`is_transient_error` accepts are retried; any other error is
    raised at once. Nothing is resubmitted: pass idempotent calls (status, logs, list).

    Args:
        fn: The call, without arguments (use a lambda or ``functools.partial``).
        attempts: How many calls at most (1 means no retry).
        backoff: Seconds before the first retry; doubled after each, up to ``max_backoff``.
        max_backoff: The longest wait between two calls.
        on_retry: Called as ``on_retry(attempt, error, delay)`` before each wait.
        sleep: The function that waits (``time.sleep``).

    Returns:
        What ``fn`` returns.

    Raises:
        Exception: The last transient error once ``attempts`` are used up, or the
            first non-transient error.

    Example:
        >>> status = with_retries(lambda: client.get_job_status(job_id))  # doctest: +SKIP
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}.")
    delay = backoff
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as e:
            if attempt == attempts or not is_transient_error(e):
                raise
            wait = min(delay, max_backoff)
            if on_retry is not None:
                on_retry(attempt, e, wait)
            sleep(wait)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover
