"""Monitoring of a cluster run: job status, its log into the Prefect log, progress, results."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from radas_flows.clusters.jobs import job_client, with_retries
from radas_flows.clusters.registry import get_cluster
from radas_flows.errors import ExperimentStateError

if TYPE_CHECKING:
    from radas_flows._artifacts import ProgressArtifact
    from radas_flows.inputs.spec import ExperimentSpec
    from radas_flows.submission import RunHandle
    from radas_flows.tuner import Tuner

__all__ = [
    "KEEP_JOB_ENV",
    "LogRelay",
    "follow_cluster_run",
    "keep_job_on_exit",
    "poll_interval",
]

KEEP_JOB_ENV = "RADAS_KEEP_JOB_ON_EXIT"
"""Set to ``1`` to leave a submitted job running when the flow is cancelled or crashes."""

# The driver's progress lines (radas_flows._tune_callbacks.PROGRESS_MARKER, which imports Ray).
PROGRESS_MARKER = "[radas-progress] "

# Status and log calls survive about two minutes of cluster outage before the flow gives up.
_ATTEMPTS, _BACKOFF, _MAX_BACKOFF = 10, 1.0, 20.0


def keep_job_on_exit() -> bool:
    """Whether the user asked to leave the job running if the flow ends early (``RADAS_KEEP_JOB_ON_EXIT=1``).

    Example:
        >>> keep_job_on_exit()  # doctest: +SKIP
        False
    """  # noqa: E501
    return os.environ.get(KEEP_JOB_ENV, "").strip().lower() in ("1", "true", "yes")


def poll_interval(log_size: int) -> float:
    """Seconds between two polls: 1 s, slower for long logs (each poll reads the whole log).

    Example:
        >>> poll_interval(10_000), poll_interval(50_000_000)
        (1.0, 10.0)
    """
    return min(10.0, max(1.0, log_size / 2_000_000))


@dataclass
class LogRelay:
    r"""Turns new job log text into log lines and progress updates, keeping floods down.

    Repeated identical lines are folded into one "repeated N times" line, each line is
    cut at ``max_line_chars``, and at most ``max_lines`` lines are relayed per call; the
    driver's progress lines become progress updates instead of log lines.

    Example:
        >>> relay = LogRelay()
        >>> relay.feed('a\na\na\n[radas-progress] {"finished": 1, "total": 2}\nb\n')
        ['a', '(previous line repeated 2 more times)', {'finished': 1, 'total': 2}, 'b']
    """

    max_lines: int = 200
    max_line_chars: int = 2000
    _partial: str = ""
    _last: str | None = None
    _repeats: int = 0
    skipped: int = field(default=0)

    def _fold(self, out: list[str | dict[str, Any]]) -> None:
        if self._repeats:
            out.append(f"(previous line repeated {self._repeats} more times)")
            self._repeats = 0

    def feed(self, text: str) -> list[str | dict[str, Any]]:
        """Take new log text; return, in order, the lines to log and the progress updates."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next call
        out: list[str | dict[str, Any]] = []
        shown = 0
        for raw in lines:
            line = raw.rstrip("\r")
            marker = line.find(PROGRESS_MARKER)
            if marker != -1:
                try:
                    update = json.loads(line[marker + len(PROGRESS_MARKER) :])
                except ValueError:
                    update = None
                if isinstance(update, dict):
                    self._fold(out)
                    out.append(update)
                    continue
            if line == self._last:
                self._repeats += 1
                continue
            self._fold(out)
            self._last = line
            if shown >= self.max_lines:
                self.skipped += 1
                continue
            if len(line) > self.max_line_chars:
                line = f"{line[: self.max_line_chars]} ... ({len(line)} characters)"
            out.append(line)
            shown += 1
        if shown >= self.max_lines and self.skipped:
            out.append(f"... {self.skipped} more lines not shown here")
            self.skipped = 0
        return out

    def flush(self) -> list[str | dict[str, Any]]:
        """The lines still held back (an unfinished last line, a pending repeat count)."""
        out: list[str | dict[str, Any]] = []
        self._fold(out)
        if self._partial:
            out.append(self._partial)
            self._partial = ""
        return out


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def follow_cluster_run(
    spec: ExperimentSpec, handle: RunHandle, artifact: ProgressArtifact, logger: Any
) -> Tuner:
    """Follow a cluster job to its end and read its results back.

    Polls the job's status and log (transient API failures are retried with backoff; the
    job is never resubmitted), relays the log into ``logger`` (see :class:`LogRelay`),
    turns the driver's progress lines into ``artifact`` updates, and, once the job ends,
    reads the stored results. If following stops early (the flow is cancelled, crashes,
    or the cluster stays unreachable), a job this flow submitted is stopped, unless
    ``RADAS_KEEP_JOB_ON_EXIT=1``; a job it only attached to is left running.

    Args:
        spec: The experiment.
        handle: The run, from ``submit_cluster_run`` or the attach stage.
        artifact: The progress artifact (finished / total trials).
        logger: The Prefect run logger.

    Returns:
        The results, as ``radas_flows.Tuner``.

    Raises:
        DriverFailedError: The job failed (the message holds the end of its log).
        ExperimentStateError: The job was stopped by someone else, or no results are stored.

    Example:
        >>> tuner = follow_cluster_run(spec, handle, artifact, logger)  # doctest: +SKIP
    """
    from radas_flows.monitoring import DriverFailedError, progress_percent
    from radas_flows.tuner import Tuner

    assert handle.job_id is not None and handle.cluster is not None
    job_id, name = handle.job_id, handle.cluster
    cluster = get_cluster(name)
    client = job_client(cluster)
    relay = LogRelay()
    offset = 0
    last_counts: tuple[Any, ...] | None = None
    status_value = ""
    logs = ""

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
        return with_retries(call, _ATTEMPTS, _BACKOFF, max_backoff=_MAX_BACKOFF, on_retry=on_retry)

    try:
        while True:
            status = retry(lambda: client.get_job_status(job_id))
            logs = retry(lambda: client.get_job_logs(job_id))
            if len(logs) < offset:  # the log was replaced; relay it again from the start
                offset = 0
            items = relay.feed(logs[offset:])
            offset = len(logs)
            terminal = status.is_terminal()
            if terminal:
                items += relay.flush()
            for item in items:
                if isinstance(item, str):
                    logger.info("[job] %s", item)
                    continue
                counts = (item.get("finished", 0), item.get("errored", 0), item.get("total"))
                if counts == last_counts:
                    continue
                last_counts = counts
                percent = progress_percent(item)
                if percent is not None:
                    artifact.update(percent)
                logger.info(
                    "progress: %d/%s trials finished (%d errored)",
                    counts[0],
                    counts[2] if counts[2] is not None else "?",
                    counts[1],
                )
            status_value = str(status.value)
            if terminal:
                break
            time.sleep(poll_interval(len(logs)))
    except BaseException as e:
        _stop_on_exit(client, handle, spec.user_name, logger, e)
        raise

    stop_requested = bool(handle.outcome.get("stop_requested"))
    if status_value == "FAILED":
        info = retry(lambda: client.get_job_info(job_id))
        raise DriverFailedError(
            f"Job {job_id} on cluster {name!r} failed: {info.error_type or 'error'}. The end of "
            f"its log:\n{_tail(logs)}\nWhatever finished is stored in {handle.experiment_path}; "
            f"after fixing the cause, continue with run_choice='restore'."
        )
    if status_value == "STOPPED" and not stop_requested:
        raise ExperimentStateError(
            f"Job {job_id} on cluster {name!r} was stopped before it finished (by `radas stop`, "
            f"stop_job_by_id or the Ray dashboard). What finished is stored in "
            f"{handle.experiment_path}: continue with run_choice='restore', or look at it with "
            f"dos=['analyze']."
        )
    if status_value == "SUCCEEDED":
        artifact.update(100.0)
    try:
        return Tuner.from_path(
            handle.experiment_path, storage_filesystem=handle.driver_spec.storage_filesystem
        )
    except Exception as e:
        raise ExperimentStateError(
            f"Job {job_id} on cluster {name!r} ended {status_value}, but no results can be read "
            f"from {handle.experiment_path} ({type(e).__name__}: {e}). The cluster's results_root "
            f"({cluster.results_root or 'the local results root'}) must be reachable from here "
            f"at the same path, or be an s3:// URI; fix results_root in the [{name}] table of "
            f"{cluster.source}."
        ) from e


