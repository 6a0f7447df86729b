"""Stage 5, analyze: the results DataFrame, the figure, and the results table artifact."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows._artifacts import artifact_key, create_table
from radas_flows._redaction import scrub_errors
from radas_flows.analysis import AnalysisResult, analyze_results
from radas_flows.inputs.spec import ExperimentSpec
from radas_flows.rescue import rescue_dir, storage_refused
from radas_flows.secrets import redact
from radas_flows.storage import Storage
from radas_flows.tuner import Tuner

__all__ = ["analyze_stage", "best_of", "output_dir", "results_analyze"]


def output_dir(spec: ExperimentSpec, results_path: str) -> str:
    """Where the CSV and figure go: beside the results, or a local cache for remote storage."""
    return Storage(results_path).output_dir(spec.user_name, spec.full_name)


@task(name="results_analyze", cache_policy=NO_CACHE, persist_result=False)
@scrub_errors
def results_analyze(spec: ExperimentSpec, tuner: Tuner | None, results_path: str) -> AnalysisResult:
    """Build the DataFrame and figure (reading stored results back for analyze-only runs)."""
    logger = get_run_logger()
    if tuner is None:
        tuner = Tuner.from_path(results_path)
        logger.info("Read %d stored trials back from %s", tuner.num_trials, results_path)
    out = output_dir(spec, results_path)
    try:
        analysis = analyze_results(tuner, spec.analysis, out)
    except Exception as e:
        if out is None or not storage_refused(e):
            raise
        # Full or unwritable: the rows are in memory; save them where this machine can.
        rescue = rescue_dir(spec.user_name, spec.experiment_name)
        logger.warning("Could not write the analysis to %s (%s); saving it in %s", out, e, rescue)
        analysis = analyze_results(tuner, spec.analysis, str(rescue))
        analysis.rescued_from, analysis.rescue_reason = out, f"{type(e).__name__}: {e}"
    if analysis.csv_path:
        logger.info("Results table: %s", analysis.csv_path)
    if analysis.figure_path:
        logger.info("Figure: %s", analysis.figure_path)
    df = analysis.df
    if hasattr(df, "head") and len(df):
        try:
            create_table(
                artifact_key("results", spec.user_name, spec.experiment_name),
                df.head(50).astype(str).to_dict(orient="records"),
                f"Results of {spec.experiment_name!r} (first 50 rows)",
            )
        except Exception as e:  # the table and figure are written; the UI's copy is not
            logger.warning("Could not record the results table artifact: %s", e)
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


def analyze_stage(spec: ExperimentSpec, tuner: Tuner | None, results_path: str) -> AnalysisResult:
    """Run ``results_analyze`` as a task; in the flow process when Prefect cannot start it.

    A task with tags needs Prefect's API to take its concurrency slots; with the API gone,
    Prefect refuses to start it. The analysis itself needs only the stored results.
    """
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError

    from radas_flows._api_outage import api_unreachable

    try:
        return results_analyze(spec, tuner, results_path)
    except ConcurrencySlotAcquisitionError as e:
        if not api_unreachable(e):
            raise
    get_run_logger().warning(
        "Prefect could not start the results_analyze task (its API did not answer); "
        "analyzing in the flow process instead, so the Prefect UI shows no finished run of "
        "this task."
    )
    return results_analyze.fn(spec, tuner, results_path)
