"""Stage 4, out-of-memory re-run: only the trials that ran out of memory, with doubled CPUs."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows._redaction import scrub_errors
from radas_flows.driver import config_list_searcher
from radas_flows.errors import RadasValueError
from radas_flows.events import OOM_RERUN, emit_experiment_event
from radas_flows.inputs.spec import ExperimentSpec
from radas_flows.oom.detect import classify_error
from radas_flows.oom.merge import (
    TrialHistory,
    final_trials,
    load_analysis,
    next_round,
    recommendation_for,
    record_round,
    record_run,
    replay_rounds,
    round_text,
    stored_trials,
)
from radas_flows.oom.policy import OutOfMemoryCapError
from radas_flows.oom.rounds import (
    OomManifest,
    OomRound,
    max_oom_rounds,
    read_manifest,
    remove_rounds,
    write_manifest,
)
from radas_flows.stages.monitor import MonitorResult, experiment_monitor, follow_run
from radas_flows.stages.submit import (
    SUBMIT_RETRIES,
    SUBMIT_RETRY_DELAYS_S,
    retry_when_transient,
    submit_run,
)
from radas_flows.storage import Storage
from radas_flows.targets import DriverFailedError, RunHandle, TargetCheck
from radas_flows.tuner import Tuner

__all__ = [
    "EscalationResult",
    "RoundOutcome",
    "escalate",
    "oom_retry",
    "remove_old_rounds",
    "rerun_spec",
    "stored_rounds",
]


@dataclass
class EscalationResult:
    """How a run ended after its out-of-memory re-runs.

    ``tuner`` is the merged view (one result per trial config, see ``Tuner.merged``) when
    any round ran, else the run's own results. ``failure`` is set when trials still ran out
    of memory at the cap or after the last allowed round: raise it once the completed results
    are analyzed.
    """

    tuner: Tuner
    monitor: MonitorResult | None
    histories: list[TrialHistory]
    recommendation: str | None = None
    failure: OutOfMemoryCapError | None = None

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(o["status"] for o in self.tuner.trial_outcomes()))

    @property
    def summary(self) -> str | None:
        """The text for the run summary and email: the advice, the failure, or both."""
        parts = [self.recommendation, str(self.failure) if self.failure else None]
        return " ".join(part for part in parts if part) or None


def rerun_spec(spec: ExperimentSpec, configs: list[dict[str, Any]], name: str) -> ExperimentSpec:
    """The spec of a re-run round: exactly ``configs``, stored as experiment ``name``.

    The user's TuneConfig is kept (metric, mode, concurrency, reuse_actors...) except its
    search algorithm and scheduler: the configs are fixed, and each runs to its end under
    the user's RunConfig (stop criteria, callbacks, checkpoints).
    """
    from ray import tune

    user = spec.tuner_init_kwargs.get("tune_config") or tune.TuneConfig()
    tune_config = dataclasses.replace(
        user, search_alg=config_list_searcher(configs), scheduler=None, num_samples=len(configs)
    )
    return spec.replace(
        full_name=name,
        param_space={},
        tuner_init_kwargs={**spec.tuner_init_kwargs, "tune_config": tune_config},
    )


def _metric_mode(spec: ExperimentSpec) -> tuple[str | None, str | None]:
    tune_config = spec.tuner_init_kwargs.get("tune_config")
    metric, mode = getattr(tune_config, "metric", None), getattr(tune_config, "mode", None)
    return (metric if isinstance(metric, str) else None), (mode if isinstance(mode, str) else None)


def _follow(
    spec: ExperimentSpec,
    handle: RunHandle,
    *,
    escalate: bool,
    follow: Callable[[], MonitorResult],
) -> tuple[MonitorResult | None, list[Any], bool]:
    """Follow a run; when Tune itself stopped out of memory, read back what it stored.

    Returns:
        The monitor's result (None when Tune stopped), the run's own trials, and whether Tune
        stopped out of memory.
    """
    experiment = Storage(handle.experiment_path)
    try:
        monitor = follow()
    except DriverFailedError as e:
        if not escalate or classify_error(e) != "oom":
            raise
        stored = stored_trials(experiment)
        if stored is None:
            raise
        get_run_logger().warning(
            "Ray Tune stopped early because Ray's memory monitor killed a trial: the trials of "
            "%s that had not completed count as out of memory.",
            handle.experiment_path,
        )
        return None, stored, True
    if monitor.tuner.oom_rounds:  # a cluster run read back with earlier rounds merged in
        return monitor, list(load_analysis(experiment).trials), False
    return monitor, monitor.tuner.trials(), False


@dataclass
class RoundOutcome:
    """The trials of one re-run round, and whether Tune stopped out of memory."""

    trials: list[Any]
    aborted: bool


@task(
    name="oom_retry",
    task_run_name="oom_retry-round-{entry.number}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=SUBMIT_RETRIES,
    retry_delay_seconds=SUBMIT_RETRY_DELAYS_S,
    retry_condition_fn=retry_when_transient,
)
@scrub_errors
def oom_retry(
    spec: ExperimentSpec, check: TargetCheck, entry: OomRound, configs: list[dict[str, Any]]
) -> RoundOutcome:
    """Re-run exactly ``configs`` with ``entry.cpu_per_trial``, as experiment ``entry.name``.

    The round runs on the experiment's own target and is followed to its end like the run
    itself. A transient Jobs API error retries the task; the retry follows the job an earlier
    attempt created (the task run's id keys it).
    """
    round_spec = rerun_spec(spec, configs, entry.name).replace(cpu_per_trial=entry.cpu_per_trial)
    handle = submit_run(round_spec, "run", check, entry.cpu_per_trial)
    logger = get_run_logger()
    _, trials, aborted = _follow(
        round_spec, handle, escalate=True, follow=lambda: follow_run(round_spec, handle, logger)
    )
    return RoundOutcome(trials, aborted)


def escalate(
    spec: ExperimentSpec,
    check: TargetCheck,
    handle: RunHandle,
    *,
    fresh: bool,
    max_rounds: int | None = None,
) -> EscalationResult:
    """Follow a run to its end, then re-run trials that ran out of memory with more CPUs.

    Each round is one ``oom_retry`` task run (see :func:`oom_retry`).

    After the run, every errored trial is classified
    (:func:`~radas_flows.oom.classify_error`). While some ran out of memory,
    cpu_per_trial is doubled (the GPU share follows ``check.gpu_per_cpu``) and only those
    trials run again, with their exact configs, as a new Tune experiment
    ``<full name>__oom_round_<k>`` beside the original (a restore would keep the old
    resources); each round is recorded in the original's ``radas_oom_rounds.json`` first, so
    reading the experiment back later merges it. Stops when nothing runs out of memory, when
    doubling would exceed ``check.cpu_cap``, or after ``$RADAS_MAX_OOM_ROUNDS`` rounds
    (default 3; 0 turns re-runs off). Completed trials never run again. Other errors are
    reported, not re-run.

    Args:
        spec: The experiment.
        check: The run target's check (cap, GPUs per CPU, results root).
        handle: The submitted (or attached) run.
        fresh: The run replaced the experiment (``run_choice="run"``): earlier rounds are gone.
        max_rounds: The most rounds to run; default ``$RADAS_MAX_OOM_ROUNDS``.

    Returns:
        The merged results, the advice to show, and the failure to raise after analysis.
    """
    logger = get_run_logger()
    path = handle.experiment_path
    experiment = Storage(path)
    if max_rounds is None:
        max_rounds = max_oom_rounds()
    base_cpu = float(handle.driver_spec.resources.get("cpu", spec.cpu_per_trial))
    monitor, main_trials, aborted = _follow(
        spec, handle, escalate=max_rounds > 0, follow=lambda: experiment_monitor(spec, handle)
    )
    manifest = None if fresh else read_manifest(experiment)
    if manifest is None:
        manifest = OomManifest(base_cpu, *_metric_mode(spec))
    histories = record_run(main_trials, base_cpu=base_cpu, aborted=aborted)
    replay_rounds(experiment, manifest, histories)

    failure, rounds_run = None, 0
    while True:
        step = next_round(
            histories,
            manifest,
            full_name=spec.full_name,
            cap=check.cpu_cap,
            rounds_run=rounds_run,
            max_rounds=max_rounds,
        )
        if step is None or isinstance(step, OutOfMemoryCapError):
            failure = step
            break
        manifest.rounds.append(step)
        write_manifest(experiment, manifest)
        logger.warning("%s", round_text(step, histories, experiment, max_rounds))
        emit_experiment_event(
            OOM_RERUN,
            spec,
            {"round": step.number, "cpu_per_trial": step.cpu_per_trial, "trials": len(step.roots)},
        )
        configs = [histories[root].config for root in step.roots]
        outcome = oom_retry(spec, check, step, configs)
        rounds_run += 1
        record_round(histories, step, outcome.trials, aborted=outcome.aborted)

    if failure is not None:
        logger.error("%s", failure)
    recommendation = recommendation_for(histories.values())
    if recommendation:
        logger.info("%s", recommendation)
    if manifest.rounds or monitor is None:
        tuner = Tuner.merged(
            path,
            final_trials(histories.values()),
            metric=manifest.metric,
            mode=manifest.mode,
            oom_rounds=manifest.rounds,
        )
    else:
        tuner = monitor.tuner
    return EscalationResult(tuner, monitor, list(histories.values()), recommendation, failure)


def stored_rounds(path: str) -> OomManifest | None:
    """The out-of-memory re-run rounds of an experiment about to be replaced (best effort).

    A manifest radas did not write (see ``read_manifest``) is reported as an error and
    nothing it names is deleted; the fresh run replaces the experiment's folder, file included.
    """
    try:
        return read_manifest(Storage(path))
    except RadasValueError as e:
        get_run_logger().error(
            "%s run_choice='run' deleted no re-run folders for it; the fresh run replaces the "
            "experiment's folder, this file included.",
            e,
        )
        return None
    except Exception:  # unreachable: nothing to clean up
        return None


def remove_old_rounds(manifest: OomManifest | None, path: str) -> None:
    """Delete the re-run rounds of the replaced experiment, so they never merge into the new one."""
    if manifest is None:
        return
    try:
        removed = remove_rounds(Storage(path), manifest)
    except Exception as e:
        get_run_logger().warning("Could not delete old out-of-memory re-runs of %s: %s", path, e)
        return
    if removed:
        get_run_logger().info("Deleted %d old out-of-memory re-run rounds", len(removed))
