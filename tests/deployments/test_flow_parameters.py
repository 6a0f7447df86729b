"""The radas flow's JSON parameters, its schema, the experiment lock, the nightly helpers."""

from __future__ import annotations

import base64
import contextvars
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments import nightly as suite
from radas_flows.concurrency import (
    ExperimentBusyError,
    busy_message,
    experiment_lock,
    experiment_lock_name,
    lock_wait_seconds,
)
from radas_flows.errors import RadasValueError
from radas_flows.flows import radas, run_tags
from radas_flows.inputs.flow_params import spec_arguments
from radas_flows.inputs.plot_settings import PlotSettings
from radas_flows.inputs.rules import ParameterError
from radas_flows.inputs.tuner_settings import TunerSettings
from tests import trainables_for_tests as t

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# JSON parameters → build_spec arguments
# ---------------------------------------------------------------------------------------------


def test_json_parameters_become_tune_objects() -> None:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    args = spec_arguments(
        {
            "param_space": {"lr": {"loguniform": [1e-4, 1e-1]}, "n": 3},
            "tuner": {"num_samples": 4, "metric": "score", "mode": "max", "search_alg": "optuna"},
            "plot": {"fn": "lineplot", "kwargs": {"x": "epoch", "y": "score"}, "format": "svg"},
            "process_df_fn": "tests.trainables_for_tests:returning",
        }
    )
    assert "tuner" not in args and "plot" not in args
    assert type(args["param_space"]["lr"]).__name__ == "Float" and args["param_space"]["n"] == 3
    config = args["tuner_init_kwargs"]["tune_config"]
    assert isinstance(config, tune.TuneConfig) and isinstance(config.search_alg, OptunaSearch)
    assert (config.num_samples, config.metric, config.mode) == (4, "score", "max")
    import seaborn

    assert args["plot_fn"] is seaborn.lineplot
    assert args["plot_kwargs"] == {"x": "epoch", "y": "score"}
    assert args["plot_format"] == "svg"
    assert args["process_df_fn"] is t.returning


def test_python_objects_pass_through_unchanged() -> None:
    import seaborn
    from ray import tune

    domain = tune.uniform(0, 1)
    tune_config = tune.TuneConfig(num_samples=2)
    given = {
        "trainable": t.returning,
        "param_space": {"x": domain, "g": tune.grid_search([1, 2])},
        "tuner": TunerSettings(),  # all defaults: tuner_init_kwargs decides
        "tuner_init_kwargs": {"tune_config": tune_config},
        "plot_fn": seaborn.barplot,
        "plot_kwargs": {"x": "config/g"},
    }
    args = spec_arguments(given)
    assert args["trainable"] is t.returning
    assert args["param_space"]["x"] is domain
    assert args["param_space"]["g"] == {"grid_search": [1, 2]}
    assert args["tuner_init_kwargs"]["tune_config"] is tune_config
    assert args["plot_fn"] is seaborn.barplot
    # The seaborn name works for plot_fn too (JSON without `plot`).
    assert spec_arguments({"plot_fn": "barplot"})["plot_fn"] is seaborn.barplot


