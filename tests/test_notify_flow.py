"""The notify stage: the run report emailed to a real SMTP server (aiosmtpd) after real runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import seaborn as sns
from ray import tune

from radas_flows import run_experiment
from radas_flows.errors import ExperimentStateError, RadasError, RadasValueError
from radas_flows.oom import OutOfMemoryCapError
from radas_flows.report import (
    RunReport,
    check_notify_retry_settings,
    notify_retry_settings,
    run_outcome,
)
from tests import notify_trainables as nt
from tests import prefect_reads as pr
from tests.smtp_server import SmtpServer, free_local_port

TO = "alice@example.com"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        user_name="notify",
        trainable=nt.scored,
        param_space={"a": tune.grid_search([1, 2, 3]), "b": 5},
        tuner_init_kwargs={"tune_config": tune.TuneConfig(metric="score", mode="max")},
        run_choice="run",
        email_notification_to_address=TO,
    )
    kwargs.update(overrides)
    return asyncio.run(run_experiment(**kwargs))


def only_message(server: SmtpServer) -> EmailMessage:
    assert len(server.messages) == 1, [m["Subject"] for m in server.messages]
    return server.messages[0]


def body_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def attachments_of(msg: EmailMessage) -> dict[str, bytes]:
    return {str(a.get_filename()): a.get_content() for a in msg.iter_attachments()}


def summary_of(flow_run_id: Any) -> str:
    summaries = [a for a in pr.artifacts_of(flow_run_id) if "summary" in (a.key or "")]
    assert len(summaries) == 1
    return str(summaries[0].data)


# ---------------------------------------------------------------------------------------------
# The report itself (no server)
# ---------------------------------------------------------------------------------------------


def test_outcome_of_a_run() -> None:
    assert run_outcome({"TERMINATED": 4}) == "completed"
    assert run_outcome({"TERMINATED": 3, "ERROR": 1}) == "partial"
    assert run_outcome({"TERMINATED": 4}, stopped=True) == "stopped"
    assert run_outcome({"TERMINATED": 4}, RadasError("x")) == "failed"
    assert run_outcome({}, KeyboardInterrupt()) == "stopped"
    # The out-of-memory cap (a TrialsFailedError) keeps and analyzes what completed.
    assert run_outcome({"TERMINATED": 2, "ERROR": 1}, OutOfMemoryCapError("cap")) == "partial"


def test_report_tells_every_fact_and_redacts(tmp_path: Path) -> None:
    figure = tmp_path / "radas_figure.pdf"
    preview = tmp_path / "radas_figure_preview.png"
    figure.write_bytes(b"%PDF-1.4")
    preview.write_bytes(PNG_MAGIC)
    report = RunReport(
        "lr-sweep",
        "alice",
        "cluster:gpu-5",
        "partial",
        duration_s=3725.0,
        counts={"ERROR": 1, "TERMINATED": 3},
        best={"metric": "acc", "value": 0.93, "config": {"lr": 0.01, "api_key": "k-123456"}},
        recommendation="1 trial ran out of memory at cpu_per_trial=1 and completed at 2; "
        "start future runs with cpu_per_trial=2",
        results_path="/results/alice/x",
        csv_path="/results/alice/x/radas_results.csv",
        figure_path=str(figure),
        preview_path=str(preview),
        flow_run_url="http://ui/runs/flow-run/abc",
    )
    assert report.subject() == "[radas] lr-sweep on cluster:gpu-5: partial, 3 of 4 trials completed"
    body = report.body()
    for fact in (
        "Experiment: lr-sweep (user alice)",
        "Cluster: cluster:gpu-5",
        "Outcome: partial",
        "Duration: 3725.0 s (1:02:05)",
        "Trials: 4 (3 completed, 1 errored)",
        "Best acc: 0.93",
        "Best config: {'lr': 0.01, 'api_key': '***'}",
        "Recommendation: 1 trial ran out of memory at cpu_per_trial=1 and completed at 2",
        "Results: /results/alice/x",
        "Table: /results/alice/x/radas_results.csv",
        f"Figure: {figure} (attached)",
        "Prefect flow run: http://ui/runs/flow-run/abc",
    ):
        assert fact in body, fact
    assert "k-123456" not in body
    # A PDF figure goes with its PNG preview; a PNG figure alone.
    assert report.attachments() == [str(figure), str(preview)]
    report.figure_path = str(preview)
    assert report.attachments() == [str(preview)]


def test_report_of_a_run_that_failed_before_it_started() -> None:
    report = RunReport("x", "bob", "cluster:gone", "failed", error="ClusterUnavailableError: gone")
    body = report.body()
    assert "Trials: none ran" in body
    assert "Error: ClusterUnavailableError: gone" in body
    assert "Results: none stored (the run failed before it started)." in body
    assert report.subject() == "[radas] x on cluster:gone: failed"
    assert report.attachments() == []


def test_retry_settings_from_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    assert notify_retry_settings({}) == (2, 10.0)
    assert notify_retry_settings(
        {"RADAS_NOTIFY_RETRIES": "0", "RADAS_NOTIFY_RETRY_DELAY_S": "0.5"}
    ) == (0, 0.5)
    with caplog.at_level("WARNING"):
        assert notify_retry_settings(
            {"RADAS_NOTIFY_RETRIES": "-1", "RADAS_NOTIFY_RETRY_DELAY_S": "soon"}
        ) == (2, 10.0)
    assert "RADAS_NOTIFY_RETRIES='-1' is not a whole number" in caplog.text
    assert "RADAS_NOTIFY_RETRY_DELAY_S='soon' is not a number" in caplog.text
    check_notify_retry_settings({"RADAS_NOTIFY_RETRIES": "3", "RADAS_NOTIFY_RETRY_DELAY_S": "1"})
    for name, value in (("RADAS_NOTIFY_RETRIES", "-1"), ("RADAS_NOTIFY_RETRY_DELAY_S", "inf")):
        with pytest.raises(RadasValueError, match=f"{name}={value!r}"):
            check_notify_retry_settings({name: value})


# ---------------------------------------------------------------------------------------------
# Real runs, real SMTP server
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("radas_env")
def test_success_email_has_the_facts_and_the_figure(
    workdir: Path, smtp_server: SmtpServer, smtp_env: Callable[..., None]
) -> None:
    smtp_env(smtp_server, RADAS_SMTP_FROM="radas@example.org")
    results = run(
        experiment_name="notify-ok",
        plot_fn=sns.lineplot,
        plot_kwargs={"x": "epoch", "y": "score", "hue": "config/a"},
        plot_format="png",
    )
    tuner = results["tuner"]
    msg = only_message(smtp_server)
    assert smtp_server.envelopes == [("radas@example.org", [TO])]
    assert msg["Subject"] == "[radas] notify-ok on local: completed, 3 of 3 trials completed"
    body = body_of(msg)
    flow_run = pr.flow_run_named("notify-ok")
    results_dir = tuner.experiment_path
    for fact in (
        "Experiment: notify-ok (user notify)",
        "Cluster: local",
        "Outcome: completed",
        "Trials: 3 (3 completed)",
        "Best score: 30",
        "Best config: {'a': 3, 'b': 5}",
        f"Results: {results_dir}",
        f"Table: {results_dir}/radas_results.csv",
        f"Figure: {results_dir}/radas_figure.png (attached)",
        f"/runs/flow-run/{flow_run.id}",
    ):
        assert fact in body, fact
    assert "Duration: " in body and "Error:" not in body
    files = attachments_of(msg)
    assert list(files) == ["radas_figure.png"]
    assert files["radas_figure.png"].startswith(PNG_MAGIC)
    assert files["radas_figure.png"] == Path(results_dir, "radas_figure.png").read_bytes()
    # Prefect: the email task completed, and the summary says the email went out.
    assert flow_run.state.is_completed()
    email_runs = [r for r in pr.task_runs_of(flow_run.id) if r.name.startswith("email_notify")]
    assert [r.state.type.value for r in email_runs] == ["COMPLETED"]
    assert f"**Email:** sent to {TO}" in summary_of(flow_run.id)


@pytest.mark.usefixtures("radas_env")
def test_partial_results_email_counts_errored_trials(
    workdir: Path, smtp_server: SmtpServer, smtp_env: Callable[..., None]
) -> None:
    smtp_env(smtp_server)
    results = run(
        experiment_name="notify-partial",
        param_space={"a": tune.grid_search([1, 2, 3]), "b": 1, "fail_a": 2},
    )
    assert results["tuner"].num_errors == 1
    msg = only_message(smtp_server)
    assert msg["Subject"] == "[radas] notify-partial on local: partial, 2 of 3 trials completed"
    body = body_of(msg)
    assert "Outcome: partial" in body
    assert "Trials: 3 (2 completed, 1 errored)" in body
    assert "Best score: 6" in body
    # No plot: nothing to attach, and the email says where the table is.
    assert attachments_of(msg) == {}
    assert f"Table: {results['tuner'].experiment_path}/radas_results.csv" in body


@pytest.mark.usefixtures("radas_env")
def test_a_failed_stage_still_emails_and_the_flow_raises_the_original_error(
    workdir: Path, smtp_server: SmtpServer, smtp_env: Callable[..., None]
) -> None:
    smtp_env(smtp_server)
    with pytest.raises(ExperimentStateError, match=r"dos=\['analyze'\] found no stored results"):
        run(experiment_name="notify-nothing", dos=["analyze"], run_choice=None)
    msg = only_message(smtp_server)
    assert msg["Subject"] == "[radas] notify-nothing on local: failed"
    body = body_of(msg)
    assert "Outcome: failed" in body
    assert "Error: ExperimentStateError: dos=['analyze'] found no stored results" in body
    assert "Trials: none ran" in body
    assert pr.flow_run_named("notify-nothing").state.is_failed()


@pytest.mark.usefixtures("radas_env")
def test_failure_after_the_trials_ran_names_what_is_stored(
    workdir: Path, smtp_server: SmtpServer, smtp_env: Callable[..., None]
) -> None:
    smtp_env(smtp_server)

    def broken_plot(**kwargs: Any) -> Any:
        raise KeyError("no-such-column")

    with pytest.raises(RadasError, match=r"Plotting failed in plot_fn='broken_plot'"):
        run(experiment_name="notify-plot-fails", plot_fn=broken_plot)
    body = body_of(only_message(smtp_server))
    assert "Outcome: failed" in body
    assert "Trials: 3 (3 completed)" in body
    assert "KeyError: 'no-such-column'" in body
    results_line = next(line for line in body.splitlines() if line.startswith("Results: "))
    stored = Path(results_line.removeprefix("Results: "))
    assert (stored / "radas_results.csv").is_file()
    assert "continue with run_choice='restore', or analyze it with dos=['analyze']" in body


@pytest.mark.usefixtures("radas_env")
def test_unreachable_smtp_loses_nothing_and_the_flow_completes(
    workdir: Path, smtp_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_local_port()  # nothing listens there
    smtp_env(RADAS_SMTP_HOST="127.0.0.1", RADAS_SMTP_PORT=str(port), RADAS_SMTP_SECURITY="none")
    monkeypatch.setenv("RADAS_NOTIFY_RETRIES", "1")
    monkeypatch.setenv("RADAS_NOTIFY_RETRY_DELAY_S", "0")
    results = run(experiment_name="notify-no-smtp")
    # The caller gets the results, and they are stored.
    assert sorted(results["df"].groupby("config/a")["score"].max()) == [10, 20, 30]
    stored = Path(results["tuner"].experiment_path)
    assert pd.read_csv(stored / "radas_results.csv")["score"].max() == 30
    # Prefect shows the failed email task (tried twice) in a Completed flow run.
    flow_run = pr.flow_run_named("notify-no-smtp")
    assert flow_run.state.is_completed()
    email_runs = [r for r in pr.task_runs_of(flow_run.id) if r.name.startswith("email_notify")]
    assert len(email_runs) == 1
    assert email_runs[0].state.is_failed()
    assert email_runs[0].run_count == 2
    summary = summary_of(flow_run.id)
    assert f"**Email to {TO}: not sent** (EmailSendError: " in summary
    assert f"127.0.0.1:{port}" in summary
    assert "Only the email failed; the results above are stored." in summary
    logs = "\n".join(pr.logs_of(flow_run.id))
    assert f"could not be emailed to {TO} after 2 tries" in logs
    assert f"Only the email failed: the results are stored in {stored}" in logs


@pytest.mark.usefixtures("radas_env")
def test_unreachable_smtp_after_a_failure_keeps_the_original_error(
    workdir: Path, smtp_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_env(
        RADAS_SMTP_HOST="127.0.0.1",
        RADAS_SMTP_PORT=str(free_local_port()),
        RADAS_SMTP_SECURITY="none",
    )
    monkeypatch.setenv("RADAS_NOTIFY_RETRIES", "0")
    with pytest.raises(ExperimentStateError, match=r"found no stored results"):
        run(experiment_name="notify-no-smtp-fail", dos=["analyze"], run_choice=None)
    flow_run = pr.flow_run_named("notify-no-smtp-fail")
    assert flow_run.state.is_failed()
    assert "ExperimentStateError" in (flow_run.state.message or "")
    email_runs = [r for r in pr.task_runs_of(flow_run.id) if r.name.startswith("email_notify")]
    assert [(r.state.type.value, r.run_count) for r in email_runs] == [("FAILED", 1)]


@pytest.mark.usefixtures("radas_env")
def test_no_address_no_email_task(
    workdir: Path, smtp_server: SmtpServer, smtp_env: Callable[..., None]
) -> None:
    smtp_env(smtp_server)
    run(
        experiment_name="notify-none",
        param_space={"a": tune.grid_search([1])},
        email_notification_to_address=None,
    )
    assert smtp_server.messages == []
    flow_run = pr.flow_run_named("notify-none")
    assert not [r for r in pr.task_runs_of(flow_run.id) if r.name.startswith("email_notify")]
    assert "Email" not in summary_of(flow_run.id)
