"""The radas flow on a local Ray and a Prefect API, beyond the cases of test_flow_targets.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ray import tune

from radas_flows import Tuner, run_experiment, run_experiment_sync
from radas_flows.errors import ExperimentStateError
from tests import trainables_for_tests as t

pytestmark = pytest.mark.usefixtures("radas_env")


def run(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        user_name="tester",
        trainable=t.returning,
        experiment_name="flow",
        param_space={"a": tune.grid_search([1, 2, 3]), "b": 10},
        run_choice="run",
    )
    kwargs.update(overrides)
    return asyncio.run(run_experiment(**kwargs))


def counts(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_reporting_and_session_and_class_trainables(workdir: Path) -> None:
    reported = run(
        trainable=t.reporting,
        experiment_name="reporting",
        param_space={"a": tune.grid_search([1, 2])},
    )["df"]
    # Every reported row is there: 2 trials x 3 epochs.
    assert len(reported) == 6
    assert reported.groupby("config/a")["score"].max().to_dict() == {1: 3, 2: 6}

    session_df = run(
        trainable=t.session_reporting,
        experiment_name="session",
        param_space={"a": tune.grid_search([5])},
    )["df"]
    assert session_df["score"].tolist() == [5, 6, 7]

    class_df = run(
        trainable=t.Counter,
        experiment_name="class",
        param_space={"a": tune.grid_search([1.0, 2.0])},
    )["df"]
    assert class_df.groupby("config/a")["score"].max().to_dict() == {1.0: 3.0, 2.0: 6.0}


def test_sync_wrapper_and_direct_flow_call(workdir: Path) -> None:
    from radas_flows.flows import radas

    results = run_experiment_sync(
        user_name="tester",
        trainable=t.returning,
        experiment_name="sync",
        param_space={"a": tune.grid_search([4])},
        run_choice="run",
    )
    assert results["df"]["score"].tolist() == [4]
    # A reference from the flow's parameters names a module of the project (the working
    # directory): the project exposes the test trainable by importing it.
    (workdir / "direct_call_trainables.py").write_text(
        "from tests.trainables_for_tests import returning\n"
    )
    direct = radas(
        user_name="tester",
        trainable="direct_call_trainables:returning",
        experiment_name="direct",
        param_space={"a": tune.grid_search([7])},
        run_choice="run",
    )
    assert direct["df"]["score"].tolist() == [7]


def test_analyze_only_without_results_is_a_clear_error(workdir: Path) -> None:
    with pytest.raises(ExperimentStateError, match=r"dos=\['analyze'\] found no stored results"):
        run(experiment_name="never-ran", dos=["analyze"], run_choice=None)


def test_run_choice_run_replaces_and_restore_keeps(workdir: Path) -> None:
    count_file = workdir / "count.txt"
    space = {"a": tune.grid_search([1, 2]), "count_file": str(count_file)}
    run(experiment_name="choice", param_space=space)
    assert sorted(counts(count_file)) == ["1", "2"]
    # run_choice=None on an existing experiment, without a terminal: a clear error.
    with pytest.raises(ExperimentStateError, match=r"run_choice=None: set run_choice to 'run'"):
        run(experiment_name="choice", param_space=space, run_choice=None)
    # yes=True confirms the default answer, restore: finished trials do not run again.
    restored = run(experiment_name="choice", param_space=space, run_choice=None, yes=True)
    assert restored["tuner"].num_trials == 2
    assert sorted(counts(count_file)) == ["1", "2"]
    # run replaces the experiment: everything runs again, and only once.
    run(experiment_name="choice", param_space={**space, "a": tune.grid_search([3])})
    assert sorted(counts(count_file)) == ["1", "2", "3"]
    assert run(experiment_name="choice", dos=["analyze"], run_choice=None)["df"][
        "config/a"
    ].tolist() == [3]


def test_restore_without_experiment_is_a_clear_error(workdir: Path) -> None:
    with pytest.raises(
        ExperimentStateError, match=r"run_choice='restore' found nothing to restore"
    ):
        run(experiment_name="nothing-here", run_choice="restore")


def test_restore_after_the_driver_process_is_killed(workdir: Path) -> None:
    count_file = workdir / "count.txt"
    (workdir / "interrupted.py").write_text(
        textwrap.dedent(f"""
        import asyncio
        from ray import tune
        from radas_flows import run_experiment
        from tests.trainables_for_tests import slow
        asyncio.run(run_experiment(
            user_name="tester", trainable=slow, experiment_name="killed",
            param_space={{"a": tune.grid_search(list(range(8))), "sleep": 1.5,
                          "count_file": {str(count_file)!r}}},
            run_choice="run", dos=["run"]))
    """)
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "PREFECT_HOME": str(workdir / "prefect-home"),  # not the machine's ~/.prefect
    }
    proc = subprocess.Popen(
        [sys.executable, "interrupted.py"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while len(counts(count_file)) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert len(counts(count_file)) >= 3, "the interrupted run never started its trials"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray and its Prefect server
        proc.wait()
    restored = run(
        trainable=t.slow,
        experiment_name="killed",
        param_space={
            "a": tune.grid_search(list(range(8))),
            "sleep": 1.5,
            "count_file": str(count_file),
        },
        run_choice="restore",
    )
    assert restored["tuner"].num_errors == 0
    assert sorted(restored["df"]["config/a"]) == list(range(8))


def test_analysis_options(workdir: Path) -> None:
    import matplotlib.figure
    import seaborn as sns

    seen: dict[str, Any] = {}

    def to_df(tuner: Tuner) -> pd.DataFrame:
        seen["tuner"] = tuner
        return tuner.get_brief_dataframe()

    def process_df(df: pd.DataFrame, factor: int) -> pd.DataFrame:
        return df.assign(scaled=df["score"] * factor)

    def process_sns(sns_module: Any) -> Any:
        seen["sns"] = sns_module
        sns_module.set_theme(style="ticks")
        return sns_module

    def process_g(g: Any) -> Any:
        seen["g"] = g
        g.set(title="custom title")
        return g

    results = run(
        trainable=t.reporting,
        experiment_name="analysis",
        param_space={"a": tune.grid_search([1, 2])},
        tuner_to_df_fn=to_df,
        process_df_fn=process_df,
        process_df_fn_kwargs={"factor": 3},
        rename_mapping={"config/a": "a"},
        process_sns_fn=process_sns,
        plot_fn=sns.lineplot,
        plot_kwargs=dict(x="training_iteration", y="scaled", hue="a"),
        matplotlib_rcParams_update={"figure.figsize": (3.0, 2.0)},
        process_g_fn=process_g,
        plot_format="svg",
    )
    df, fig = results["df"], results["fig"]
    assert seen["tuner"] is results["tuner"] and seen["sns"] is sns
    assert "a" in df.columns and "config/a" not in df.columns
    assert (df["scaled"] == df["score"] * 3).all()
    assert isinstance(fig, matplotlib.figure.Figure)
    assert tuple(fig.get_size_inches()) == (3.0, 2.0)
    assert fig.axes[0].get_title() == "custom title"
    svg = Path(results["tuner"].experiment_path) / "radas_figure.svg"
    assert svg.read_text().lstrip().startswith("<?xml")


def test_figure_level_plot_function(workdir: Path) -> None:
    import matplotlib.figure
    import seaborn as sns

    results = run(
        trainable=t.reporting,
        experiment_name="relplot",
        param_space={"a": tune.grid_search([1, 2])},
        plot_fn=sns.relplot,
        plot_kwargs=dict(x="training_iteration", y="score", col="config/a", kind="line"),
        plot_format="png",
    )
    assert isinstance(results["fig"], matplotlib.figure.Figure)
    assert len(results["fig"].axes) == 2
    png = Path(results["tuner"].experiment_path) / "radas_figure.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_failing_plot_keeps_the_table_and_names_the_fix(workdir: Path) -> None:
    import seaborn as sns

    from radas_flows.errors import RadasError

    with pytest.raises(RadasError, match=r"Plotting failed .* re-run with dos=\['analyze'\]"):
        run(
            experiment_name="badplot",
            plot_fn=sns.lineplot,
            plot_kwargs=dict(x="no_such_column", y="score"),
        )
    again = run(experiment_name="badplot", dos=["analyze"], run_choice=None)
    assert sorted(again["df"]["score"]) == [10, 20, 30]


def test_search_algorithm_and_scheduler_through_tuner_init_kwargs(workdir: Path) -> None:
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    results = run(
        trainable=t.reporting,
        experiment_name="optuna",
        param_space={"a": tune.uniform(0.0, 1.0), "epochs": 4},
        tuner_init_kwargs=dict(
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(),
                scheduler=ASHAScheduler(grace_period=1, max_t=4),
                num_samples=4,
                metric="score",
                mode="max",
            ),
            run_config=tune.RunConfig(stop={"training_iteration": 3}),
        ),
    )
    df = results["df"]
    assert df["trial_id"].nunique() == 4
    assert df["training_iteration"].max() <= 3  # the user's stop criterion reached Tune
    assert df["config/a"].between(0.0, 1.0).all()


def test_runtime_env_vars_reach_local_trials(workdir: Path) -> None:
    results = run(
        trainable=t.env_reader,
        experiment_name="runtime-env",
        param_space={"a": tune.grid_search([1])},
        runtime_env={"env_vars": {"RADAS_TEST_MARKER": "hello"}, "excludes": ["*.log"]},
    )
    assert results["df"]["marker"].tolist() == ["hello"]


def test_a_local_ray_holding_lost_resources_is_restarted(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    from radas_flows.targets import local as submission
    from tests.prefect_reads import latest_flow_run, logs_of

    run(experiment_name="warm-up", param_space={"a": 1})
    assert ray.is_initialized()
    monkeypatch.setattr(submission, "RELEASE_WAIT_S", 2.0)
    # A CPU reserved with nothing of radas running: what a worker that dies abnormally under a
    # memory limit can leave behind. A trial that needs both CPUs would then wait forever.
    reserved = ray.util.placement_group([{"CPU": 1}])
    ray.get(reserved.ready(), timeout=60)
    assert submission.held_resources() == {"CPU": 1.0}

    results = run(experiment_name="whole-machine", param_space={"a": 3}, cpu_per_trial=2)
    assert results["df"]["score"].tolist() == [3]  # a 2-CPU trial ran on the 2-CPU machine
    logs = logs_of(latest_flow_run().id)
    assert any("still holds 1 CPU" in line and "restarting it" in line for line in logs), logs
