"""One merge of a sweep and its out-of-memory re-run rounds: each trial config's executions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from radas_flows.driver import read_completed_ids
from radas_flows.errors import RadasValueError
from radas_flows.oom.detect import Outcome, execution_outcome
from radas_flows.oom.policy import (
    OutOfMemoryCapError,
    cap_failure_text,
    format_number,
    plan_round,
    recommendation_text,
)
from radas_flows.oom.rounds import OomManifest, OomRound, config_key, round_name
from radas_flows.storage import Storage


def final_index(outcomes: Sequence[Outcome]) -> int:
    """Which execution of a trial is its final one: the last that completed, else the last.

    A completed result is never replaced: a later execution of the same config (a restore of
    the original sweep) cannot lose it.

    Args:
        outcomes: How each execution ended, in order (see
            :func:`~radas_flows.oom.detect.execution_outcome`).

    Returns:
        The index of the final execution.

    Raises:
        RadasValueError: When there is no execution.

    Example:
        >>> final_index(["oom", "completed", "oom"]), final_index(["oom", "unfinished"])
        (1, 1)
    """
    if not outcomes:
        raise RadasValueError("final_index needs at least one execution")
    done = [i for i, outcome in enumerate(outcomes) if outcome == "completed"]
    return done[-1] if done else len(outcomes) - 1


def trial_cpus(trial: Any) -> float | None:
    """The CPUs a Tune trial was given (from its stored resource request), or None."""
    try:
        cpus = trial.placement_group_factory.required_resources.get("CPU")
    except Exception:  # a trial stub without resources
        return None
    return None if cpus is None else float(cpus)


@dataclass
class TrialHistory:
    """Every execution of one trial config: the CPUs it had, how it ended, its Tune trial."""

    root: str  # the trial id in the original sweep
    config: dict[str, Any]
    cpus: list[float] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    trials: list[Any] = field(default_factory=list)  # None where a round never started it

    def record(self, cpu: float, outcome: Outcome, trial: Any = None) -> None:
        """Add one execution."""
        self.cpus.append(float(cpu))
        self.outcomes.append(outcome)
        self.trials.append(trial)

    @property
    def final(self) -> int:
        """The index of the final execution (:func:`final_index`)."""
        return final_index(self.outcomes)

    @property
    def outcome(self) -> Outcome:
        return self.outcomes[self.final]

    @property
    def cpu(self) -> float:
        return self.cpus[self.final]

    @property
    def final_trial(self) -> Any:
        """The Tune trial of the final execution that ran, or None when none ran."""
        ran = [(o, t) for o, t in zip(self.outcomes, self.trials, strict=True) if t is not None]
        return ran[final_index([o for o, _ in ran])][1] if ran else None


def match_round(entry: OomRound, trials: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
    """Map each trial of a re-run round to the original trial it re-ran.

    Args:
        entry: The round, as recorded before it started.
        trials: ``(trial_id, config)`` of the round's stored trials.

    Returns:
        ``{round trial id: original trial id}``. Trials are matched by their exact config;
        identical configs (and any left over) are matched in trial-id order.

    Example:
        >>> r = OomRound(1, "x__oom_round_1", 2, ["a_00003", "a_00007"],
        ...              [config_key({"x": 3}), config_key({"x": 7})])
        >>> match_round(r, [("b_00001", {"x": 7}), ("b_00000", {"x": 3})])
        {'b_00000': 'a_00003', 'b_00001': 'a_00007'}
    """
    free = list(zip(entry.roots, entry.config_keys, strict=False))
    matched: dict[str, str] = {}
    unmatched: list[str] = []
    for trial_id, config in sorted(trials, key=lambda item: item[0]):
        key = config_key(config)
        index = next((i for i, (_, k) in enumerate(free) if k == key), None)
        if index is None:
            unmatched.append(trial_id)
            continue
        matched[trial_id] = free.pop(index)[0]
    for trial_id in unmatched:
        if free:
            matched[trial_id] = free.pop(0)[0]
    return dict(sorted(matched.items()))


def load_analysis(experiment: Storage) -> Any:
    """Tune's ``ExperimentAnalysis`` of a stored experiment, completed trials marked so.

    Tune saves its state only now and then, so after ``fit()`` itself failed the driver
    records the trials it saw complete; those are marked ``TERMINATED`` here.

    Raises:
        Exception: Whatever Tune raises when nothing is stored there.
    """
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(
        experiment.tune_path, storage_filesystem=experiment.tune_filesystem()
    )
    completed = read_completed_ids(experiment)
    for trial in analysis.trials:
        if trial.trial_id in completed and trial.status != "TERMINATED":
            trial.status = "TERMINATED"
    return analysis


def stored_trials(experiment: Storage) -> list[Any] | None:
    """The Tune trials stored in ``experiment``, or None when Tune stored nothing there."""
    try:
        return list(load_analysis(experiment).trials)
    except Exception:  # never stored: Tune stopped before it saved any state
        return None


def record_run(
    trials: Iterable[Any], *, base_cpu: float, aborted: bool = False
) -> dict[str, TrialHistory]:
    """The histories of an original sweep's trials: one execution each.

    Args:
        trials: The sweep's Tune trials.
        base_cpu: The cpu_per_trial of a trial whose resources Tune did not store.
        aborted: Tune itself stopped out of memory (see ``execution_outcome``).

    Returns:
        ``{trial id: TrialHistory}`` in the trials' order.
    """
    histories: dict[str, TrialHistory] = {}
    for trial in trials:
        history = histories[trial.trial_id] = TrialHistory(trial.trial_id, dict(trial.config))
        outcome = execution_outcome(trial, aborted=aborted)
        history.record(trial_cpus(trial) or base_cpu, outcome, trial)
    return histories


def record_round(
    histories: dict[str, TrialHistory], entry: OomRound, trials: list[Any], *, aborted: bool
) -> None:
    """Add the executions of one re-run round to the histories of the trials it re-ran."""
    by_id = {trial.trial_id: trial for trial in trials}
    matched = match_round(entry, [(trial.trial_id, trial.config) for trial in trials])
    for root in entry.roots:
        histories.setdefault(root, TrialHistory(root, {}))
    for trial_id, root in matched.items():
        trial = by_id[trial_id]
        outcome = execution_outcome(trial, aborted=aborted)
        histories[root].record(entry.cpu_per_trial, outcome, trial)
    for root in set(entry.roots) - set(matched.values()):  # never started in this round
        histories[root].record(entry.cpu_per_trial, "oom" if aborted else "unfinished")


def replay_rounds(
    experiment: Storage, manifest: OomManifest, histories: dict[str, TrialHistory]
) -> None:
    """Add the stored rounds of ``manifest`` to the histories; a round never stored is skipped."""
    for entry in manifest.rounds:
        trials = stored_trials(experiment.sibling(entry.name))
        if trials is not None:
            record_round(histories, entry, trials, aborted=False)


def final_trials(histories: Iterable[TrialHistory]) -> list[Any]:
    """The Tune trial of each config's final execution (configs that never ran are left out)."""
    finals = (history.final_trial for history in histories)
    return [trial for trial in finals if trial is not None]


