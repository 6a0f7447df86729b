"""Following a cluster job: status and log polling, results read back, the stop policy."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from radas_flows.clusters.heartbeat import Heartbeat, heartbeat_path
from radas_flows.clusters.job_log import LogRelay, poll_interval, tail
from radas_flows.clusters.jobs import job_client, with_retries
from radas_flows.clusters.log_tail import LogTail
from radas_flows.clusters.registry import get_cluster
from radas_flows.errors import ExperimentStateError
from radas_flows.targets.base import DriverFailedError, Progress, RunHandle

if TYPE_CHECKING:
    from radas_flows.tuner import Tuner

__all__ = ["KEEP_JOB_ENV", "ClusterRun", "follow_job", "keep_job_on_exit", "stop_job"]

KEEP_JOB_ENV = "RADAS_KEEP_JOB_ON_EXIT"
"""Set to ``1`` to leave a submitted job running when the flow is cancelled or crashes."""

# Status and log calls survive about two minutes of cluster outage before the flow gives up.
_ATTEMPTS, _BACKOFF, _MAX_BACKOFF = 10, 1.0, 20.0
#: Seconds between status polls while the log arrives as a stream.
POLL_S = 1.0
#: How long a finished job's log stream may take to deliver its last lines.
_STREAM_END_WAIT_S = 10.0
#: The end of the log kept for a failure message.
_KEPT_LOG_CHARS = 65_536
#: How many times a status or log call is tried before the cluster counts as lost (default 10).
FOLLOW_ATTEMPTS_ENV = "RADAS_FOLLOW_ATTEMPTS"


def follow_attempts() -> int:
    """``RADAS_FOLLOW_ATTEMPTS``: calls before a cluster that does not answer counts as lost."""
    raw = os.environ.get(FOLLOW_ATTEMPTS_ENV, "").strip()
    return max(int(raw), 1) if raw.isdigit() else _ATTEMPTS


@dataclass
class ClusterRun(RunHandle):
    """A Ray job on a named cluster."""

    job_id: str = ""
    cluster: str = ""
    user_name: str = ""

    @property
    def stop_command(self) -> str:
        return f"radas stop {self.job_id} --cluster {self.cluster} --user {self.user_name}"


def keep_job_on_exit() -> bool:
    """Whether a job must keep running when the flow ends early (``RADAS_KEEP_JOB_ON_EXIT=1``).

    Example:
        >>> keep_job_on_exit()  # doctest: +SKIP
        False
    """
    return os.environ.get(KEEP_JOB_ENV, "").strip().lower() in ("1", "true", "yes")


def follow_job(
    handle: ClusterRun, progress: Progress, *, on_exit: Callable[[BaseException], None]
) -> Tuner:
    """Follow a cluster job to its end and read its results back.

    Polls the job's status and log (transient API failures are retried with backoff; the job
    is never resubmitted), relays the log into the run's log (see
    :class:`~radas_flows.clusters.job_log.LogRelay`), turns the driver's progress lines into
    progress updates, and reads the stored results once the job ends. If following stops
    early (the flow is cancelled, crashes, or the cluster stays unreachable), ``on_exit``
    gets the reason before it is raised again.

    Raises:
        DriverFailedError: The job failed (the message holds the end of its log).
        ExperimentStateError: The job was stopped by someone else, or no results are stored.
    """
    from radas_flows.tuner import Tuner

    job_id, name, logger = handle.job_id, handle.cluster, progress.logger
    cluster = get_cluster(name)
    client = job_client(cluster)
    relay = LogRelay()
    offset = 0  # characters of the log relayed so far
    status_value = ""
    logs = ""  # the end of the log relayed so far (for the failure message)
    stream = LogTail(client, job_id)  # incremental; the whole log is read only as a fallback

    def on_retry(attempt: int, error: BaseException, delay: float) -> None:
        logger.warning(
            "cluster %r did not answer (%s: %s); retrying in %.0f s (attempt %d)",
            name,
            type(error).__name__,
            error,
            delay,
            attempt,
        )

    def retry(call: Any) -> Any:
        return with_retries(
            call, follow_attempts(), _BACKOFF, max_backoff=_MAX_BACKOFF, on_retry=on_retry
        )

    def new_text(terminal: bool) -> str:
        """The log text not relayed yet: from the stream, else (fallback) the whole log."""
        nonlocal offset
        if terminal and not stream.failed:
            stream.wait_ended(_STREAM_END_WAIT_S)
        if not stream.failed and (not terminal or stream.ended.is_set()):
            text = stream.read()
        else:
            whole = retry(lambda: client.get_job_logs(job_id))
            if len(whole) < offset:  # the log was replaced; relay it again from the start
                offset = 0
            text = whole[offset:]
        offset += len(text)
        return text

    heartbeat = None
    timeout = handle.driver_spec.follower_timeout_s
    if timeout and not handle.attached:  # only the submitting flow keeps its job alive
        path = heartbeat_path(handle.driver_spec.storage_path, handle.run_id)
        heartbeat = Heartbeat.claim(path, timeout, logger)
    try:
        while True:
            status = retry(lambda: client.get_job_status(job_id))
            terminal = status.is_terminal()
            text = new_text(terminal)
            logs = (logs + text)[-_KEPT_LOG_CHARS:]
            items = relay.feed(text)
            if terminal:
                items += relay.flush()
            for item in items:
                if isinstance(item, str):
                    logger.info("[job] %s", item)
                else:
                    progress.update(item)
            status_value = str(status.value)
            if terminal:
                break
            time.sleep(POLL_S if not stream.failed else poll_interval(offset))
    except BaseException as e:
        if heartbeat is not None:
            heartbeat.stop()
        on_exit(e)
        raise
    finally:
        stream.close()
        if heartbeat is not None:  # gone: a job still running stops within its timeout
            heartbeat.stop(remove=True)

    if status_value == "FAILED":
        info = retry(lambda: client.get_job_info(job_id))
        raise DriverFailedError(failure_text(handle, info, logs))
    if status_value == "STOPPED" and not handle.stop_requested:
        handle.stopped_elsewhere = (
            f"Job {job_id} on cluster {name!r} was stopped before it finished (by a "
            "run_choice='stop_attach' run of the same experiment, `radas stop`, stop_job_by_id "
            f"or the Ray dashboard). What finished was analyzed and is stored in "
            f"{handle.experiment_path}: continue with run_choice='restore'."
        )
        logger.warning("%s", handle.stopped_elsewhere)
    if status_value == "SUCCEEDED":
        progress.done()
    try:
        return Tuner.from_path(handle.experiment_path)
    except Exception as e:
        raise ExperimentStateError(
            f"Job {job_id} on cluster {name!r} ended {status_value}, but no results can be read "
            f"from {handle.experiment_path} ({type(e).__name__}: {e}). The cluster's results_root "
            f"({cluster.results_root or 'the local results root'}) must be reachable from here "
            f"at the same path, or be an s3:// URI; fix results_root in "
            f"{cluster.where}."
        ) from e


def failure_text(handle: ClusterRun, info: Any, logs: str) -> str:
    """What a failed job's error says: Ray's reason (``JobInfo.message``) and its log's end.

    A job that fails before its driver starts (``RUNTIME_ENV_SETUP_FAILURE``) has an empty
    log; the reason is only in the job's message. Both are cleaned of the cluster's token and
    every registered secret.
    """
    from radas_flows.clusters.credentials import auth_headers
    from radas_flows.secrets import redact_registered, redact_text

    token = auth_headers(get_cluster(handle.cluster)).get("Authorization", "")
    secrets = [token, token.removeprefix("Bearer ")]
    reason = ray_reason(str(info.message or ""))
    end = tail(logs)
    text = (
        f"Job {handle.job_id} on cluster {handle.cluster!r} failed: {info.error_type or 'error'}."
        + (f" Ray's reason: {reason}" if reason else "")
        + (
            f"\nThe end of its log:\n{end}\nWhatever finished is stored in "
            f"{handle.experiment_path}; after fixing the cause, continue with "
            "run_choice='restore'."
            if end
            else "\nIts log is empty: the job failed before its driver started, so no trial "
            "ran. Fix the cause and run it again."
        )
    )
    return redact_registered(redact_text(text, secrets))


def ray_reason(message: str, max_chars: int = 2000) -> str:
    r"""The gist of a Ray job's failure message: its first lines and the exception that ended it.

    Example:
        >>> ray_reason("setup failed.\nTraceback (most recent call last):\n  File \"x\", line 1\n"
        ...            "    f()\nOSError: no package")
        'setup failed. [...] OSError: no package'
    """
    lines = [line.rstrip() for line in message.strip().splitlines() if line.strip()]
    if "Traceback (most recent call last):" in message:
        start = next(i for i, line in enumerate(lines) if "Traceback (most" in line)
        last_frame = max(
            (i for i, line in enumerate(lines) if line.lstrip().startswith("File ")), default=start
        )
        after = [line for line in lines[last_frame + 1 :] if not line.startswith(" ")]
        lines = [*lines[:start], "[...]", *after]
    text = " ".join(lines)
    return text if len(text) <= max_chars else f"{text[:max_chars]} ... ({len(text)} characters)"


def stop_job(handle: ClusterRun, logger: Any, reason: BaseException) -> None:
    """Stop the job when following it ended early, unless it must be left running.

    A job this flow only attached to keeps running, and so does every job when
    ``RADAS_KEEP_JOB_ON_EXIT=1``.
    """
    job_id, name, stop = handle.job_id, handle.cluster, handle.stop_command
    why = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
    if handle.attached:
        logger.warning(
            "Stopped following job %s on cluster %r (%s); it was already running before this "
            "flow attached to it and keeps running. Stop it with `%s`.",
            job_id,
            name,
            why,
            stop,
        )
        return
    if keep_job_on_exit():
        logger.warning(
            "Stopped following job %s on cluster %r (%s); %s=1, so it keeps running. Follow it "
            "with run_choice='attach', or stop it with `%s`.",
            job_id,
            name,
            why,
            KEEP_JOB_ENV,
            stop,
        )
        return
    try:
        client = job_client(get_cluster(name))
        stopped = with_retries(lambda: client.stop_job(job_id), attempts=3, backoff=0.5)
    except Exception as stop_error:
        timeout = handle.driver_spec.follower_timeout_s
        logger.error(
            "Following job %s on cluster %r ended early (%s) and the job could not be stopped "
            "(%s): %sstop it with `%s`.",
            job_id,
            name,
            why,
            stop_error,
            f"it stops itself within {timeout:g} s of this flow's last heartbeat, or "
            if timeout
            else "",
            stop,
        )
        return
    logger.warning(
        "Following job %s on cluster %r ended early (%s); the job was %s so that it does not "
        "run unattended (set %s=1 to keep jobs running). Continue it later with "
        "run_choice='restore'.",
        job_id,
        name,
        why,
        "stopped" if stopped else "already finished",
        KEEP_JOB_ENV,
    )
