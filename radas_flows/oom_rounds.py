"""The record of out-of-memory re-run rounds kept with an experiment, and each trial's history."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from radas_flows.errors import RadasValueError
from radas_flows.escalation import next_cpu_per_trial, recommendation_text

if TYPE_CHECKING:
    import pyarrow.fs

#: The manifest of re-run rounds, in the original experiment's folder.
MANIFEST_FILE = "radas_oom_rounds.json"
#: Trial ids that completed before Tune itself stopped (Ray's memory monitor aborts ``fit()``).
COMPLETED_FILE = "radas_completed_trials.json"
#: Environment variable: the most escalation rounds one flow run may start (0 turns it off).
MAX_ROUNDS_ENV = "RADAS_MAX_OOM_ROUNDS"
DEFAULT_MAX_ROUNDS = 3
#: A re-run round is stored beside the experiment as ``<full name>__oom_round_<k>``.
ROUND_SUFFIX = "__oom_round_"

Outcome = Literal["completed", "oom", "error", "unfinished"]
RoundAction = Literal["escalate", "cap", "max_rounds"]


def max_oom_rounds(environ: Mapping[str, str] | None = None) -> int:
    """The most escalation rounds a flow run may start: ``$RADAS_MAX_OOM_ROUNDS``, default 3.

    Raises:
        RadasValueError: When the variable is not a whole number >= 0.

    Example:
        >>> max_oom_rounds({}), max_oom_rounds({"RADAS_MAX_OOM_ROUNDS": "0"})
        (3, 0)
    """
    value = (os.environ if environ is None else environ).get(MAX_ROUNDS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_ROUNDS
    try:
        rounds = int(value)
    except ValueError as e:
        raise RadasValueError(
            f"{MAX_ROUNDS_ENV}={value!r} is not a whole number; set it to for example 3 "
            "(0 turns the out-of-memory re-runs off)."
        ) from e
    if rounds < 0:
        raise RadasValueError(
            f"{MAX_ROUNDS_ENV}={value!r} must be 0 or more; 0 turns the out-of-memory re-runs off."
        )
    return rounds


def round_name(full_name: str, number: int) -> str:
    """The stored name of re-run round ``number`` of an experiment.

    Example:
        >>> round_name("mnist_0a1b2c", 1)
        'mnist_0a1b2c__oom_round_1'
    """
    return f"{full_name}{ROUND_SUFFIX}{number}"


def sibling_path(experiment_path: str, name: str) -> str:
    """The path of experiment ``name`` stored beside ``experiment_path`` (same user folder).

    Example:
        >>> sibling_path("s3://bucket/runs/me/mnist", "mnist__oom_round_1")
        's3://bucket/runs/me/mnist__oom_round_1'
    """
    parent = experiment_path.rstrip("/").rsplit("/", 1)[0]
    return f"{parent}/{name}"


def config_key(config: Mapping[str, Any]) -> str:
    """A stable text key of a trial config, to find a re-run trial's original.

    Example:
        >>> config_key({"b": 2, "a": [1, 0.5]})
        '{"a": [1, 0.5], "b": 2}'
    """
    return json.dumps(config, sort_keys=True, default=repr)


@dataclass
class OomRound:
    """One re-run round: the trials (by their original trial id) and the CPUs they got."""

    number: int
    name: str
    cpu_per_trial: float
    roots: list[str]
    config_keys: list[str]


@dataclass
class OomManifest:
    """Every re-run round of one experiment, in order; stored as :data:`MANIFEST_FILE`."""

    base_cpu_per_trial: float
    metric: str | None = None
    mode: str | None = None
    rounds: list[OomRound] = field(default_factory=list)
    version: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> OomManifest:
        data = json.loads(text)
        rounds = [OomRound(**entry) for entry in data.pop("rounds", [])]
        return cls(**data, rounds=rounds)


def _resolve(
    path: str, filesystem: pyarrow.fs.FileSystem | None
) -> tuple[pyarrow.fs.FileSystem | None, str]:
    """A pyarrow filesystem and path for remote storage; (None, path) for a local folder."""
    if filesystem is not None:
        return filesystem, path
    if "://" in path:
        import pyarrow.fs

        return pyarrow.fs.FileSystem.from_uri(path)
    return None, path


def read_text(path: str, filesystem: pyarrow.fs.FileSystem | None = None) -> str | None:
    """The text of a file on local or remote storage, or None when it does not exist."""
    fs, fs_path = _resolve(path, filesystem)
    if fs is None:
        local = Path(fs_path)
        return local.read_text(encoding="utf-8") if local.is_file() else None
    import pyarrow.fs

    if fs.get_file_info(fs_path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(fs_path) as stream:
        return bytes(stream.readall()).decode("utf-8")


def write_text(path: str, text: str, filesystem: pyarrow.fs.FileSystem | None = None) -> None:
    """Write a small file on local (atomically) or remote storage, creating its folder."""
    fs, fs_path = _resolve(path, filesystem)
    if fs is None:
        local = Path(fs_path)
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(f".{local.name}.partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, local)
        return
    fs.create_dir(fs_path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(fs_path) as stream:
        stream.write(text.encode("utf-8"))


def read_manifest(
    experiment_path: str, filesystem: pyarrow.fs.FileSystem | None = None
) -> OomManifest | None:
    """The re-run rounds recorded for an experiment, or None when it never escalated.

    Example:
        >>> read_manifest("/no/such/experiment") is None
        True
    """
    text = read_text(f"{experiment_path.rstrip('/')}/{MANIFEST_FILE}", filesystem)
    if text is None:
        return None
    try:
        return OomManifest.from_json(text)
    except (ValueError, TypeError, KeyError) as e:
        raise RadasValueError(
            f"{MANIFEST_FILE} in {experiment_path} is damaged ({type(e).__name__}: {e}); delete "
            "it to analyze the original sweep alone, without its out-of-memory re-runs."
        ) from e


def write_manifest(
    experiment_path: str, manifest: OomManifest, filesystem: pyarrow.fs.FileSystem | None = None
) -> None:
    """Store the manifest in the experiment's folder."""
    write_text(f"{experiment_path.rstrip('/')}/{MANIFEST_FILE}", manifest.to_json(), filesystem)


