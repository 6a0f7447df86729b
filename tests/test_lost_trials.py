"""Lost workers run again, errors of the trial's code do not; a user FailureConfig is kept."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from ray import tune

from radas_flows._lost_trials import LOST_TRIAL_RETRIES, failure_config, retries_from_env
from radas_flows.driver import DriverSpec, run_driver
from radas_flows.errors import RadasValueError
from radas_flows.targets.local import ensure_local_ray
from radas_flows.tuner import Tuner
from tests.trainables_for_tests import lost_once_or_failing


def test_a_user_failure_config_is_kept_and_the_default_retries_lost_trials() -> None:
    mine = tune.FailureConfig(max_failures=5)
    assert failure_config(mine, LOST_TRIAL_RETRIES) is mine
    default = tune.RunConfig().failure_config  # what a RunConfig holds when given none
    assert failure_config(default, LOST_TRIAL_RETRIES).max_failures == LOST_TRIAL_RETRIES
    assert failure_config(default, 0) is default  # a local run: Tune's default
    assert retries_from_env({}) == LOST_TRIAL_RETRIES
    assert retries_from_env({"RADAS_LOST_TRIAL_RETRIES": "0"}) == 0
    with pytest.raises(RadasValueError, match=r"RADAS_LOST_TRIAL_RETRIES='two' must be a whole"):
        retries_from_env({"RADAS_LOST_TRIAL_RETRIES": "two"})


def _sweep(tmp_path: Path, name: str, run_config: object = None) -> tuple[Tuner, Counter[int]]:
    ensure_local_ray({})
    marks = tmp_path / name
    marks.mkdir()
    spec = DriverSpec(
        trainable=lost_once_or_failing,
        param_space={"a": tune.grid_search([0, 1]), "marks": str(marks)},
        tuner_init_kwargs={"run_config": run_config} if run_config else {},
        storage_path=str(tmp_path / "results"),
        name=name,
        resources={"cpu": 1},
        run_id=name,
    )
    tuner = Tuner(run_driver(spec, lost_trial_retries=LOST_TRIAL_RETRIES))
    return tuner, Counter(int(p.name.split("-")[1]) for p in marks.iterdir())


@pytest.mark.usefixtures("radas_env")
def test_a_lost_worker_runs_again_and_an_error_of_the_trial_does_not(tmp_path: Path) -> None:
    tuner, ran = _sweep(tmp_path, "default")
    outcomes = {o["config"]["a"]: o for o in tuner.trial_outcomes()}
    assert outcomes[0]["status"] == "TERMINATED" and ran[0] == 2  # lost once, then completed
    assert outcomes[1]["status"] == "ERROR" and ran[1] == 1  # its code failed: not run again
    assert "ValueError: the trial's own error for a=1" in outcomes[1]["error"]
    # The user's FailureConfig is used as Tune uses it: it retries the trial's own error too.
    mine = tune.RunConfig(failure_config=tune.FailureConfig(max_failures=1))
    tuner, ran = _sweep(tmp_path, "user", mine)
    outcomes = {o["config"]["a"]: o for o in tuner.trial_outcomes()}
    assert outcomes[0]["status"] == "TERMINATED" and outcomes[1]["status"] == "ERROR"
    assert ran == Counter({0: 2, 1: 2})