@pytest.mark.parametrize(
    ("parameters", "match"),
    [
        (
            {"tuner": {"num_samples": 2}, "tuner_init_kwargs": {"tune_config": object()}},
            r"tuner and tuner_init_kwargs are both given",
        ),
        (
            {"tuner_init_kwargs": {"tune_config": {"num_samples": 2}}},
            r"tuner_init_kwargs takes ray\.tune\.TuneConfig .* give `tuner` instead",
        ),
        (
            {"plot": {"fn": "lineplot"}, "plot_kwargs": {"x": "a"}},
            r"plot and plot_kwargs are both given",
        ),
        ({"tuner": {"metric": "score"}}, r"tuner: Value error, metric is set without mode"),
        ({"plot": {"fn": "lineplt"}}, r"plot\.fn: Input should be 'relplot'"),
        ({"param_space": {"x": {"uniform": [2, 1]}}}, r'param_space\.x: "uniform" needs lo < hi'),
        ({"param_space": [1, 2]}, r"param_space: must be a JSON object"),
        ({"plot_fn": "lineplt"}, r"plot_fn='lineplt' is neither a seaborn .*\"lineplot\""),
        ({"process_df_fn": "nope"}, r"process_df_fn='nope' is not a 'module:attribute'"),
        (
            {"process_df_fn": "tests.trainables_for_tests:missing"},
            r"process_df_fn='tests\.trainables_for_tests:missing': .* has no attribute 'missing'",
        ),
        (
            {"process_g_fn": "tests.trainables_for_tests:NOT_A_FUNCTION"},
            r"process_g_fn='tests\.trainables_for_tests:NOT_A_FUNCTION' names a str, not a func",
        ),
        (
            {"process_g_fn": "os:sep"},
            r"process_g_fn='os:sep': module 'os' is the standard library, not code of the project",
        ),
        ({"process_sns_fn": 3}, r"process_sns_fn=3 is not a function"),
    ],
)
def test_conflicts_and_bad_values_name_the_field(parameters: dict[str, Any], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        spec_arguments(parameters)
    assert issubclass(ParameterError, RadasValueError)


# ---------------------------------------------------------------------------------------------
# The flow's parameter schema (what the UI's run form and the server check)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(radas).model_dump_for_openapi()


def test_schema_renders_every_parameter_with_a_description(schema: dict[str, Any]) -> None:
    import inspect

    props = schema["properties"]
    assert list(props) == list(inspect.signature(radas.fn).parameters)
    assert schema["required"] == ["trainable", "experiment_name"]  # user_name: the OS user
    for name, prop in props.items():
        assert prop.get("description"), name
    assert list(props)[:7] == [
        "user_name", "trainable", "experiment_name", "run_with", "param_space", "tuner", "plot"
    ]  # fmt: skip
    assert props["trainable"]["type"] == "string"
    assert re.fullmatch(props["run_with"]["pattern"], "cluster:atol-gpu-5090")
    assert not re.fullmatch(props["run_with"]["pattern"], "gpu-5090")
    for auto in ("auto", "auto:atol-gpu-5090,gcp-cpu", "auto:local,gcp-cpu"):
        assert re.fullmatch(props["run_with"]["pattern"], auto), auto
    assert not re.fullmatch(props["run_with"]["pattern"], "auto:")
    assert props["min_gpu_memory_gb"]["anyOf"][0]["exclusiveMinimum"] == 0
    assert props["run_choice"]["anyOf"][0]["enum"] == ["run", "restore", "attach", "stop_attach"]
    assert props["dos"]["anyOf"][0]["items"]["enum"] == ["run", "analyze"]
    assert props["cpu_per_trial"]["exclusiveMinimum"] == 0
    assert props["tuner"]["default"]["num_samples"] == 1  # the form opens on the settings
    assert props["param_space"]["default"] == {}
    assert {"TunerSettings", "PlotSettings"} <= set(schema["definitions"])
    for hook in ("tuner_to_df_fn", "process_df_fn", "process_sns_fn", "plot_fn", "process_g_fn"):
        assert props[hook]["anyOf"] == [{"type": "string"}, {"type": "null"}]


def test_schema_is_valid_json_schema_for_a_json_run(schema: dict[str, Any]) -> None:
    import jsonschema

    good = {
        "user_name": "u",
        "trainable": "train:trainable",
        "experiment_name": "x",
        "param_space": {"lr": {"loguniform": [1e-4, 1e-1]}},
        "tuner": {"num_samples": 2, "scheduler": "asha", "metric": "s", "mode": "max"},
        "plot": {"fn": "relplot", "kwargs": {"x": "a"}},
        "dos": ["run"],
    }
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError, match=r"'lineplt' is not one of"):
        jsonschema.validate({**good, "plot": {"fn": "lineplt"}}, schema)
    with pytest.raises(jsonschema.ValidationError, match=r"0 is less than the minimum of 1"):
        jsonschema.validate({**good, "tuner": {"num_samples": 0}}, schema)


