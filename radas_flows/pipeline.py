"""The stages of one experiment, chained: the body of the ``radas`` flow."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows._artifacts import artifact_key, create_markdown, create_table
from radas_flows._rerun import EscalationResult, follow_and_escalate
from radas_flows.analysis import AnalysisResult, analyze_results
from radas_flows.availability import cluster_check
from radas_flows.core import experiment_path
from radas_flows.notification import RunReport, notify_run, run_outcome
from radas_flows.oom.rounds import OomManifest, max_oom_rounds, read_manifest, remove_rounds
from radas_flows.run_choice import decide_mode, experiment_exists
from radas_flows.secrets import redact, redact_registered, scrub_exception
from radas_flows.spec import ExperimentSpec
from radas_flows.submission import experiment_submit
from radas_flows.tuner import Tuner


def output_dir(spec: ExperimentSpec, results_path: str) -> str:
    """Where the CSV and figure go: beside the results, or a local cache for remote storage."""
    if "://" not in results_path:
        return results_path
    return str(Path.home() / ".cache" / "radas" / spec.user_name / spec.full_name)


@task(name="results_analyze", cache_policy=NO_CACHE, persist_result=False)
def results_analyze(spec: ExperimentSpec, tuner: Tuner | None, results_path: str) -> AnalysisResult:
    """Build the DataFrame and figure (reading stored results back for analyze-only runs)."""
    logger = get_run_logger()
    if tuner is None:
        tuner = Tuner.from_path(results_path)
        logger.info("Read %d stored trials back from %s", tuner.num_trials, results_path)
    analysis = analyze_results(tuner, spec.analysis, output_dir(spec, results_path))
    if analysis.csv_path:
        logger.info("Results table: %s", analysis.csv_path)
    if analysis.figure_path:
        logger.info("Figure: %s", analysis.figure_path)
    df = analysis.df
    if hasattr(df, "head") and len(df):
        create_table(
            artifact_key("results", spec.user_name, spec.experiment_name),
            df.head(50).astype(str).to_dict(orient="records"),
            f"Results of {spec.experiment_name!r} (first 50 rows)",
        )
    return analysis


def best_of(tuner: Tuner, spec: ExperimentSpec) -> dict[str, Any] | None:
    """The best trial's config and metric, when a metric and mode are known."""
    tune_config = spec.tuner_init_kwargs.get("tune_config")
    metric = getattr(tune_config, "metric", None)
    mode = getattr(tune_config, "mode", None)
    if not metric or not mode:
        return None
    try:
        best = tuner.get_results().get_best_result(metric=metric, mode=mode)
    except Exception:  # no trial reported the metric
        return None
    config = redact(dict(best.config or {}))
    return {"metric": metric, "value": best.metrics.get(metric), "config": config}


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


def run_spec(spec: ExperimentSpec) -> dict[str, Any]:
    """The body of the ``radas`` flow for an already validated spec."""
    logger = get_run_logger()
    started = time.time()
    report = RunReport(spec.experiment_name, spec.user_name, str(spec.target), "failed")
    analysis: AnalysisResult | None = None
    try:
        check = cluster_check(spec)
        path = experiment_path(spec.user_name, spec.full_name, check.results_root)
        report.results_path = path
        handle = None
        if spec.run_choice in ("attach", "stop_attach") and "run" in spec.dos:
            from radas_flows.clusters.attach import experiment_attach

            mode = None
            handle = experiment_attach(spec, check)  # None: nothing running, analyze what is stored
        else:
            mode = decide_mode(
                run_choice=spec.run_choice,
                exists=experiment_exists(path),
                dos=spec.dos,
                path=path,
                yes=spec.yes,
            )
        tuner: Tuner | None = None
        escalation: EscalationResult | None = None
        max_rounds = max_oom_rounds()  # a bad RADAS_MAX_OOM_ROUNDS fails before anything runs
        if mode is not None:
            logger.info("%s %r (%s)", mode, spec.experiment_name, path)
            old_rounds = _stored_oom_rounds(path) if mode == "run" else None
            handle = experiment_submit(
                spec, mode, spec.cpu_per_trial, check.gpu_per_cpu, check.results_root
            )
            _remove_oom_rounds(old_rounds, path)
        if handle is not None:
            escalation = follow_and_escalate(
                spec, check, handle, fresh=mode == "run", max_rounds=max_rounds
            )
            tuner = escalation.tuner
            report.counts = escalation.counts
            report.recommendation = escalation.summary
        if "analyze" in spec.dos:
            analysis = results_analyze(spec, tuner, path)
            tuner = analysis.tuner
            report.csv_path, report.figure_path = analysis.csv_path, analysis.figure_path
            report.preview_path = analysis.preview_png
        if tuner is not None:
            report.best = best_of(tuner, spec)
            if not report.counts:
                report.counts = dict(Counter(o["status"] for o in tuner.trial_outcomes()))
        report.state = run_outcome(report.counts, stopped=spec.run_choice == "stop_attach")
        if escalation is not None and escalation.failure is not None:
            report.state = "partial"  # completed trials were kept and analyzed
            raise escalation.failure
    except BaseException as e:
        # The flow raises this same exception, its text cleaned of registered secrets.
        clean = scrub_exception(e)
        report.error = redact_registered(f"{type(e).__name__}: {e}")
        report.state = run_outcome(report.counts, e)
        if clean is not e:
            raise clean from None
        raise
    finally:
        report.duration_s = time.time() - started
        _notify(spec, report)
    return {
        "df": analysis.df if analysis else None,
        "tuner": tuner,
        "fig": analysis.fig if analysis else None,
    }


def _stored_oom_rounds(path: str) -> OomManifest | None:
    """The out-of-memory re-run rounds of an experiment about to be replaced (best effort)."""
    try:
        return read_manifest(path)
    except Exception:  # unreachable or damaged: nothing to clean up
        return None


def _remove_oom_rounds(manifest: OomManifest | None, path: str) -> None:
    """Delete the re-run rounds of the replaced experiment, so they never merge into the new one."""
    if manifest is None:
        return
    try:
        removed = remove_rounds(path, manifest)
    except Exception as e:
        get_run_logger().warning("Could not delete old out-of-memory re-runs of %s: %s", path, e)
        return
    if removed:
        get_run_logger().info("Deleted %d old out-of-memory re-run rounds", len(removed))


def _notify(spec: ExperimentSpec, report: RunReport) -> None:
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
