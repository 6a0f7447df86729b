"""The run report: the facts the summary artifact and the email tell, and their wording."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radas_flows.errors import TrialsFailedError
from radas_flows.secrets import redact, redact_registered

__all__ = [
    "DEFAULT_NOTIFY_RETRIES",
    "DEFAULT_NOTIFY_RETRY_DELAY_S",
    "RunReport",
    "check_notify_retry_settings",
    "notify_retry_settings",
    "run_outcome",
    "summary_markdown",
]

#: How often a failed email is tried again (``RADAS_NOTIFY_RETRIES``).
DEFAULT_NOTIFY_RETRIES = 2
#: Seconds between two tries (``RADAS_NOTIFY_RETRY_DELAY_S``).
DEFAULT_NOTIFY_RETRY_DELAY_S = 10.0

_STATE_WORDS: dict[str, str] = {"TERMINATED": "completed", "ERROR": "errored"}
_STOP_ERRORS: tuple[str, ...] = (
    "KeyboardInterrupt",
    "TerminationSignal",
    "CancelledError",
    "ExperimentStoppedError",
)

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
    usage: list[Any] = field(default_factory=list)  # accounting.Usage per cluster

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
        if self.usage:
            from radas_flows.accounting import usage_text

            lines += ["Resources used:", *(f"  {x}" for x in usage_text(self.usage).splitlines())]
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

    A run checks both before it submits (``check_notify_retry_settings``). A value that went
    bad after that is reported in the log and replaced by the default: the report must go.

    Example:
        >>> notify_retry_settings({"RADAS_NOTIFY_RETRIES": "1", "RADAS_NOTIFY_RETRY_DELAY_S": "0"})
        (1, 0.0)
        >>> notify_retry_settings({})
        (2, 10.0)
    """
    retries, delay, problems = _notify_retry_values(environ)
    for problem in problems:
        log.warning("%s; using the default.", problem)
    return retries, delay


def check_notify_retry_settings(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a bad ``RADAS_NOTIFY_RETRIES`` or ``RADAS_NOTIFY_RETRY_DELAY_S``.

    Raises:
        RadasValueError: Naming the variable, its value and the fix.
    """
    from radas_flows.errors import RadasValueError

    problems = _notify_retry_values(environ)[2]
    if problems:
        raise RadasValueError(
            f"{problems[0]}: set it to a valid value or unset it (the defaults: "
            f"RADAS_NOTIFY_RETRIES={DEFAULT_NOTIFY_RETRIES}, "
            f"RADAS_NOTIFY_RETRY_DELAY_S={DEFAULT_NOTIFY_RETRY_DELAY_S:g})."
        )


def _notify_retry_values(environ: Mapping[str, str] | None) -> tuple[int, float, list[str]]:
    env = os.environ if environ is None else environ
    retries, delay = DEFAULT_NOTIFY_RETRIES, DEFAULT_NOTIFY_RETRY_DELAY_S
    problems = []
    raw = env.get("RADAS_NOTIFY_RETRIES", "").strip()
    if raw:
        if raw.isdigit():
            retries = int(raw)
        else:
            problems.append(f"RADAS_NOTIFY_RETRIES={raw!r} is not a whole number >= 0")
    raw = env.get("RADAS_NOTIFY_RETRY_DELAY_S", "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if 0 <= value < math.inf:  # also refuses nan
            delay = value
        else:
            problems.append(f"RADAS_NOTIFY_RETRY_DELAY_S={raw!r} is not a number of seconds >= 0")
    return retries, delay, problems


def summary_markdown(report: RunReport) -> str:
    """The run's summary artifact: the report's facts, and whether the email went out."""
    lines = [f"# {report.experiment_name}", "", f"**Outcome:** {report.state}  "]
    lines.append(f"**Run target:** {report.target}  ")
    if report.duration_s is not None:
        lines.append(f"**Duration:** {report.duration_s:.1f} s  ")
    if report.counts:
        lines += ["", "| trial state | count |", "|---|---|"]
        lines += [f"| {s} | {n} |" for s, n in sorted(report.counts.items())]
    if report.best:
        lines += ["", f"**Best {report.best['metric']}:** {report.best['value']}  "]
        lines.append(f"**Best config:** `{redact(report.best['config'])}`")
    if report.recommendation:
        lines += ["", f"**Resources:** {report.recommendation}"]
    if report.usage:
        lines += ["", "| cluster | CPU-hours | GPU-hours | share on out-of-memory trials |"]
        lines.append("|---|---|---|---|")
        lines += [
            f"| {u.cluster} | {u.cpu_hours:.4g} | {u.gpu_hours:.4g} | {100 * u.oom_share:.1f}% |"
            for u in report.usage
        ]
    if report.error:
        lines += ["", f"**Error:** {report.error}"]
    lines += ["", f"**Results:** `{report.results_path}`  "]
    if report.csv_path:
        lines.append(f"**Table:** `{report.csv_path}`  ")
    if report.figure_path or report.preview_path:
        lines.append(f"**Figure:** `{report.figure_path or report.preview_path}`  ")
    if report.email_to:
        if report.email_error:
            lines += ["", f"**Email to {report.email_to}: not sent** ({report.email_error})."]
            lines.append("Only the email failed; the results above are stored.")
        else:
            lines += ["", f"**Email:** sent to {report.email_to}"]
    return redact_registered("\n".join(lines) + "\n")