def test_flow_validation_accepts_json_and_python_objects() -> None:
    from ray import tune

    validated = radas.validate_parameters(
        {
            "user_name": "u",
            "trainable": "train:trainable",
            "experiment_name": "x",
            "tuner": {"num_samples": 2},
            "plot": {"fn": "lineplot"},
        }
    )
    assert isinstance(validated["tuner"], TunerSettings)
    assert isinstance(validated["plot"], PlotSettings)
    domain = tune.uniform(0, 1)
    config = tune.TuneConfig()
    python = radas.validate_parameters(
        {
            "user_name": "u",
            "trainable": t.returning,
            "experiment_name": "x",
            "param_space": {"x": domain},
            "tuner_init_kwargs": {"tune_config": config},
            "process_df_fn": t.returning,
        }
    )
    assert python["trainable"] is t.returning
    assert python["param_space"]["x"] is domain
    assert python["tuner_init_kwargs"]["tune_config"] is config


def test_flow_validation_names_each_bad_field() -> None:
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError) as info:
        radas.validate_parameters(
            {
                "user_name": "u",
                "trainable": "train",
                "experiment_name": "",
                "run_with": "gpu",
                "param_space": {"lr": {"loguniform": [0, 1]}},
                "tuner": {"scheduler": "asha"},
                "cpu_per_trial": 0,
            }
        )
    message = str(info.value)
    assert "trainable: Value error, trainable='train' is not a 'module:attribute'" in message
    assert "experiment_name: String should have at least 1 character" in message
    assert "run_with: String should match pattern" in message
    assert 'param_space.lr: "loguniform" samples on a log scale' in message
    assert "param_space grammar:" in message
    assert "tuner: Value error, scheduler 'asha' needs metric and mode" in message
    assert "cpu_per_trial: Input should be greater than 0" in message


def test_run_tags_carry_user_cluster_and_experiment() -> None:
    from radas_flows.inputs.spec import build_spec

    local = build_spec(user_name="u", trainable=t.returning, experiment_name="lr sweep")
    assert run_tags(local) == ["radas", "user:u", "cluster:local", "experiment:lr sweep"]
    cluster = build_spec(
        user_name="u", trainable=t.returning, experiment_name="x", run_with="cluster:gpu-1"
    )
    assert "cluster:gpu-1" in run_tags(cluster)


# ---------------------------------------------------------------------------------------------
# One run per experiment
# ---------------------------------------------------------------------------------------------


def test_lock_names_and_wait_settings() -> None:
    name = experiment_lock_name("u", "_home_u_p_lr", "lr")
    assert name == experiment_lock_name("u", "_home_u_p_lr", "lr")
    assert re.fullmatch(r"radas-u-lr-[0-9a-f]{10}", name)
    assert name != experiment_lock_name("u", "_home_u_q_lr", "lr")  # another directory
    assert name != experiment_lock_name("v", "_home_u_p_lr", "lr")  # another user
    assert lock_wait_seconds({}) == 0
    assert lock_wait_seconds({"RADAS_EXPERIMENT_LOCK_WAIT_S": "2.5"}) == 2.5
    assert lock_wait_seconds({"RADAS_EXPERIMENT_LOCK_WAIT_S": "inf"}) is None
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(RadasValueError, match="RADAS_EXPERIMENT_LOCK_WAIT_S="):
            lock_wait_seconds({"RADAS_EXPERIMENT_LOCK_WAIT_S": bad})
    text = busy_message("lr", "u", name, ["'lr' (id 7)"], 5)
    assert "already running in flow run 'lr' (id 7) (waited 5 s)" in text


