"""Stage 5, notify: email the outcome of a run (a no-op without an address)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows.spec import ExperimentSpec


@dataclass
class RunReport:
    """The facts of one run that a notification tells."""

    experiment_name: str
    user_name: str
    target: str
    state: str  # "completed", "failed", "partial"
    duration_s: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    recommendation: str | None = None
    results_path: str | None = None
    csv_path: str | None = None
    figure_path: str | None = None
    error: str | None = None
    flow_run_url: str | None = None

    def subject(self) -> str:
        return f"[radas] {self.experiment_name}: {self.state}"

    def body(self) -> str:
        lines = [
            f"Experiment: {self.experiment_name} (user {self.user_name})",
            f"Run target: {self.target}",
            f"Outcome: {self.state}",
        ]
        if self.duration_s is not None:
            lines.append(f"Duration: {self.duration_s:.1f} s")
        if self.counts:
            lines.append(
                "Trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.counts.items()))
            )
        if self.best:
            lines.append(f"Best: {self.best}")
        if self.recommendation:
            lines.append(f"Resources: {self.recommendation}")
        if self.error:
            lines.append(f"Error: {self.error}")
        if self.results_path:
            lines.append(f"Results: {self.results_path}")
        if self.csv_path:
            lines.append(f"Table: {self.csv_path}")
        if self.figure_path:
            lines.append(f"Figure: {self.figure_path}")
        if self.flow_run_url:
            lines.append(f"Prefect flow run: {self.flow_run_url}")
        return "\n".join(lines) + "\n"


@task(
    name="email_notify",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=5,
)
def email_notify(spec: ExperimentSpec, report: RunReport) -> bool:
    """Email the run report to ``email_notification_to_address``; False when none is set."""
    if not spec.email_notification_to_address:
        return False
    from radas_flows.email import send_email

    attachments = [report.figure_path] if report.figure_path else None
    send_email(
        spec.email_notification_to_address,
        report.subject(),
        report.body(),
        attachments=attachments,
    )
    get_run_logger().info("Emailed the run report to %s", spec.email_notification_to_address)
    return True
