"""What a radas user pastes: the import, Python param_space values, RunConfig, the prompt."""

from __future__ import annotations

import asyncio
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ray import tune

import radas_flows
from radas_flows.driver import DriverSpec, build_run_config
from radas_flows.errors import ExperimentStateError
from radas_flows.flows import radas
from radas_flows.inputs.flow_params import PythonParamSpace, spec_arguments
from radas_flows.inputs.rules import ParameterError
from radas_flows.inputs.tuner_settings import run_config_notes
from radas_flows.run_choice import decide_mode
from tests.oom_trainables import ship_by_value

ship_by_value(__name__)
ROOT = Path(__file__).resolve().parents[1]

# -- import radas_flows as radas -------------------------------------------------------------


def test_every_public_submodule_is_an_attribute() -> None:
    for package, names in (
        (radas_flows, radas_flows._SUBMODULES),
        (radas_flows.clusters, radas_flows.clusters._SUBMODULES),
    ):
        found = {m.name for m in pkgutil.iter_modules(package.__path__) if m.name[0] != "_"}
        assert set(names) == found, package.__name__
        assert set(names) <= set(dir(package))


def test_import_as_radas_gives_the_reference_modules_lazily() -> None:
    # A fresh interpreter: the reference's module names load on first use, nothing before.
    code = """
import sys
import radas_flows as radas
assert not {"ray", "prefect", "pandas", "boto3"} & set(sys.modules), sorted(sys.modules)
names = [
    radas.cloud_artifact.save_cloud_artifact, radas.cloud_artifact.load_cloud_artifact,
    radas.cloud_artifact.rm_cloud_artifact, radas.cloud_artifact.init,
    radas.utils.set_seed, radas.utils.config_seed, radas.utils.get_current_user_name,
    radas.utils.print_info, radas.utils.reduce_by_config_cols, radas.core.get_ray_results_dir,
    radas.email.send_email, radas.clusters.get_cluster_availability,
    radas.clusters.addresses.gpu_per_cpu, radas.clusters.addresses.cpu_per_node,
    radas.clusters.addresses.gpu_per_node, radas.rwandb.rwandb_init, radas.rswanlab,
    radas.get_data_dir, radas.get_cold_data_dir, radas.explode, radas.get_client,
    radas.run_experiment, radas.Tuner,
]
import radas_flows.cloud_artifact as rda
assert rda is radas.cloud_artifact
try:
    radas.no_such_module
except AttributeError as e:
    print(e)
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "module 'radas_flows' has no attribute 'no_such_module'"


# -- param_space: Python values as given, JSON through the grammar ----------------------------


def echo(config: dict[str, Any]) -> dict[str, Any]:
    """Report what the trial received, as JSON."""
    return {"seen": json.dumps({k: config[k] for k in ("model", "dist", "opt")}), "a": config["a"]}


SPACE: dict[str, Any] = {
    "model": {"choice": "resnet"},  # the grammar refused this
    "dist": {"uniform": [0, 1]},  # the grammar made this a search space
    "opt": {"lr": 0.1, "Uniform": "x"},  # the grammar refused a near-word as a typo
    "a": tune.grid_search([1, 2]),
}


@pytest.mark.usefixtures("radas_env")
def test_python_param_space_and_run_config_reach_tune_as_given(workdir: Path) -> None:
    from prefect.logging.handlers import APILogWorker

    from radas_flows.core import get_ray_results_dir
    from tests.prefect_reads import latest_flow_run, logs_of

    elsewhere = workdir / "my-ray-results"
    run_config = tune.RunConfig(name="mine", storage_path=str(elsewhere), verbose=0)
    results = asyncio.run(
        radas_flows.run_experiment(
            user_name="paster",
            trainable=echo,
            experiment_name="as-given",
            param_space=SPACE,
            tuner_init_kwargs=dict(run_config=run_config),
            run_choice="run",
        )
    )
    df = results["df"]
    assert sorted(df["a"]) == [1, 2]
    for seen in df["seen"]:
        assert json.loads(seen) == {
            "model": {"choice": "resnet"},
            "dist": {"uniform": [0, 1]},
            "opt": {"lr": 0.1, "Uniform": "x"},
        }

    # The RunConfig's name and storage were radas_flows's, with a warning saying so; its
    # verbose was the user's.
    assert not elsewhere.exists()
    path = results["tuner"].experiment_path
    assert path.startswith(get_ray_results_dir("paster")) and path.endswith("_as_given")
    restored = tune.Tuner.restore(path, trainable=echo)
    assert restored._local_tuner.get_run_config().verbose == 0  # type: ignore[union-attr]
    APILogWorker.drain_all(timeout=10)
    logs = "\n".join(logs_of(latest_flow_run().id))
    assert "tuner_init_kwargs['run_config'].name='mine' is not used" in logs
    assert f"tuner_init_kwargs['run_config'].storage_path='{elsewhere}' is not used" in logs
    # Prefect stores the space as the grammar describes it (shown in the UI).
    assert latest_flow_run().parameters["param_space"]["a"] == {"grid_search": [1, 2]}


def test_json_param_space_goes_through_the_grammar() -> None:
    from prefect.exceptions import ParameterTypeError

    base = {"user_name": "u", "trainable": "train:trainable", "experiment_name": "x"}
    parsed = spec_arguments({"param_space": {"dist": {"uniform": [0, 1]}}})["param_space"]
    assert type(parsed["dist"]).__name__ == "Float"
    with pytest.raises(ParameterTypeError, match=r'param_space.model: "choice" takes a list'):
        radas.validate_parameters({**base, "param_space": {"model": {"choice": "resnet"}}})
    # JSON cannot make the Python wrapper: an object shaped like it is a nested space.
    shaped = {"space": {"dist": {"uniform": [0, 1]}}}
    validated = radas.validate_parameters({**base, "param_space": shaped})["param_space"]
    assert not isinstance(validated, PythonParamSpace)
    assert (
        type(spec_arguments({"param_space": validated})["param_space"]["space"]["dist"]).__name__
        == "Float"
    )
    with pytest.raises(ParameterError, match=r"param_space: must be a JSON object"):
        spec_arguments({"param_space": [1, 2]})
    # The Python wrapper passes everything through, Tune domains included.
    domain = tune.loguniform(1e-4, 1e-1)
    wrapped = PythonParamSpace(space={**SPACE, "lr": domain})
    given = spec_arguments({"param_space": wrapped})["param_space"]
    assert given["model"] == {"choice": "resnet"} and given["lr"] is domain


# -- RunConfig fields radas_flows sets, verbose the user's -------------------------------------


def test_run_config_notes_say_what_is_used_instead(tmp_path: Path) -> None:
    import pyarrow.fs

    assert run_config_notes(None, "_p_x") == []
    assert run_config_notes(tune.RunConfig(verbose=2, stop={"a": 1}), "_p_x") == []
    notes = run_config_notes(
        tune.RunConfig(
            name="mine",
            storage_path=str(tmp_path),
            storage_filesystem=pyarrow.fs.LocalFileSystem(),
        ),
        "_p_x",
    )
    assert len(notes) == 3
    assert "names the Tune experiment after experiment_name" in notes[0] and "'_p_x'" in notes[0]
    assert (
        "<results root>/<user_name>/<experiment>" in notes[1] and "RADAS_RESULTS_ROOT" in notes[1]
    )
    assert "storage_filesystem is not used" in notes[2]


@pytest.mark.parametrize(("given", "used"), [(None, 1), (0, 0), (2, 2)])
def test_run_config_verbose_is_the_users_when_given(given: int | None, used: int) -> None:
    user = (
        tune.RunConfig(name="mine", stop={"score": 3})
        if given is None
        else tune.RunConfig(name="mine", stop={"score": 3}, verbose=given)
    )
    spec = DriverSpec(
        trainable=echo,
        param_space={},
        tuner_init_kwargs={"run_config": user},
        storage_path="/r/u",
        name="_p_x",
        resources={"cpu": 1},
    )
    built = build_run_config(spec, [])
    assert (built.verbose, built.name, built.storage_path) == (used, "_p_x", "/r/u")
    assert built.stop == {"score": 3}


# -- the "experiment exists" question -----------------------------------------------------------


def ask_with(*answers: str) -> tuple[list[str], Any]:
    asked: list[str] = []
    queue = list(answers)

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return queue.pop(0)

    return asked, ask


def decide(**kwargs: Any) -> Any:
    base: dict[str, Any] = dict(run_choice=None, exists=True, dos=("run", "analyze"), path="/r/x")
    return decide_mode(**{**base, **kwargs})


def test_a_running_job_offers_attach_and_stop_attach() -> None:
    running = dict(running=["radas-u-x-1"], cluster="gpu-a")
    asked, ask = ask_with("maybe", "s")
    assert decide(**running, interactive=True, ask=ask) == "stop_attach"
    assert len(asked) == 2  # an unknown answer asks again
    assert "radas-u-x-1" in asked[0] and "cluster 'gpu-a'" in asked[0]
    assert "[a]ttach" in asked[0] and "[s]top it" in asked[0] and "[A/s]" in asked[0]
    assert decide(**running, interactive=True, ask=ask_with("")[1]) == "attach"
    # Also before anything is stored (a job that has just started).
    assert decide(**running, exists=False, interactive=True, ask=ask_with("a")[1]) == "attach"
    assert decide(**running, yes=True) == "attach"  # yes=True: the default, loses nothing
    with pytest.raises(ExperimentStateError, match=r"'attach' \(follow it to its end\) or "):
        decide(**running, interactive=False)
    # No running job: restore or a new run, as before.
    asked, ask = ask_with("n")
    assert decide(interactive=True, ask=ask) == "run"
    assert "[r]estore" in asked[0] and "attach" not in asked[0]
    assert decide(yes=True) == "restore"
    assert decide(run_choice="run", running=["j"]) == "run"  # a given choice is not asked