def _hold(ready: threading.Event, release: threading.Event, **lock: Any) -> None:
    with experiment_lock(**lock):
        ready.set()
        release.wait(30)


@pytest.mark.usefixtures("prefect_api")
def test_experiment_lock_on_a_real_prefect_api() -> None:
    lock = dict(user_name="u", full_name="_p_locktest", experiment_name="locktest", tags=[])
    ready, release = threading.Event(), threading.Event()
    # The test API lives in Prefect's settings context: give the thread a copy of it.
    context = contextvars.copy_context()
    holder = threading.Thread(target=context.run, args=(_hold, ready, release), kwargs=lock)
    holder.start()
    try:
        assert ready.wait(60)
        busy = pytest.raises(ExperimentBusyError, match=r"Experiment 'locktest' of user 'u' is")
        with busy, experiment_lock(**lock, wait_s=0):
            pass
        with experiment_lock(**{**lock, "full_name": "_p_other"}, wait_s=0) as other:
            assert other.startswith("radas-u-locktest-")  # another experiment runs alongside
        started = time.monotonic()
        waited = pytest.raises(ExperimentBusyError, match=r"\(waited 1\.5 s\)")
        with waited, experiment_lock(**lock, wait_s=1.5):
            pass
        assert time.monotonic() - started >= 1.4
        threading.Timer(1.0, release.set).start()
        with experiment_lock(**lock, wait_s=30):  # waits for the first to finish
            assert release.is_set()
    finally:
        release.set()
        holder.join(30)


# ---------------------------------------------------------------------------------------------
# The nightly suite's decisions
# ---------------------------------------------------------------------------------------------


def test_night_is_the_scheduled_date_in_the_schedules_time_zone() -> None:
    late = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    assert suite.night_of(late, "Europe/Paris") == "2026-11-24"
    assert suite.night_of(late, "UTC") == "2026-11-23"
    assert suite.night_of(late, "America/New_York") == "2026-11-23"


def test_nightly_parameters_date_the_name_and_start_fresh() -> None:
    preset = suite.load_preset(ROOT / "deployments/presets/two_moons_lr.json")
    params = suite.nightly_parameters(preset, "2026-11-24", user_name="ops")
    assert params["experiment_name"] == "two-moons-lr-2026-11-24"
    assert params["run_choice"] == "run" and params["user_name"] == "ops"
    assert preset["experiment_name"] == "two-moons-lr"  # the preset is not changed
    with pytest.raises(suite.SuiteError, match=r"preset sets \['run_choice'\]"):
        suite.nightly_parameters({**preset, "run_choice": "restore"}, "2026-11-24")


@pytest.mark.parametrize("path", sorted((ROOT / "deployments/presets").glob("*.json")))
def test_shipped_presets_are_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    suite.validate_preset(suite.nightly_parameters(suite.load_preset(path), "2026-01-01"))