def read_completed_ids(
    experiment_path: str, filesystem: pyarrow.fs.FileSystem | None = None
) -> set[str]:
    """Trial ids the driver saw complete before Tune stopped early (empty when it did not)."""
    text = read_text(f"{experiment_path.rstrip('/')}/{COMPLETED_FILE}", filesystem)
    return set(json.loads(text)) if text else set()


def write_completed_ids(
    experiment_path: str, trial_ids: Iterable[str], filesystem: pyarrow.fs.FileSystem | None = None
) -> None:
    """Record the trial ids that completed (written by the driver when ``fit()`` raised)."""
    ids = sorted(set(trial_ids))
    write_text(f"{experiment_path.rstrip('/')}/{COMPLETED_FILE}", json.dumps(ids), filesystem)


def remove_rounds(
    experiment_path: str,
    manifest: OomManifest,
    filesystem: pyarrow.fs.FileSystem | None = None,
) -> list[str]:
    """Delete the stored re-run rounds of an experiment (when it is run afresh).

    Read the manifest first: a fresh run deletes the experiment's folder, manifest included.

    Returns:
        The paths deleted.
    """
    from radas_flows.driver import remove_experiment

    removed = []
    for entry in manifest.rounds:
        path = sibling_path(experiment_path, entry.name)
        remove_experiment(path, filesystem)
        removed.append(path)
    return removed


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


def final_index(outcomes: Sequence[str]) -> int:
    """Which execution of a trial is its final one: the last that completed, else the last.

    A completed result is never replaced: a later execution of the same config (a restore of
    the original sweep) cannot lose it.

    Example:
        >>> final_index(["oom", "completed", "oom"]), final_index(["oom", "oom"])
        (1, 1)
    """
    if not outcomes:
        raise RadasValueError("final_index needs at least one execution")
    done = [i for i, outcome in enumerate(outcomes) if outcome in ("completed", "TERMINATED")]
    return done[-1] if done else len(outcomes) - 1


@dataclass
class TrialHistory:
    """Every execution of one trial config: the CPUs it had and how it ended."""

    root: str  # the trial id in the original sweep
    config: dict[str, Any]
    cpus: list[float] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    trials: list[Any] = field(default_factory=list)  # the Tune trial of each execution

    def record(self, cpu: float, outcome: Outcome, trial: Any = None) -> None:
        self.cpus.append(float(cpu))
        self.outcomes.append(outcome)
        self.trials.append(trial)

    @property
    def final(self) -> int:
        return final_index(self.outcomes)

    @property
    def outcome(self) -> Outcome:
        return self.outcomes[self.final]

    @property
    def cpu(self) -> float:
        return self.cpus[self.final]


def plan_round(
    current_cpu: float, cap: float, rounds_run: int, max_rounds: int
) -> tuple[RoundAction, float | None]:
    """Decide the next escalation round for trials that ran out of memory at ``current_cpu``.

    Returns:
        ``("escalate", doubled cpu_per_trial)``, ``("cap", None)`` when doubling would exceed
        the cap, or ``("max_rounds", None)`` when ``max_rounds`` rounds already ran.

    Example:
        >>> plan_round(1, cap=8, rounds_run=0, max_rounds=3)
        ('escalate', 2.0)
        >>> plan_round(4, cap=4, rounds_run=1, max_rounds=3)
        ('cap', None)
    """
    if rounds_run >= max_rounds:
        return "max_rounds", None
    doubled = next_cpu_per_trial(current_cpu, cap)
    if doubled is None:
        return "cap", None
    return "escalate", doubled


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