def merged_trials(
    experiment: Storage, main_trials: Sequence[Any], manifest: OomManifest
) -> list[Any]:
    """One final trial per config of a stored sweep, over its stored re-run rounds.

    Args:
        experiment: Where the original experiment is stored.
        main_trials: Its Tune trials (see :func:`load_analysis`).
        manifest: Its rounds manifest.

    Returns:
        The trials to show, one per config, in the original sweep's order.
    """
    histories = record_run(main_trials, base_cpu=manifest.base_cpu_per_trial)
    replay_rounds(experiment, manifest, histories)
    return final_trials(histories.values())


def next_round(
    histories: Mapping[str, TrialHistory],
    manifest: OomManifest,
    *,
    full_name: str,
    cap: float,
    rounds_run: int,
    max_rounds: int,
) -> OomRound | OutOfMemoryCapError | None:
    """What follows a run: nothing, a re-run round, or the failure to raise after analysis.

    Args:
        histories: Every trial config's executions so far.
        manifest: The rounds recorded so far (numbers the next round).
        full_name: The experiment's full name (names the round).
        cap: The largest cpu_per_trial allowed.
        rounds_run: Rounds this flow run already started.
        max_rounds: The most rounds one flow run may start; 0 turns re-runs off.

    Returns:
        None when no trial's final execution ran out of memory (or re-runs are off), the next
        :class:`OomRound` (not yet recorded), or an ``OutOfMemoryCapError`` when doubling
        would exceed ``cap`` or ``max_rounds`` rounds already ran.
    """
    pending = [h for h in histories.values() if h.outcome == "oom"]
    if not pending or max_rounds <= 0:
        return None
    current = max(max(h.cpus) for h in pending)
    action, cpu = plan_round(current, cap, rounds_run, max_rounds)
    if action != "escalate" or cpu is None:
        tried = sorted({c for h in pending for c in h.cpus})
        limit = max_rounds if action == "max_rounds" else None
        text = cap_failure_text([h.root for h in pending], tried, cap, max_rounds=limit)
        return OutOfMemoryCapError(text)
    number = len(manifest.rounds) + 1
    roots = [h.root for h in pending]
    return OomRound(
        number, round_name(full_name, number), cpu, roots, [config_key(h.config) for h in pending]
    )


def round_text(
    entry: OomRound, histories: Mapping[str, TrialHistory], experiment: Storage, max_rounds: int
) -> str:
    """The log line announcing a re-run round (configs redacted)."""
    from radas_flows.secrets import redact

    pending = [histories[root] for root in entry.roots]
    shown = ", ".join(f"{h.root} {redact(h.config)}" for h in pending[:5])
    more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
    one = len(pending) == 1
    return (
        f"{len(pending)} {'trial' if one else 'trials'} ran out of memory at cpu_per_trial="
        f"{format_number(max(max(h.cpus) for h in pending))}: {shown}{more}. Re-running only "
        f"{'it' if one else 'them'} with cpu_per_trial={format_number(entry.cpu_per_trial)} "
        f"(round {entry.number}, at most {max_rounds} per run), stored as "
        f"{experiment.sibling(entry.name)}."
    )


def recommendation_for(histories: Iterable[TrialHistory]) -> str | None:
    """The advice for trials that ran out of memory and later completed, or None.

    Example:
        >>> h = TrialHistory("a_00001", {"x": 1}, [1.0, 2.0], ["oom", "completed"])
        >>> recommendation_for([h])
        '1 trial ran out of memory at cpu_per_trial=1 and completed at 2; start future runs with cpu_per_trial=2'
    """  # noqa: E501
    escalated = [h for h in histories if h.outcome == "completed" and "oom" in h.outcomes]
    if not escalated:
        return None
    first = min(h.cpus[h.outcomes.index("oom")] for h in escalated)
    return recommendation_text(len(escalated), first, max(h.cpu for h in escalated))
