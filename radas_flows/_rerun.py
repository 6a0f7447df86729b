"""Out-of-memory escalation in the radas flow: re-run exactly the trials that ran out of memory."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger

from radas_flows.escalation import (
    OutOfMemoryCapError,
    cap_failure_text,
    classify_error,
    format_number,
    read_trial_error,
)
from radas_flows.inputs.spec import ExperimentSpec
from radas_flows.oom_rounds import (
    OomManifest,
    OomRound,
    Outcome,
    TrialHistory,
    config_key,
    final_index,
    match_round,
    max_oom_rounds,
    plan_round,
    read_manifest,
    recommendation_for,
    round_name,
    sibling_path,
    write_manifest,
)
from radas_flows.stages.monitor import MonitorResult, experiment_monitor
from radas_flows.stages.submit import experiment_submit
from radas_flows.targets import DriverFailedError, RunHandle, TargetCheck
from radas_flows.tuner import Tuner, trial_cpus


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

    from radas_flows.driver import config_list_searcher

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


def _trial_error_kind(trial: Any) -> Outcome:
    error: Any = None
    try:
        error = trial.get_pickled_error() or trial.get_error()
    except Exception:  # an unreadable error.pkl; the text below remains
        error = None
    if classify_error(error) == "oom":
        return "oom"
    try:
        text = read_trial_error(
            trial.storage.trial_fs_path, filesystem=trial.storage.storage_filesystem
        )
    except Exception:
        text = None
    return "oom" if classify_error(text) == "oom" else "error"


def execution_outcome(trial: Any, *, aborted: bool) -> Outcome:
    """How one Tune trial ended: completed, out of memory, another error, or unfinished.

    ``aborted``: Tune itself stopped because Ray's memory monitor killed a trial; then every
    trial that had not completed counts as out of memory (Tune records no error for them).
    """
    if trial.status == "TERMINATED":
        return "completed"
    if trial.status == "ERROR":
        return _trial_error_kind(trial)
    return "oom" if aborted else "unfinished"


def _follow(
    spec: ExperimentSpec, handle: RunHandle, *, escalate: bool
) -> tuple[MonitorResult | None, list[Any], DriverFailedError | None]:
    """Monitor a run; when Tune itself stopped out of memory, read back what it stored."""
    filesystem = handle.driver_spec.storage_filesystem
    try:
        monitor = experiment_monitor(spec, handle)
    except DriverFailedError as e:
        if not escalate or classify_error(e) != "oom":
            raise
        stored = _stored_trials(handle.experiment_path, filesystem)
        if stored is None:
            raise
        get_run_logger().warning(
            "Ray Tune stopped early because Ray's memory monitor killed a trial: the trials of "
            "%s that had not completed count as out of memory.",
            handle.experiment_path,
        )
        return None, stored, e
    tuner = monitor.tuner
    if tuner.oom_rounds:  # a cluster run read back with earlier rounds merged in
        tuner = Tuner.from_path(
            handle.experiment_path, storage_filesystem=filesystem, merge_rounds=False
        )
    return monitor, tuner.trials(), None


def _stored_trials(path: str, filesystem: Any) -> list[Any] | None:
    try:
        return Tuner.from_path(path, storage_filesystem=filesystem, merge_rounds=False).trials()
    except Exception:  # Tune stopped before it stored any state
        return None


def _record_round(
    histories: dict[str, TrialHistory], entry: OomRound, trials: list[Any], *, aborted: bool
) -> None:
    by_id = {trial.trial_id: trial for trial in trials}
    matched = match_round(entry, [(trial.trial_id, trial.config) for trial in trials])
    for trial_id, root in matched.items():
        trial = by_id[trial_id]
        histories[root].record(
            entry.cpu_per_trial, execution_outcome(trial, aborted=aborted), trial
        )
    for root in set(entry.roots) - set(matched.values()):  # never started in this round
        histories[root].record(entry.cpu_per_trial, "oom" if aborted else "unfinished")


def _replay_rounds(
    path: str, manifest: OomManifest, histories: dict[str, TrialHistory], filesystem: Any
) -> None:
    """Add the rounds of an earlier flow run (before a restore or an attach) to the histories."""
    for entry in manifest.rounds:
        stored = _stored_trials(sibling_path(path, entry.name), filesystem)
        if stored is None:
            continue
        for root in entry.roots:
            histories.setdefault(root, TrialHistory(root, {}))
        _record_round(histories, entry, stored, aborted=False)


def _final_trial(history: TrialHistory) -> Any:
    runs = [(o, t) for o, t in zip(history.outcomes, history.trials, strict=True) if t is not None]
    return runs[final_index([outcome for outcome, _ in runs])][1]


def _trials_text(histories: list[TrialHistory]) -> str:
    from radas_flows.secrets import redact

    shown = ", ".join(f"{h.root} {redact(h.config)}" for h in histories[:5])
    more = f" and {len(histories) - 5} more" if len(histories) > 5 else ""
    return shown + more


def follow_and_escalate(
    spec: ExperimentSpec,
    check: TargetCheck,
    handle: RunHandle,
    *,
    fresh: bool,
    max_rounds: int | None = None,
) -> EscalationResult:
    """Follow a run to its end, re-running trials that ran out of memory with more CPUs.

    After the run, every errored trial is classified
    (:func:`~radas_flows.escalation.classify_error`). While some ran out of memory,
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
    path, filesystem = handle.experiment_path, handle.driver_spec.storage_filesystem
    if max_rounds is None:
        max_rounds = max_oom_rounds()
    base_cpu = float(handle.driver_spec.resources.get("cpu", spec.cpu_per_trial))
    monitor, main_trials, aborted = _follow(spec, handle, escalate=max_rounds > 0)

    manifest = None if fresh else read_manifest(path, filesystem)
    if manifest is None:
        metric, mode = _metric_mode(spec)
        manifest = OomManifest(base_cpu, metric, mode)
    histories: dict[str, TrialHistory] = {}
    for trial in main_trials:
        history = histories[trial.trial_id] = TrialHistory(trial.trial_id, dict(trial.config))
        outcome = execution_outcome(trial, aborted=aborted is not None)
        history.record(trial_cpus(trial) or base_cpu, outcome, trial)
    _replay_rounds(path, manifest, histories, filesystem)

    rounds_run, failure = 0, None
    while max_rounds > 0:
        pending = [h for h in histories.values() if h.outcome == "oom"]
        if not pending:
            break
        current = max(max(h.cpus) for h in pending)
        action, cpu = plan_round(current, check.cpu_cap, rounds_run, max_rounds)
        if action != "escalate" or cpu is None:
            tried = sorted({c for h in pending for c in h.cpus})
            failure = OutOfMemoryCapError(
                cap_failure_text(
                    [h.root for h in pending],
                    tried,
                    check.cpu_cap,
                    max_rounds=max_rounds if action == "max_rounds" else None,
                )
            )
            logger.error("%s", failure)
            break
        number = len(manifest.rounds) + 1
        entry = OomRound(
            number,
            round_name(spec.full_name, number),
            cpu,
            [h.root for h in pending],
            [config_key(h.config) for h in pending],
        )
        manifest.rounds.append(entry)
        write_manifest(path, manifest, filesystem)
        logger.warning(
            "%d %s ran out of memory at cpu_per_trial=%s: %s. Re-running only %s with "
            "cpu_per_trial=%s (round %d, at most %d per run), stored as %s.",
            len(pending),
            "trial" if len(pending) == 1 else "trials",
            format_number(current),
            _trials_text(pending),
            "it" if len(pending) == 1 else "them",
            format_number(cpu),
            number,
            max_rounds,
            sibling_path(path, entry.name),
        )
        round_spec = rerun_spec(spec, [h.config for h in pending], entry.name)
        round_handle = experiment_submit(round_spec.replace(cpu_per_trial=cpu), "run", check)
        _, trials, round_aborted = _follow(round_spec, round_handle, escalate=True)
        rounds_run += 1
        _record_round(histories, entry, trials, aborted=round_aborted is not None)

    recommendation = recommendation_for(histories.values())
    if recommendation:
        logger.info("%s", recommendation)
    if manifest.rounds or monitor is None:
        metric, mode = manifest.metric, manifest.mode
        tuner = Tuner.merged(
            path,
            [_final_trial(h) for h in histories.values()],
            storage_filesystem=filesystem,
            metric=metric,
            mode=mode,
            oom_rounds=manifest.rounds,
        )
    else:
        tuner = monitor.tuner
    return EscalationResult(tuner, monitor, list(histories.values()), recommendation, failure)
