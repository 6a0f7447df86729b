"""Stage 5, notify: the run report, emailed to ``email_notification_to_address``."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows.errors import TrialsFailedError
from radas_flows.secrets import redact, redact_registered

if TYPE_CHECKING:
    from radas_flows.inputs.spec import ExperimentSpec

__all__ = [
    "DEFAULT_NOTIFY_RETRIES",
    "DEFAULT_NOTIFY_RETRY_DELAY_S",
    "RunReport",
    "email_notify",
    "notify_retry_settings",
    "notify_run",
    "run_outcome",
]

#: How often a failed email is tried again (``RADAS_NOTIFY_RETRIES``).
DEFAULT_NOTIFY_RETRIES = 2
#: Seconds between two tries (``RADAS_NOTIFY_RETRY_DELAY_S``).
DEFAULT_NOTIFY_RETRY_DELAY_S = 10.0

_STATE_WORDS: dict[str, str] = {"TERMINATED": "completed", "ERROR": "errored"}
_STOP_ERRORS: tuple[str, ...] = ("KeyboardInterrupt", "TerminationSignal", "CancelledError")

log = logging.getLogger(__name__)


def run_outcome(
    counts: Mapping[str, int], error: BaseException | None = None, *, stopped: bool = False
) -> str:
    """The outcome a report states: ``completed``, ``partial``, ``failed`` or ``stopped``.

    ``partial``: some trials errored, or the run raised a
    :class:`~radas_flows.errors.TrialsFailedError` (such as the out-of-memory cap being hit)
    after keeping and analyzing what completed.

    Args:
        counts: Trials by Tune state (``TERMINATED``, ``ERROR``...).
        error: What the run raised, if anything.
        stopped: The run was stopped on purpose (``run_choice="stop_attach"``).

    Example:
        >>> run_outcome({"TERMINATED": 3}), run_outcome({"TERMINATED": 2, "ERROR": 1})
        ('completed', 'partial')
        >>> run_outcome({}, ValueError("x")), run_outcome({}, KeyboardInterrupt())
        ('failed', 'stopped')
    """
    if isinstance(error, TrialsFailedError):
        return "partial"
    if error is not None:
        return "stopped" if type(error).__name__ in _STOP_ERRORS else "failed"
    if stopped:
        return "stopped"
    return "partial" if counts.get("ERROR") else "completed"


def _trials_text(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    parts = [f"{n} {_STATE_WORDS.get(s, s.lower())}" for s, n in sorted(counts.items(), key=_order)]
    return f"{total} ({', '.join(parts)})"


def _order(item: tuple[str, int]) -> tuple[int, str]:
    state = item[0]
    return (list(_STATE_WORDS).index(state) if state in _STATE_WORDS else 9, state)


def _duration_text(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{seconds:.1f} s ({clock})"


@dataclass
class RunReport:
    """The facts of one run that the summary artifact and the email tell.

    Example:
        >>> report = RunReport("lr-sweep", "alice", "local", "partial",
        ...                    counts={"TERMINATED": 3, "ERROR": 1})
        >>> report.subject()
        '[radas] lr-sweep on local: partial, 3 of 4 trials completed'
    """

    experiment_name: str
    user_name: str
    target: str
    state: str  # "completed", "partial", "failed", "stopped"
    duration_s: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    recommendation: str | None = None
    results_path: str | None = None
    csv_path: str | None = None
    figure_path: str | None = None
    preview_path: str | None = None
    error: str | None = None
    flow_run_url: str | None = None
    email_to: str | None = None
    email_error: str | None = None

    def subject(self) -> str:
        """One line: experiment, target, outcome and how many trials completed."""
        text = f"[radas] {self.experiment_name} on {self.target}: {self.state}"
        if self.counts:
            done = self.counts.get("TERMINATED", 0)
            text += f", {done} of {sum(self.counts.values())} trials completed"
        return redact_registered(text)

    def body(self) -> str:
        """The plain-text email: every fact of the run, secrets redacted."""
        lines = [
            f"Experiment: {self.experiment_name} (user {self.user_name})",
            f"Cluster: {self.target}",
            f"Outcome: {self.state}",
        ]
        if self.duration_s is not None:
            lines.append(f"Duration: {_duration_text(self.duration_s)}")
        lines.append(f"Trials: {_trials_text(self.counts)}" if self.counts else "Trials: none ran")
        if self.best:
            lines.append(f"Best {self.best['metric']}: {self.best['value']}")
            lines.append(f"Best config: {redact(self.best['config'])}")
        if self.recommendation:
            lines.append(f"Recommendation: {self.recommendation}")
        if self.error:
            lines += ["", f"Error: {self.error}"]
        lines.append("")
        lines += self.storage_lines()
        if self.flow_run_url:
            lines += ["", f"Prefect flow run: {self.flow_run_url}"]
        return redact_registered("\n".join(lines) + "\n")

    def storage_lines(self) -> list[str]:
        """Where the results, the table and the figure are (and what to do after a failure)."""
        if not self.results_path:
            return ["Results: none stored (the run failed before it started)."]
        lines = [f"Results: {self.results_path}"]
        if self.csv_path:
            lines.append(f"Table: {self.csv_path}")
        figure = self.attachments()
        if self.figure_path or self.preview_path:
            shown = self.figure_path or self.preview_path
            lines.append(f"Figure: {shown}" + (" (attached)" if figure else ""))
        if self.state in ("failed", "stopped"):
            lines.append(
                "Whatever finished is stored there: continue with run_choice='restore', or "
                "analyze it with dos=['analyze']."
            )
        return lines

    def attachments(self) -> list[str]:
        """The figure files to attach: the saved figure, and the PNG preview when it differs."""
        files = [p for p in (self.figure_path, self.preview_path) if p and os.path.isfile(p)]
        if len(files) == 2 and Path(files[0]).suffix.lower() == ".png":
            files = files[:1]
        return files


def notify_retry_settings(environ: Mapping[str, str] | None = None) -> tuple[int, float]:
    """The email task's retries and delay: ``RADAS_NOTIFY_RETRIES``, ``RADAS_NOTIFY_RETRY_DELAY_S``.

    Bad values are reported in the log and replaced by the defaults (the report must still go).

    Example:
        >>> notify_retry_settings({"RADAS_NOTIFY_RETRIES": "1", "RADAS_NOTIFY_RETRY_DELAY_S": "0"})
        (1, 0.0)
        >>> notify_retry_settings({})
        (2, 10.0)
    """
    env = os.environ if environ is None else environ
    retries, delay = DEFAULT_NOTIFY_RETRIES, DEFAULT_NOTIFY_RETRY_DELAY_S
    raw = env.get("RADAS_NOTIFY_RETRIES", "").strip()
    if raw:
        if raw.isdigit():
            retries = int(raw)
        else:
            log.warning(
                "RADAS_NOTIFY_RETRIES=%r is not a whole number >= 0; using %d.", raw, retries
            )
    raw = env.get("RADAS_NOTIFY_RETRY_DELAY_S", "").strip()
    if raw:
        try:
            value = float(raw)
            if not value >= 0:
                raise ValueError(raw)
            delay = value
        except ValueError:
            log.warning(
                "RADAS_NOTIFY_RETRY_DELAY_S=%r is not a number of seconds >= 0; using %g.",
                raw,
                delay,
            )
    return retries, delay


@task(
    name="email_notify",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=DEFAULT_NOTIFY_RETRIES,
    retry_delay_seconds=DEFAULT_NOTIFY_RETRY_DELAY_S,
)
def email_notify(report: RunReport) -> bool:
    """Email the run report (the figure attached) to ``report.email_to``.

    Returns:
        False when no address is set, True once the server accepted the email.

    Raises:
        radas_flows.email.EmailSendError: The SMTP server is unreachable or refused it.
        radas_flows.email.EmailConfigError: No SMTP server is configured.

    Example:
        ```python
        from prefect import flow
        from radas_flows.notification import RunReport, email_notify

        @flow
        def tell():
            email_notify(RunReport("lr-sweep", "alice", "local", "completed",
                                   email_to="alice@example.com"))
        ```
    """
    if not report.email_to:
        return False
    from radas_flows.email import send_email

    send_email(
        report.email_to,
        report.subject(),
        report.body(),
        attachments=list(report.attachments()) or None,
    )
    get_run_logger().info("Emailed the run report to %s", report.email_to)
    return True


def notify_run(spec: ExperimentSpec, report: RunReport) -> bool:
    """Run the ``email_notify`` task for a finished run; never raises.

    The email is tried ``1 + RADAS_NOTIFY_RETRIES`` times. When it still fails, the task run
    ends Failed (visible in the UI), a warning says the results are safe and where they are,
    and ``report.email_error`` holds the reason; the flow's own outcome is unchanged.

    Returns:
        True when the email was sent; False when no address is set or it failed.
    """
    report.email_to = spec.email_notification_to_address
    if not report.email_to:
        return False
    retries, delay = notify_retry_settings()
    logger = get_run_logger()
    try:
        state = email_notify.with_options(retries=retries, retry_delay_seconds=delay)(
            report, return_state=True
        )
        if not state.is_failed():
            return True
        try:
            state.result()
        except Exception as e:
            report.email_error = redact_registered(f"{type(e).__name__}: {e}")
        else:
            report.email_error = redact_registered(state.message or "the email task failed")
    except Exception as e:  # the task could not even be started
        report.email_error = redact_registered(f"{type(e).__name__}: {e}")
    where = report.results_path or "nowhere (nothing ran)"
    logger.warning(
        "The run report could not be emailed to %s after %d tries: %s. Only the email failed: "
        "the results are stored in %s.",
        report.email_to,
        retries + 1,
        report.email_error,
        where,
    )
    return False