def test_bad_presets_are_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.exceptions import ParameterTypeError

    monkeypatch.chdir(ROOT)
    with pytest.raises(suite.SuiteError, match=r"preset 'missing\.json' not found in"):
        suite.load_preset("missing.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(suite.SuiteError, match=r"must hold a JSON object"):
        suite.load_preset(tmp_path / "list.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(suite.SuiteError, match=r"is not valid JSON"):
        suite.load_preset(tmp_path / "broken.json")
    bad = {"user_name": "u", "trainable": "tests.trainables_for_tests:returning",
           "experiment_name": "b", "param_space": {"x": {"randint": [1.5, 3]}}}  # fmt: skip
    with pytest.raises(ParameterTypeError, match=r'param_space\.x: "randint" takes \[lo, hi\]'):
        suite.validate_preset(suite.nightly_parameters(bad, "2026-01-01"))


def test_best_row_and_suite_report() -> None:
    rows = [{"score": "2", "a": "1"}, {"score": "nan"}, {"score": "7", "a": "2"}, {}]
    assert suite.best_row(rows, "score", "max") == {"score": "7", "a": "2"}
    assert suite.best_row(rows, "score", "min") == {"score": "2", "a": "1"}
    assert suite.best_row([{"score": "x"}], "score", "max") is None
    report = suite.suite_markdown(
        "2026-11-24",
        [
            {"experiment": "a-2026-11-24", "state": "COMPLETED", "flow_run": "a-2026-11-24",
             "best": {"metric": "score", "value": "7"}},
            {"experiment": "b-2026-11-24", "state": "FAILED", "flow_run": "b-2026-11-24",
             "best": None},
        ],
    )  # fmt: skip
    assert "| a-2026-11-24 | COMPLETED | score = 7 | a-2026-11-24 |" in report
    assert "| b-2026-11-24 | FAILED |  | b-2026-11-24 |" in report
    assert "Resources used" not in report  # no experiment stated any usage
    usage = {"cluster": "gpu-a", "cpu_hours": 0.5, "gpu_hours": 0.25, "oom_gpu_hours": 0.025}
    night = suite.suite_markdown(
        "2026-11-24",
        [
            {"experiment": "a", "state": "COMPLETED", "flow_run": "a", "usage": [usage]},
            {"experiment": "b", "state": "COMPLETED", "flow_run": "b", "usage": [usage]},
        ],
    )
    assert "## Resources used on 2026-11-24" in night
    assert "| gpu-a | 1 | 0.5 | 10.0% |" in night  # summed over the night's two sweeps


# ---------------------------------------------------------------------------------------------
# prefect.yaml and the figure artifact
# ---------------------------------------------------------------------------------------------


def test_prefect_yaml_declares_the_sweep_and_the_nightly_schedule() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (pull,) = config["pull"]
    assert pull == {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}
    deployments = {d["name"]: d for d in config["deployments"]}
    sweep, nightly = deployments["sweep"], deployments["nightly"]
    assert sweep["entrypoint"] == "deployments/sweep.py:radas"
    from prefect.flows import load_flow_from_entrypoint

    assert load_flow_from_entrypoint(str(ROOT / sweep["entrypoint"])) is radas  # radas/sweep
    (schedule,) = nightly["schedules"]
    assert schedule["cron"] == "30 2 * * *" and schedule["timezone"] == "Europe/Paris"
    assert nightly["parameters"]["timezone"] == schedule["timezone"]
    for preset in nightly["parameters"]["presets"]:
        assert (ROOT / preset).is_file()
    for deployment in deployments.values():
        assert deployment["work_pool"]["name"] == "radas-process"
        assert deployment["enforce_parameter_schema"] is True


def test_figure_markdown_embeds_a_png() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from radas_flows._artifacts import figure_markdown

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    text = figure_markdown(fig, "lr sweep", "/r/u/x/radas_figure.svg")
    plt.close(fig)
    encoded = re.search(r"!\[lr sweep\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert encoded is not None
    assert base64.b64decode(encoded.group(1))[:4] == b"\x89PNG"
    assert text.startswith("# lr sweep\n") and "Saved as `/r/u/x/radas_figure.svg`" in text


def test_the_figure_artifact_shows_the_preview_the_analysis_drew() -> None:
    """The analysis draws the preview PNG once; the figure's artifact shows those bytes once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from radas_flows._artifacts import draw_png, figure_markdown

    def shown(text: str) -> bytes:
        encoded = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
        assert encoded is not None
        return base64.b64decode(encoded.group(1))

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    preview = draw_png(fig, dpi=80)
    ax.plot([1, 2], [4, 3])  # drawn afterwards: not in the preview
    assert shown(figure_markdown(fig, "x")) == preview
    again = shown(figure_markdown(fig, "x"))  # kept for one artifact only: drawn anew
    plt.close(fig)
    assert again != preview and again[:4] == b"\x89PNG"
