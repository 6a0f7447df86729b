"""The rounds manifest: the out-of-memory re-run rounds recorded beside an experiment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from radas_flows.errors import RadasValueError
from radas_flows.storage import Storage

#: The manifest of re-run rounds, in the original experiment's folder.
MANIFEST_FILE = "radas_oom_rounds.json"
#: Environment variable: the most escalation rounds one flow run may start (0 turns it off).
MAX_ROUNDS_ENV = "RADAS_MAX_OOM_ROUNDS"
DEFAULT_MAX_ROUNDS = 3
#: A re-run round is stored beside the experiment as ``<full name>__oom_round_<k>``.
ROUND_SUFFIX = "__oom_round_"


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


_ROUND_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int,),
    "name": (str,),
    "cpu_per_trial": (int, float),
    "roots": (list,),
    "config_keys": (list,),
}


def _round_problem(entry: OomRound, position: int, full_name: str) -> str | None:
    """Why a manifest entry is not one radas wrote for experiment ``full_name``, or None."""
    for key, types in _ROUND_TYPES.items():
        value = getattr(entry, key)
        if isinstance(value, bool) or not isinstance(value, types):
            return f"round {position} has {key}={value!r}, not a {types[0].__name__}"
    for key in ("roots", "config_keys"):
        if not all(isinstance(item, str) for item in getattr(entry, key)):
            return f"round {position} has {key}={getattr(entry, key)!r}: only strings belong there"
    if entry.number != position:
        return (
            f"round {position} has number={entry.number}: round numbers must run 1, 2, 3... "
            "in order"
        )
    expected = round_name(full_name, position)
    if entry.name != expected:
        return (
            f"round {position} is named {entry.name!r}; in this experiment's manifest it must "
            f"be {expected!r}"
        )
    return None


def read_manifest(experiment: Storage) -> OomManifest | None:
    """The re-run rounds recorded for an experiment, or None when it never escalated.

    The results root may be shared, so every entry is checked against what radas writes:
    round ``k`` is named ``round_name(<experiment's folder name>, k)``, numbers run 1, 2, 3...,
    and the fields have their types. A round name is the folder beside the experiment that
    is read, and deleted when the experiment is run afresh: any other name is refused.

    Raises:
        RadasValueError: The file is not JSON of a manifest, or an entry is not one radas
            would have written (the message names the file and the entry).

    Example:
        >>> read_manifest(Storage("/no/such/experiment")) is None
        True
    """
    file = experiment.child(MANIFEST_FILE)
    text = file.read_text()
    if text is None:
        return None
    try:
        manifest = OomManifest.from_json(text)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise RadasValueError(
            f"{MANIFEST_FILE} in {experiment} is damaged ({type(e).__name__}: {e}); delete "
            "it to analyze the original sweep alone, without its out-of-memory re-runs."
        ) from e
    full_name = experiment.path.rstrip("/").rsplit("/", 1)[-1]
    for position, entry in enumerate(manifest.rounds, start=1):
        problem = _round_problem(entry, position, full_name)
        if problem is not None:
            raise RadasValueError(
                f"{file}: {problem}. radas writes no other "
                "entries, so someone else wrote this file; nothing it names was read or "
                "deleted. Delete the file to analyze the original sweep alone, and check who "
                "can write the results root."
            )
    return manifest


def write_manifest(experiment: Storage, manifest: OomManifest) -> None:
    """Store the manifest in the experiment's folder."""
    experiment.child(MANIFEST_FILE).write_text(manifest.to_json())


def remove_rounds(experiment: Storage, manifest: OomManifest) -> list[str]:
    """Delete the stored re-run rounds of an experiment (when it is run afresh).

    Read the manifest first: a fresh run deletes the experiment's folder, manifest included.

    Returns:
        The paths deleted.
    """
    full_name = experiment.path.rstrip("/").rsplit("/", 1)[-1]
    removed = []
    for position, entry in enumerate(manifest.rounds, start=1):
        problem = _round_problem(entry, position, full_name)
        if problem is not None:  # read_manifest refuses these; never delete what they name
            raise RadasValueError(f"Not deleting re-run rounds of {experiment}: {problem}.")
        stored = experiment.sibling(entry.name)
        stored.remove()
        removed.append(stored.path)
    return removed
