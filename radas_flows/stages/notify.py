"""Stage 6, notify: email the run report and record the run's summary artifact."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows._artifacts import artifact_key, create_markdown
from radas_flows._redaction import scrub_errors
from radas_flows.inputs.spec import ExperimentSpec
from radas_flows.report import (
    DEFAULT_NOTIFY_RETRIES,
    DEFAULT_NOTIFY_RETRY_DELAY_S,
    RunReport,
    notify_retry_settings,
    summary_markdown,
)
from radas_flows.secrets import redact_registered

__all__ = ["email_notify", "notify_run", "report_run"]


@task(
    name="email_notify",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=DEFAULT_NOTIFY_RETRIES,
    retry_delay_seconds=DEFAULT_NOTIFY_RETRY_DELAY_S,
)
@scrub_errors
def email_notify(report: RunReport) -> bool:
    """Email the run report (the figure attached) to ``report.email_to``.

    Returns:
        False when no address is set, True once the server accepted the email.

    Raises:
        radas_flows.email.EmailSendError: The SMTP server is unreachable or refused it.
        radas_flows.email.EmailConfigError: No SMTP server is configured.

    Example:
        ```python
        from radas_flows.report import RunReport
        from radas_flows.stages.notify import email_notify

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


def report_run(spec: ExperimentSpec, report: RunReport) -> None:
    """Email the report and record the summary; never raises, so nothing masks the outcome.

    An email that cannot be sent leaves the flow's outcome as it is (a successful run stays
    Completed): the ``email_notify`` task run is Failed, and the summary artifact and a
    warning say so and where the results are.
    """
    logger = get_run_logger()
    report.flow_run_url = _flow_run_url()
    try:
        notify_run(spec, report)
    except Exception as e:
        logger.warning("Could not notify: %s", redact_registered(f"{type(e).__name__}: {e}"))
    if report.usage:
        from radas_flows._artifacts import create_table
        from radas_flows.accounting import usage_rows

        try:
            create_table(
                artifact_key("usage", spec.user_name, spec.experiment_name),
                usage_rows(report.usage),
                f"CPU-hours and GPU-hours of {spec.experiment_name!r}, per cluster",
            )
        except Exception as e:
            logger.warning("Could not record the usage artifact: %s", e)
    try:
        create_markdown(
            artifact_key("summary", spec.user_name, spec.experiment_name),
            summary_markdown(report),
            f"Summary of {spec.experiment_name!r}",
        )
    except Exception as e:
        logger.warning(
            "Could not record the summary artifact: %s",
            redact_registered(f"{type(e).__name__}: {e}"),
        )


def _flow_run_url() -> str | None:
    try:
        from prefect.context import FlowRunContext
        from prefect.settings import PREFECT_UI_URL

        ctx = FlowRunContext.get()
        ui = PREFECT_UI_URL.value()
        if ctx is None or ctx.flow_run is None or not ui:
            return None
        return f"{ui.rstrip('/')}/runs/flow-run/{ctx.flow_run.id}"
    except Exception:
        return None
