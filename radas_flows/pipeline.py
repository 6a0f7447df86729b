"""The stages of one experiment, chained: the body of the ``radas`` flow."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from prefect import get_run_logger

from radas_flows.analysis import AnalysisResult
from radas_flows.core import experiment_path
from radas_flows.errors import ExperimentStoppedError
from radas_flows.events import STARTED, emit_experiment_event, outcome_event, started_payload
from radas_flows.inputs.spec import FOLLOW_RUN_CHOICES, ExperimentSpec
from radas_flows.oom.rounds import max_oom_rounds
from radas_flows.origin import check_origin, origin_record, read_origin, record_origin
from radas_flows.report import RunReport, run_outcome
from radas_flows.rescue import rescued_error
from radas_flows.run_choice import Choice, Mode, decide_mode, experiment_exists
from radas_flows.secrets import redact_registered, scrub_exception
from radas_flows.stages.analyze import analyze_stage, best_of
from radas_flows.stages.check import cluster_check
from radas_flows.stages.notify import report_run
from radas_flows.stages.oom_retry import (
    EscalationResult,
    escalate,
    remove_old_rounds,
    stored_rounds,
)
from radas_flows.stages.placement import Placement, follow_moving, placed_spec, submit_placed
from radas_flows.stages.submit import experiment_attach
from radas_flows.targets import RunHandle, target_for
from radas_flows.tuner import Tuner


def usage_of(escalation: EscalationResult, placement: Placement, path: str) -> list[Any]:
    """CPU-hours and GPU-hours per cluster of a sweep (see :mod:`radas_flows.accounting`)."""
    from radas_flows.accounting import done_records, sweep_usage

    cluster = placement.check.target.removeprefix("cluster:")
    gpu_per_cpu = {cluster: placement.check.gpu_per_cpu}
    executions = [
        (trial, cpu, outcome)
        for history in escalation.histories
        for trial, cpu, outcome in zip(history.trials, history.cpus, history.outcomes, strict=True)
        if trial is not None
    ]
    earlier = done_records(path) if placement.moves else None
    return sweep_usage(executions, cluster=cluster, gpu_per_cpu=gpu_per_cpu, earlier=earlier)


def run_spec(spec: ExperimentSpec) -> dict[str, Any]:
    """The body of the ``radas`` flow for an already validated spec."""
    logger = get_run_logger()
    started = time.time()
    report = RunReport(spec.experiment_name, spec.user_name, str(spec.target), "failed")
    analysis: AnalysisResult | None = None
    emit_experiment_event(STARTED, spec, started_payload(spec))
    for note in spec.notes:
        logger.warning("%s", note)
    try:
        check = cluster_check(spec)
        placement = Placement(placed_spec(spec, check), check, [dict(r) for r in check.rows])
        spec = placement.spec  # run_with="auto": the cluster its check chose
        report.target = str(spec.target)
        path = experiment_path(spec.user_name, spec.full_name, check.results_root)
        report.results_path = path
        # A folder shared by another directory's or name's experiment is refused untouched.
        check_origin(path, spec.cwd, spec.experiment_name)
        handle = None
        target = target_for(spec.target)
        if spec.run_choice in FOLLOW_RUN_CHOICES and "run" in spec.dos:
            choice: Choice | None = spec.run_choice  # type: ignore[assignment]
        else:
            # run_choice=None is asked (or yes=True answered) with every choice that applies:
            # attach and stop_attach too while a job of the experiment is running.
            ask = spec.run_choice is None and "run" in spec.dos
            choice = decide_mode(
                run_choice=spec.run_choice,
                exists=experiment_exists(path),
                dos=spec.dos,
                path=path,
                yes=spec.yes,
                running=target.running_jobs(spec) if ask else (),
                cluster=target.name,
            )
        mode: Mode | None = None
        if choice in FOLLOW_RUN_CHOICES:
            spec = spec.replace(run_choice=choice)
            handle = experiment_attach(spec, check)  # None: nothing running, analyze what is stored
        elif choice is not None:
            mode = choice  # type: ignore[assignment]
        tuner: Tuner | None = None
        escalation: EscalationResult | None = None
        max_rounds = max_oom_rounds()  # a bad RADAS_MAX_OOM_ROUNDS fails before anything runs
        if mode is not None:
            logger.info("%s %r (%s)", mode, spec.experiment_name, path)
            if mode == "restore" and read_origin(path) is None:
                record_origin(path, origin_record(spec.cwd, spec.experiment_name))
            old_rounds = stored_rounds(path) if mode == "run" else None
            placement, handle = submit_placed(placement, mode)
            spec, check = placement.spec, placement.check
            report.target, report.results_path = str(spec.target), handle.experiment_path
            path = handle.experiment_path
            remove_old_rounds(old_rounds, path)
        if handle is not None:
            first = handle

            def follow(where: Placement, run: RunHandle) -> EscalationResult:
                fresh = mode == "run" and run is first
                return escalate(where.spec, where.check, run, fresh=fresh, max_rounds=max_rounds)

            placement, handle, escalated = follow_moving(placement, handle, follow)
            spec, check, escalation = placement.spec, placement.check, escalated
            report.target = str(spec.target)
            report.usage = usage_of(escalated, placement, path)
            tuner = escalated.tuner
            report.counts = escalation.counts
            report.recommendation = escalation.summary
        if "analyze" in spec.dos:
            analysis = analyze_stage(spec, tuner, path)
            tuner = analysis.tuner
            report.csv_path, report.figure_path = analysis.csv_path, analysis.figure_path
            report.preview_path = analysis.preview_png
        if tuner is not None:
            report.best = best_of(tuner, spec)
            if not report.counts:
                report.counts = dict(Counter(o["status"] for o in tuner.trial_outcomes()))
        report.state = run_outcome(report.counts, stopped=spec.run_choice == "stop_attach")
        rescued_run = tuner is not None and tuner.rescue is not None
        if analysis is not None and (analysis.rescued_from is not None or rescued_run):
            report.state = "partial"  # computed and saved, outside the results folder
            rescued = rescued_error(analysis, path)
            rescued.results = _results(analysis, tuner)  # type: ignore[attr-defined]
            raise rescued
        if escalation is not None and escalation.failure is not None:
            report.state = "partial"  # completed trials were kept and analyzed
            escalation.failure.results = _results(analysis, tuner)  # the caller keeps them
            raise escalation.failure
        if handle is not None and handle.stopped_elsewhere:
            raise ExperimentStoppedError(handle.stopped_elsewhere)  # after analyzing what finished
    except BaseException as e:
        # The flow raises this same exception, its text cleaned of registered secrets.
        clean = scrub_exception(e)
        report.error = redact_registered(f"{type(e).__name__}: {e}")
        report.state = run_outcome(report.counts, e)
        if clean is not e:
            if getattr(e, "results", None) is not None:
                clean.results = e.results  # type: ignore[attr-defined]
            raise clean from None
        raise
    finally:
        report.duration_s = time.time() - started
        event, payload = outcome_event(report)
        emit_experiment_event(event, spec, payload)
        report_run(spec, report)
    return _results(analysis, tuner)


def _results(analysis: AnalysisResult | None, tuner: Tuner | None) -> dict[str, Any]:
    """What the flow returns: the DataFrame, the results view and the figure."""
    return {
        "df": analysis.df if analysis else None,
        "tuner": tuner,
        "fig": analysis.fig if analysis else None,
    }