def _stop_on_exit(
    client: Any, handle: RunHandle, user: str, logger: Any, error: BaseException
) -> None:
    """Stop the job when following it ended early, unless it must be left running."""
    job_id, name = handle.job_id, handle.cluster
    stop = f"radas stop {job_id} --cluster {name} --user {user}"
    reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if handle.outcome.get("attached"):
        logger.warning(
            "Stopped following job %s on cluster %r (%s); it was already running before this "
            "flow attached to it and keeps running. Stop it with `%s`.",
            job_id,
            name,
            reason,
            stop,
        )
        return
    if keep_job_on_exit():
        logger.warning(
            "Stopped following job %s on cluster %r (%s); %s=1, so it keeps running. Follow it "
            "with run_choice='attach', or stop it with `%s`.",
            job_id,
            name,
            reason,
            KEEP_JOB_ENV,
            stop,
        )
        return
    try:
        stopped = with_retries(lambda: client.stop_job(job_id), attempts=3, backoff=0.5)
    except Exception as stop_error:
        logger.error(
            "Following job %s on cluster %r ended early (%s) and the job could not be stopped "
            "(%s): stop it with `%s`.",
            job_id,
            name,
            reason,
            stop_error,
            stop,
        )
        return
    logger.warning(
        "Following job %s on cluster %r ended early (%s); the job was %s so that it does not "
        "run unattended (set %s=1 to keep jobs running). Continue it later with "
        "run_choice='restore'.",
        job_id,
        name,
        reason,
        "stopped" if stopped else "already finished",
        KEEP_JOB_ENV,
    )
