"""What radas reads from a shared results root names nothing outside its experiment.

Anyone who can write the results root can plant files beside another user's experiment. The
attack here was found against the code before the manifest was checked: a rounds manifest
whose round name climbs out of the root made ``run_choice="run"`` delete a victim's folder.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from radas_flows import Tuner, run_experiment
from radas_flows.core import experiment_path
from radas_flows.driver import COMPLETED_FILE, read_completed_ids, write_completed_ids
from radas_flows.errors import RadasValueError
from radas_flows.inputs.spec import sanitize_experiment_name
from radas_flows.oom.rounds import (
    MANIFEST_FILE,
    OomManifest,
    OomRound,
    read_manifest,
    round_name,
    write_manifest,
)
from radas_flows.storage import Storage
from tests import prefect_reads as pr
from tests import trainables_for_tests as t


def _manifest(names: list[str], numbers: list[int] | None = None) -> str:
    numbers = numbers or list(range(1, len(names) + 1))
    rounds = [
        {"number": n, "name": name, "cpu_per_trial": 2.0, "roots": ["a_00000"], "config_keys": []}
        for n, name in zip(numbers, names, strict=True)
    ]
    return json.dumps({"base_cpu_per_trial": 1.0, "rounds": rounds})


def _plant(experiment: Path, text: str, file: str = MANIFEST_FILE) -> Path:
    experiment.mkdir(parents=True, exist_ok=True)
    (experiment / file).write_text(text)
    return experiment / file


# ---------------------------------------------------------------------------------------------
# The attack: a planted manifest and run_choice="run", through a real flow run
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("radas_env")
def test_planted_round_name_deletes_nothing_outside_the_experiment(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared-results"
    monkeypatch.setenv("RADAS_RESULTS_ROOT", str(shared))
    victim = tmp_path / "victim_home"
    (victim / "thesis").mkdir(parents=True)
    (victim / "thesis" / "chapter1.tex").write_text("years of work")
    name = f"planted-{uuid.uuid4().hex[:6]}"
    experiment = Path(experiment_path("tester", sanitize_experiment_name(name, str(workdir))))
    # <shared>/tester/<experiment>/../../victim_home is <tmp>/victim_home.
    assert (experiment.parent / "../../victim_home").resolve() == victim.resolve()
    planted = _plant(experiment, _manifest(["../../victim_home"]))

    results = asyncio.run(
        run_experiment(
            user_name="tester",
            trainable=t.returning,
            experiment_name=name,
            param_space={"a": tune.grid_search([1])},
            run_choice="run",
        )
    )
    assert (victim / "thesis" / "chapter1.tex").read_text() == "years of work"
    assert results["df"]["score"].tolist() == [1]  # the fresh run itself went ahead
    logs = "\n".join(pr.logs_of(pr.flow_run_named(name).id))
    assert f"{planted}: round 1 is named '../../victim_home'" in logs
    assert "deleted no re-run folders" in logs
    assert not planted.exists()  # replaced with the experiment


# ---------------------------------------------------------------------------------------------
# The manifest: only the names radas writes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "numbers", "match"),
    [
        (["../../victim_home"], None, r"round 1 is named '\.\./\.\./victim_home'"),
        (["/home/victim"], None, r"round 1 is named '/home/victim'"),
        (["{other}__oom_round_1"], None, r"round 1 is named 'other_exp__oom_round_1'"),
        (["{full}__oom_round_1/../../x"], None, r"round 1 is named"),
        (["{full}__oom_round_2"], [2], r"round numbers must run 1, 2, 3"),
        (["{full}__oom_round_1", "{full}__oom_round_1"], [1, 1], r"round numbers must run"),
    ],
)
def test_manifest_entries_other_than_ours_are_refused(
    tmp_path: Path, names: list[str], numbers: list[int] | None, match: str
) -> None:
    full = "mine_0a1b2c"
    experiment = tmp_path / "u" / full
    names = [n.format(full=full, other="other_exp") for n in names]
    planted = _plant(experiment, _manifest(names, numbers))
    with pytest.raises(RadasValueError, match=match) as e:
        read_manifest(Storage(str(experiment)))
    assert str(planted) in str(e.value)
    assert f"must be '{full}__oom_round_" in str(e.value) or "must run" in str(e.value)


@pytest.mark.parametrize(
    "entry",
    [
        {"number": True, "name": "x", "cpu_per_trial": 2, "roots": [], "config_keys": []},
        {"number": 1, "name": 7, "cpu_per_trial": 2, "roots": [], "config_keys": []},
        {"number": 1, "name": "n", "cpu_per_trial": "2", "roots": [], "config_keys": []},
        {"number": 1, "name": "n", "cpu_per_trial": 2, "roots": [1], "config_keys": []},
        {"number": 1, "name": "n", "cpu_per_trial": 2, "roots": [], "config_keys": "ab"},
    ],
)
def test_manifest_entries_of_the_wrong_type_are_refused(
    tmp_path: Path, entry: dict[str, Any]
) -> None:
    experiment = tmp_path / "u" / "n"
    _plant(experiment, json.dumps({"base_cpu_per_trial": 1.0, "rounds": [entry]}))
    with pytest.raises(RadasValueError, match=rf"{experiment}/{MANIFEST_FILE}: round 1"):
        read_manifest(Storage(str(experiment)))


def test_the_manifest_radas_writes_reads_back(tmp_path: Path) -> None:
    full = "mine_0a1b2c"
    experiment = Storage(str(tmp_path / "u" / full))
    manifest = OomManifest(1.0, "score", "max")
    for number in (1, 2):
        manifest.rounds.append(OomRound(number, round_name(full, number), 2.0**number, [], []))
    write_manifest(experiment, manifest)
    assert read_manifest(experiment) == manifest


def test_reading_back_an_experiment_refuses_a_planted_manifest(tmp_path: Path) -> None:
    experiment = tmp_path / "u" / "exp_0a1b2c"
    planted = _plant(experiment, _manifest(["../victim"]))
    with pytest.raises(RadasValueError, match=rf"{planted}: round 1 is named '\.\./victim'"):
        Tuner.from_path(str(experiment))


# ---------------------------------------------------------------------------------------------
# The completed-ids file: trial id strings only
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        '"abc_00000"',  # a string: once read as its characters
        '{"abc_00000": 1}',
        "[1, 2]",
        '["abc_00000", "../../etc"]',
        '["abc_00000", ""]',
        "not json",
    ],
)
def test_completed_ids_other_than_trial_ids_are_refused(tmp_path: Path, content: str) -> None:
    planted = _plant(tmp_path / "exp", content, COMPLETED_FILE)
    with pytest.raises(RadasValueError, match=rf"{planted} .*trial ids"):
        read_completed_ids(Storage(str(tmp_path / "exp")))


def test_completed_ids_radas_writes_read_back(tmp_path: Path) -> None:
    experiment = Storage(str(tmp_path / "exp"))
    assert read_completed_ids(experiment) == set()
    write_completed_ids(experiment, ["7e2f0_00001", "7e2f0_00000"])
    assert read_completed_ids(experiment) == {"7e2f0_00000", "7e2f0_00001"}


# ---------------------------------------------------------------------------------------------
# Job metadata (the loopback-cluster attach tests are in tests/clusters/test_tenants.py)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({"radas_experiment_path": "/r/u/other"}, r"names the results path '/r/u/other', not"),
        ({"radas_experiment_path": "/r/u/e/../../x"}, r"names the results path"),
        ({"radas_run_id": "../../x"}, r"names the run id '\.\./\.\./x'"),
        ({"radas_run_id": 12}, r"names the run id 12"),
    ],
)
def test_job_metadata_other_than_ours_is_refused(metadata: dict[str, Any], match: str) -> None:
    from types import SimpleNamespace

    from radas_flows.clusters.tenancy import checked_run_id
    from radas_flows.errors import ExperimentStateError

    job = SimpleNamespace(submission_id="radas-u-1", job_id=None, metadata=metadata)
    with pytest.raises(ExperimentStateError, match=match) as e:
        checked_run_id(job, experiment_path="/r/u/e", cluster="c")
    assert "Job radas-u-1 on cluster 'c'" in str(e.value)
    ok = SimpleNamespace(
        submission_id="radas-u-1",
        job_id=None,
        metadata={"radas_experiment_path": "/r/u/e", "radas_run_id": "0123456789ab"},
    )
    assert checked_run_id(ok, experiment_path="/r/u/e", cluster="c") == "0123456789ab"
