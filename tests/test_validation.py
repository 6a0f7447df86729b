"""Bad input gets a clear error naming the value and the fix, before Prefect or Ray start."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest

from radas_flows import run_experiment
from radas_flows.errors import RadasValueError
from radas_flows.inputs.rules import RUN_WITH_PATTERN, RunTarget, parse_run_with
from radas_flows.inputs.runtime_env import (
    LOCAL_RUNTIME_ENV_KEYS,
    RUNTIME_ENV_KEYS,
    check_runtime_env,
    local_runtime_env,
)
from radas_flows.inputs.spec import build_spec, check_dos, sanitize_experiment_name
from tests.trainables_for_tests import returning


def run(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        user_name="tester",
        trainable=returning,
        experiment_name="validation",
        param_space={"a": 1},
        run_choice="run",
    )
    kwargs.update(overrides)
    return asyncio.run(run_experiment(**kwargs))


@pytest.fixture(autouse=True)
def private_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "results"
    monkeypatch.setenv("RADAS_RESULTS_ROOT", str(root))
    monkeypatch.setenv("RADAS_LOCAL_NUM_CPUS", "2")
    return root


def assert_nothing_started(root: Path) -> None:
    # Nothing was submitted: no results folder exists for the user.
    assert not (root / "tester").exists()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            {"run_with": "cluster"},
            r"run_with='cluster' is not valid: use 'local' or 'cluster:<name>'",
        ),
        ({"run_with": "cluster:"}, r"run_with='cluster:' is not valid"),
        ({"run_with": "gpu-5090"}, r"run_with='gpu-5090' is not valid"),
        ({"experiment_name": ""}, r"experiment_name='' is empty"),
        ({"experiment_name": "   "}, r"experiment_name='   ' is empty"),
        ({"dos": ["run", "plot"]}, r"dos contains unknown entry \['plot'\]"),
        ({"dos": []}, r"dos=\[\] is not valid"),
        ({"dos": "run"}, r"dos='run' is not valid"),
        ({"run_choice": "fresh"}, r"run_choice='fresh' is not valid: use one of 'run', 'restore'"),
        ({"run_choice": "attach"}, r"run_choice='attach' only applies to cluster runs"),
        ({"run_choice": "stop_attach"}, r"run_choice='stop_attach' only applies to cluster runs"),
        ({"trainable": 42}, r"trainable=42 is not a trainable"),
        ({"trainable": "no_colon"}, r"trainable='no_colon' is not a 'module:attribute' reference"),
        (
            {"plot_format": "docx"},
            r"plot_format='docx' cannot be written by matplotlib: use one of",
        ),
        ({"cpu_per_trial": 0}, r"cpu_per_trial=0 must be greater than 0"),
        ({"cpu_per_trial": -1}, r"cpu_per_trial=-1 must be greater than 0"),
        ({"cpu_per_trial": 3}, r"cpu_per_trial=3 is more than the local CPUs \(2\)"),
        ({"cpu_per_trial": "2"}, r"cpu_per_trial='2' is not a number"),
        ({"user_name": "../etc"}, r"Invalid user_name '../etc': use 1-64 characters"),
        ({"runtime_env": {"working_dir": "."}}, r"runtime_env\['working_dir'\] must not be set"),
        (
            {"runtime_env": {"image_uri": "ray:2.60"}},
            r"runtime_env key\(s\) \['image_uri'\] need a cluster",
        ),
        ({"runtime_env": {"envvars": {}}}, r"runtime_env has unknown key\(s\) \['envvars'\]"),
        ({"tuner_init_kwargs": {"param_space": {}}}, r"tuner_init_kwargs has unknown key"),
        ({"plot_fn": "lineplot"}, r"plot_fn='lineplot' is not callable"),
        ({"process_df_fn": 3}, r"process_df_fn=3 is not callable"),
        ({"email_notification_to_address": "nobody"}, r"email_notification_to_address='nobody'"),
    ],
)
def test_bad_input_fails_before_anything_runs(
    overrides: dict[str, Any], match: str, private_root: Path
) -> None:
    with pytest.raises(RadasValueError, match=match):
        run(**overrides)
    assert_nothing_started(private_root)


def test_ray_train_run_config_is_rejected_with_the_fix(private_root: Path) -> None:
    from ray import train

    with pytest.raises(RadasValueError, match=r"must be a ray.tune.RunConfig"):
        run(tuner_init_kwargs={"run_config": train.RunConfig()})
    assert_nothing_started(private_root)


def test_experiment_name_is_prefixed_with_the_cwd_and_sanitized() -> None:
    assert (
        sanitize_experiment_name("my-experiment", cwd="/mnt/data/home/user/project")
        == "_mnt_data_home_user_project_my_experiment"
    )
    assert sanitize_experiment_name("a b.c", cwd="/x") == "_x_a_b_c"


def test_experiment_name_uses_the_real_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = build_spec(user_name="u", trainable=returning, experiment_name="lr sweep")
    assert spec.full_name.startswith("_") and spec.full_name.endswith("_lr_sweep")
    assert spec.full_name == "".join(c if c.isalnum() else "_" for c in f"{os.getcwd()}/lr sweep")


def test_run_with_and_dos_parsing() -> None:
    assert parse_run_with("local") == RunTarget("local")
    target = parse_run_with("cluster:atol-gpu-5090")
    assert (target.kind, target.cluster, str(target)) == (
        "cluster",
        "atol-gpu-5090",
        "cluster:atol-gpu-5090",
    )
    auto = parse_run_with("auto:gpu-a,local")
    assert (auto.kind, auto.candidates, str(auto)) == (
        "auto",
        ("gpu-a", "local"),
        "auto:gpu-a,local",
    )
    assert parse_run_with("auto") == RunTarget("auto")
    with pytest.raises(RadasValueError, match=r"'auto:a,a' is not valid.*each once"):
        parse_run_with("auto:a,a")
    assert check_dos(["analyze", "run"]) == ("run", "analyze")
    with pytest.raises(RadasValueError, match="repeats"):
        check_dos(["run", "run"])


@pytest.mark.parametrize(
    "run_with",
    [
        *("local", "cluster:a", "cluster:atol-gpu-5090", "cluster:", "cluster:-x", "gpu", ""),
        *("auto", "auto:a", "auto:gpu-a,local", "auto:", "auto:a,", "auto:a, b", "auto:-x"),
    ],
)
def test_run_with_has_one_rule_for_the_flow_the_spec_and_management(run_with: str) -> None:
    from radas_flows.management import cluster_name_from_run_with

    accepted = re.fullmatch(RUN_WITH_PATTERN, run_with) is not None
    try:
        target = parse_run_with(run_with)
    except RadasValueError:
        target = None
    assert (target is not None) == accepted
    if target is not None and target.cluster is not None:
        assert cluster_name_from_run_with(run_with) == target.cluster
    else:
        with pytest.raises(ValueError, match="cluster"):
            cluster_name_from_run_with(run_with)


def test_runtime_env_keys_one_list_per_placement() -> None:
    env = {"env_vars": {"A": "1"}, "excludes": ["*.log"], "py_executable": "python"}
    assert check_runtime_env(env, local=True) == env
    assert local_runtime_env(env) == env  # a local Ray keeps what the local check accepts
    assert set(LOCAL_RUNTIME_ENV_KEYS) < set(RUNTIME_ENV_KEYS)
    with pytest.raises(RadasValueError, match=r"\['nsight'\] need a cluster"):
        check_runtime_env({"nsight": "default"}, local=True)
    assert check_runtime_env({"pip": ["x"]}, local=True) == {"pip": ["x"]}  # Ray installs it
    assert check_runtime_env({"pip": ["x"]}, local=False) == {"pip": ["x"]}


def test_trainable_reference_is_resolved_from_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_trainable_mod.py").write_text("def train(config):\n    return {'s': 1}\n")
    monkeypatch.chdir(tmp_path)
    spec = build_spec(user_name="u", trainable="my_trainable_mod:train", experiment_name="x")
    assert spec.trainable.__name__ == "train"
    assert spec.trainable_ref == "my_trainable_mod:train"
    with pytest.raises(RadasValueError, match=r"module 'missing_mod' cannot be imported"):
        build_spec(user_name="u", trainable="missing_mod:train", experiment_name="x")
    with pytest.raises(RadasValueError, match=r"has no attribute 'nope'"):
        build_spec(user_name="u", trainable="my_trainable_mod:nope", experiment_name="x")


def test_cluster_only_choices_are_accepted_for_clusters() -> None:
    spec = build_spec(
        user_name="u",
        trainable=returning,
        experiment_name="x",
        run_with="cluster:c1",
        run_choice="stop_attach",
    )
    assert spec.run_choice == "stop_attach"
    assert spec.trainable_ref == "tests.trainables_for_tests:returning"
