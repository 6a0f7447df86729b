"""The one out-of-memory merge: final executions, rounds replayed, the next round, the layering."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import radas_flows
from radas_flows.errors import RadasValueError
from radas_flows.oom import OutOfMemoryCapError, final_index
from radas_flows.oom.merge import (
    TrialHistory,
    final_trials,
    match_round,
    next_round,
    recommendation_for,
    record_round,
    record_run,
    round_text,
)
from radas_flows.oom.rounds import OomManifest, OomRound, config_key
from radas_flows.storage import Storage


@dataclass
class _Resources:
    required_resources: dict[str, float]


@dataclass
class FakeTrial:
    """The parts of a Tune ``Trial`` the merge reads."""

    trial_id: str
    config: dict[str, Any]
    status: str
    cpus: float = 1.0
    error: BaseException | None = None
    placement_group_factory: _Resources = field(init=False)

    def __post_init__(self) -> None:
        self.placement_group_factory = _Resources({"CPU": self.cpus})

    def get_pickled_error(self) -> BaseException | None:
        return self.error

    def get_error(self) -> None:
        return None

    @property
    def storage(self) -> Any:
        raise AttributeError("no stored error text")


def oom(trial_id: str, x: int, cpus: float = 1.0) -> FakeTrial:
    return FakeTrial(trial_id, {"x": x}, "ERROR", cpus, MemoryError("out of memory"))


def done(trial_id: str, x: int, cpus: float = 1.0) -> FakeTrial:
    return FakeTrial(trial_id, {"x": x}, "TERMINATED", cpus)


# --- final_index: one vocabulary ------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (["completed"], 0),
        (["oom"], 0),
        (["oom", "completed"], 1),
        (["oom", "completed", "oom"], 1),  # a completed result is never replaced
        (["completed", "unfinished"], 0),
        (["oom", "oom", "error"], 2),
        (["error", "unfinished"], 1),
        (["completed", "oom", "completed"], 2),
    ],
)
def test_final_index_is_the_last_completed_else_the_last(outcomes, expected) -> None:
    assert final_index(outcomes) == expected


def test_final_index_speaks_only_outcomes() -> None:
    # Tune's status words are not outcomes: a stored "TERMINATED" is "completed" only after
    # execution_outcome read the trial.
    assert final_index(["TERMINATED", "oom"]) == 1  # type: ignore[list-item]


def test_final_index_needs_an_execution() -> None:
    with pytest.raises(RadasValueError, match="at least one execution"):
        final_index([])


# --- histories over rounds ------------------------------------------------------------------


def _round(number: int, cpu: float, roots: dict[str, int]) -> OomRound:
    return OomRound(
        number,
        f"exp__oom_round_{number}",
        cpu,
        list(roots),
        [config_key({"x": x}) for x in roots.values()],
    )


def test_run_then_rounds_give_one_final_trial_per_config() -> None:
    main = [done("a_00000", 0), oom("a_00001", 1), oom("a_00002", 2)]
    histories = record_run(main, base_cpu=1)
    assert [h.outcome for h in histories.values()] == ["completed", "oom", "oom"]

    first = _round(1, 2, {"a_00001": 1, "a_00002": 2})
    round_one = [oom("b_00000", 2, cpus=2), done("b_00001", 1, cpus=2)]  # Tune's own order
    record_round(histories, first, round_one, aborted=False)
    second = _round(2, 4, {"a_00002": 2})
    record_round(histories, second, [done("c_00000", 2, cpus=4)], aborted=False)

    assert histories["a_00001"].cpus == [1.0, 2.0]
    assert histories["a_00002"].outcomes == ["oom", "oom", "completed"]
    finals = final_trials(histories.values())
    assert [t.trial_id for t in finals] == ["a_00000", "b_00001", "c_00000"]
    assert recommendation_for(histories.values()) == (
        "2 trials ran out of memory at cpu_per_trial=1 and completed at 4; "
        "start future runs with cpu_per_trial=4"
    )


def test_a_trial_a_round_never_started_keeps_its_earlier_execution() -> None:
    histories = record_run([oom("a_00000", 0), oom("a_00001", 1)], base_cpu=1)
    entry = _round(1, 2, {"a_00000": 0, "a_00001": 1})
    record_round(histories, entry, [done("b_00000", 0, cpus=2)], aborted=True)
    assert histories["a_00001"].outcomes == ["oom", "oom"]  # Tune stopped before it started
    assert histories["a_00001"].trials[-1] is None
    assert [t.trial_id for t in final_trials(histories.values())] == ["b_00000", "a_00001"]


def test_a_root_missing_from_the_main_run_and_never_run_is_left_out() -> None:
    histories: dict[str, TrialHistory] = {}
    record_round(histories, _round(1, 2, {"a_00003": 3}), [], aborted=False)
    assert histories["a_00003"].outcomes == ["unfinished"]
    assert final_trials(histories.values()) == []


def test_match_round_matches_exact_configs_then_the_rest_in_order() -> None:
    entry = _round(1, 2, {"a_00003": 3, "a_00007": 7})
    assert match_round(entry, [("b_00001", {"x": 7}), ("b_00000", {"x": 3})]) == {
        "b_00000": "a_00003",
        "b_00001": "a_00007",
    }
    # A config that changed on the way (for example a value Tune normalized) still matches.
    assert match_round(entry, [("b_00000", {"x": 7}), ("b_00001", {"x": 30})]) == {
        "b_00000": "a_00007",
        "b_00001": "a_00003",
    }


def test_record_run_uses_the_base_cpu_when_tune_stored_none() -> None:
    trial = done("a_00000", 0)
    trial.placement_group_factory = None  # type: ignore[assignment]
    assert record_run([trial], base_cpu=2)["a_00000"].cpus == [2.0]


# --- the next round -------------------------------------------------------------------------


def test_next_round_doubles_for_the_trials_out_of_memory() -> None:
    histories = record_run([done("a_00000", 0), oom("a_00001", 1)], base_cpu=1)
    manifest = OomManifest(1.0)
    step = next_round(histories, manifest, full_name="exp", cap=8, rounds_run=0, max_rounds=3)
    assert step == OomRound(1, "exp__oom_round_1", 2.0, ["a_00001"], [config_key({"x": 1})])
    text = round_text(step, histories, Storage("/r/me/exp"), 3)
    assert text == (
        "1 trial ran out of memory at cpu_per_trial=1: a_00001 {'x': 1}. Re-running only it "
        "with cpu_per_trial=2 (round 1, at most 3 per run), stored as /r/me/exp__oom_round_1."
    )


def test_next_round_stops_at_the_cap_and_after_the_last_round() -> None:
    histories = record_run([oom("a_00000", 0, cpus=4)], base_cpu=4)
    at_cap = next_round(
        histories, OomManifest(4.0), full_name="exp", cap=4, rounds_run=0, max_rounds=3
    )
    assert isinstance(at_cap, OutOfMemoryCapError)
    assert "doubling again to 8 would exceed the cap cpu_per_node=4" in str(at_cap)
    last = next_round(
        histories, OomManifest(4.0), full_name="exp", cap=64, rounds_run=1, max_rounds=1
    )
    assert isinstance(last, OutOfMemoryCapError)
    assert "Stopped after the maximum of 1 escalation rounds" in str(last)


def test_next_round_is_none_when_nothing_ran_out_of_memory_or_reruns_are_off() -> None:
    fine = record_run([done("a_00000", 0), FakeTrial("a_00001", {"x": 1}, "ERROR")], base_cpu=1)
    assert fine["a_00001"].outcome == "error"  # another error is never re-run
    args: dict[str, Any] = dict(full_name="exp", cap=8, rounds_run=0, max_rounds=3)
    assert next_round(fine, OomManifest(1.0), **args) is None
    hungry = record_run([oom("a_00000", 0)], base_cpu=1)
    assert next_round(hungry, OomManifest(1.0), **{**args, "max_rounds": 0}) is None


# --- layering ---------------------------------------------------------------------------------

_PACKAGE = Path(radas_flows.__file__).parent
#: What the oom package may import from radas_flows: itself and these lower modules.
_OOM_MAY_IMPORT = {
    "radas_flows.driver",
    "radas_flows.errors",
    "radas_flows.secrets",
    "radas_flows.storage",
}


def _radas_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("radas_flows")}


def test_the_oom_package_imports_only_lower_modules() -> None:
    for path in sorted((_PACKAGE / "oom").glob("*.py")):
        outside = {n for n in _radas_imports(path) if not n.startswith("radas_flows.oom")}
        assert outside <= _OOM_MAY_IMPORT, f"{path.name} imports {outside - _OOM_MAY_IMPORT}"
    for lower in _OOM_MAY_IMPORT:
        module = _PACKAGE / f"{lower.removeprefix('radas_flows.')}.py"
        assert not {n for n in _radas_imports(module) if n.startswith("radas_flows.oom")}
