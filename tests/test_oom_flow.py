"""Out-of-memory escalation through run_experiment, on a real local Ray with real memory limits."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import seaborn as sns
from ray import tune

from radas_flows import Tuner, run_experiment
from radas_flows.core import experiment_path
from radas_flows.oom import OutOfMemoryCapError
from radas_flows.oom.rounds import MANIFEST_FILE, read_manifest
from radas_flows.storage import Storage
from tests.oom_trainables import (
    failing_in_turn,
    memory_grabber,
    memory_hungry,
    memory_used_and_total,
    read_executions,
    ship_by_value,
)
from tests.prefect_reads import events_about, latest_artifact, logs_of, task_runs_of

ship_by_value(__name__)
pytestmark = pytest.mark.usefixtures("radas_env")

GIB = 2**30
# memory_hungry may use 512 MiB per CPU Ray assigned: these needs fit at the CPUs named.
FITS_HALF, FITS_ONE, FITS_TWO, FITS_FOUR = 64, 384, 768, 1536


def run(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        user_name="tester", trainable=memory_hungry, run_choice="run", dos=["run", "analyze"]
    )
    kwargs.update(overrides)
    return asyncio.run(run_experiment(**kwargs))


def need_by_x(needs: dict[int, int]) -> Any:
    return tune.sample_from(lambda config: needs[config["x"]])


def runs_by_x(count_file: Path) -> dict[Any, list[float]]:
    """The CPUs of every execution of each config, in order."""
    runs: dict[Any, list[float]] = defaultdict(list)
    for execution in read_executions(count_file):
        runs[execution["config"]["x"]].append(execution["cpus"])
    return dict(runs)


def one_row_per_trial(df: Any) -> Any:
    assert df["trial_id"].is_unique, "a config appears more than once"
    return df.set_index("config/x")


def stored_path(name: str, workdir: Path) -> str:
    from radas_flows.inputs.spec import sanitize_experiment_name

    return experiment_path("tester", sanitize_experiment_name(name, str(workdir)))


def test_only_trials_out_of_memory_rerun_with_doubled_cpus(workdir: Path) -> None:
    count_file = workdir / "executions.jsonl"
    space = {
        "x": tune.grid_search([1, 2, 3, 4]),
        "need_mib": need_by_x({1: FITS_HALF, 2: FITS_TWO, 3: FITS_HALF, 4: FITS_TWO}),
        "count_file": str(count_file),
    }
    results = run(experiment_name="oom-grid", param_space=space)

    # Completed trials ran exactly once; the two that ran out of memory ran again at 2 CPUs.
    assert runs_by_x(count_file) == {1: [1.0], 2: [1.0, 2.0], 3: [1.0], 4: [1.0, 2.0]}
    tuner = results["tuner"]
    assert isinstance(tuner, Tuner)
    assert tuner.num_trials == 4 and tuner.num_errors == 0
    assert [r.cpu_per_trial for r in tuner.oom_rounds] == [2.0]
    grid = tuner.get_results()
    assert isinstance(grid, tune.ResultGrid)
    assert grid.get_best_result(metric="score", mode="max").config["x"] == 4
    df = one_row_per_trial(results["df"])
    assert df["cpu_per_trial"].to_dict() == {1: 1.0, 2: 2.0, 3: 1.0, 4: 2.0}
    assert (df["trial_status"] == "TERMINATED").all()
    assert df["allocated_mib"].to_dict() == {1: 64, 2: 768, 3: 64, 4: 768}

    advice = (
        "2 trials ran out of memory at cpu_per_trial=1 and completed at 2; "
        "start future runs with cpu_per_trial=2"
    )
    summary = latest_artifact("summary", "oom-grid")
    assert advice in summary.data
    assert any(advice in message for message in logs_of(summary.flow_run_id))
    # Accounting counts every execution, the two out-of-memory ones included.
    [usage] = json.loads(latest_artifact("usage", "oom-grid").data)
    assert usage["cluster"] == "local" and usage["executions"] == 6 and usage["cpu_hours"] > 0
    assert "| local |" in summary.data
    # The UI's task list reads like the card: one oom_retry task run for the round.
    names = sorted(r.name for r in task_runs_of(summary.flow_run_id))
    assert [n for n in names if n.startswith("oom_retry")] == ["oom_retry-round-1"]
    assert len([n for n in names if n.startswith("experiment_submit")]) == 1

    # The round is stored beside the experiment and recorded in its manifest.
    path = stored_path("oom-grid", workdir)
    [entry] = read_manifest(Storage(path)).rounds  # type: ignore[union-attr]
    assert Path(Storage(path).sibling(entry.name).path).is_dir()
    assert len(entry.roots) == 2

    # Analyzing later merges the round too, from storage alone.
    again = run(experiment_name="oom-grid", dos=["analyze"], run_choice=None)
    assert (
        one_row_per_trial(again["df"])["cpu_per_trial"].to_dict() == df["cpu_per_trial"].to_dict()
    )
    assert len(read_executions(count_file)) == 6

    # A fresh run replaces the experiment and deletes its old round.
    run(experiment_name="oom-grid", param_space={**space, "x": tune.grid_search([1])})
    assert not Path(Storage(path).sibling(entry.name).path).exists()
    assert not (Path(path) / MANIFEST_FILE).exists()


def test_rounds_double_until_the_cap_then_fail_keeping_completed(workdir: Path) -> None:
    count_file = workdir / "executions.jsonl"
    space = {
        "x": tune.grid_search([1, 2, 3, 4]),
        "need_mib": need_by_x({1: FITS_HALF, 2: FITS_ONE, 3: FITS_TWO, 4: FITS_FOUR}),
        "count_file": str(count_file),
    }
    with pytest.raises(
        OutOfMemoryCapError,
        match=(
            r"^1 trial still ran out of memory at cpu_per_trial=2: \w+_00003\. cpu_per_trial "
            r"tried: 0\.5, 1, 2; doubling again to 4 would exceed the cap cpu_per_node=2\. Run "
            r"on a cluster with more CPUs"
        ),
    ) as failed:
        run(
            experiment_name="oom-cap",
            param_space=space,
            cpu_per_trial=0.5,
            plot_fn=sns.scatterplot,
            plot_kwargs=dict(x="config/x", y="score"),
        )
    # Each round doubled the CPUs of the trials still out of memory, and only theirs;
    # RADAS_LOCAL_NUM_CPUS=2, so no round at 4 CPUs was started.
    assert runs_by_x(count_file) == {
        1: [0.5],
        2: [0.5, 1.0],
        3: [0.5, 1.0, 2.0],
        4: [0.5, 1.0, 2.0],
    }
    summary = latest_artifact("summary", "oom-cap").data
    assert (
        "2 trials ran out of memory at cpu_per_trial=0.5 and completed at 2; "
        "start future runs with cpu_per_trial=2"
    ) in summary
    assert str(failed.value) in summary
    # Prefect events: started, one per re-run round, then partial (the cap), all about the
    # experiment and related to the flow run.
    from radas_flows.events import experiment_resource_id
    from radas_flows.inputs.spec import sanitize_experiment_name

    resource = experiment_resource_id("tester", sanitize_experiment_name("oom-cap", str(workdir)))
    names = ["radas.experiment.started", "radas.experiment.oom-rerun", "radas.experiment.partial"]
    events = events_about(resource, set(names))
    assert [e.event for e in events] == [names[0], names[1], names[1], names[2]]
    assert [e.payload["cpu_per_trial"] for e in events[1:3]] == [1.0, 2.0]
    assert [e.payload["trials"] for e in events[1:3]] == [3, 2]
    assert events[-1].payload["trials"] == {"TERMINATED": 3, "ERROR": 1}
    assert "still ran out of memory" in events[-1].payload["error"]
    flow_run_id = latest_artifact("summary", "oom-cap").flow_run_id
    assert all(
        e.resource_in_role["flow-run"].id == f"prefect.flow-run.{flow_run_id}" for e in events
    )

    # The error carries what the flow analyzed: every config once, the Tuner and the figure.
    results = failed.value.results
    assert results is not None and set(results) == {"df", "tuner", "fig"}
    caught = one_row_per_trial(results["df"])
    assert caught["trial_status"].to_dict() == {
        1: "TERMINATED",
        2: "TERMINATED",
        3: "TERMINATED",
        4: "ERROR",
    }
    assert isinstance(results["tuner"], Tuner)
    assert [r.cpu_per_trial for r in results["tuner"].oom_rounds] == [1.0, 2.0]
    assert results["fig"] is not None and results["fig"].axes
    figure = latest_artifact("figure", "oom-cap")  # the failed run shows the figure too
    assert figure.flow_run_id == latest_artifact("summary", "oom-cap").flow_run_id
    assert "data:image/png;base64," in figure.data

    # Everything that completed was kept: analyzing later shows every config once.
    analyzed = run(experiment_name="oom-cap", dos=["analyze"], run_choice=None)
    assert [r.cpu_per_trial for r in analyzed["tuner"].oom_rounds] == [1.0, 2.0]
    df = one_row_per_trial(analyzed["df"])
    assert df["trial_status"].to_dict() == {
        1: "TERMINATED",
        2: "TERMINATED",
        3: "TERMINATED",
        4: "ERROR",
    }
    assert df["cpu_per_trial"].to_dict() == {1: 0.5, 2: 1.0, 3: 2.0, 4: 2.0}
    assert df["allocated_mib"].dropna().to_dict() == {1: 64, 2: 384, 3: 768}
    assert len(read_executions(count_file)) == 9


def test_max_rounds_stops_escalation(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count_file = workdir / "executions.jsonl"
    space = {"x": 1, "need_mib": FITS_TWO, "count_file": str(count_file)}
    monkeypatch.setenv("RADAS_MAX_OOM_ROUNDS", "many")
    with pytest.raises(ValueError, match=r"RADAS_MAX_OOM_ROUNDS='many' is not a whole number"):
        run(experiment_name="oom-max-rounds", param_space=space)
    assert not count_file.exists(), "a bad setting must fail before anything runs"

    monkeypatch.setenv("RADAS_MAX_OOM_ROUNDS", "1")
    with pytest.raises(
        OutOfMemoryCapError,
        match=(
            r"cpu_per_trial=1: \w+_00000\. Stopped after the maximum of 1 escalation rounds "
            r"\(cpu_per_trial tried: 0\.5, 1; cap cpu_per_node=2\)"
        ),
    ):
        run(experiment_name="oom-max-rounds", param_space=space, cpu_per_trial=0.5)
    assert runs_by_x(count_file) == {1: [0.5, 1.0]}

    # Re-runs off: the trial is reported as an error, and nothing about rounds is stored.
    monkeypatch.setenv("RADAS_MAX_OOM_ROUNDS", "0")
    results = run(experiment_name="oom-off", param_space=space, cpu_per_trial=0.5)
    assert runs_by_x(count_file) == {1: [0.5, 1.0, 0.5]}
    assert results["tuner"].num_errors == 1 and results["tuner"].oom_rounds == []
    assert "cpu_per_trial" not in results["df"].columns
    assert read_manifest(Storage(stored_path("oom-off", workdir))) is None
    assert "ran out of memory" not in latest_artifact("summary", "oom-off").data


def test_randomly_sampled_configs_rerun_exactly(workdir: Path) -> None:
    from ray.tune.search import BasicVariantGenerator

    count_file = workdir / "executions.jsonl"
    space = {
        "x": tune.uniform(0.0, 1.0),
        "need_mib": tune.sample_from(lambda config: FITS_TWO if config["x"] > 0.5 else FITS_HALF),
        "count_file": str(count_file),
    }
    results = run(
        experiment_name="oom-sampled",
        param_space=space,
        tuner_init_kwargs=dict(
            tune_config=tune.TuneConfig(
                search_alg=BasicVariantGenerator(random_state=3), num_samples=5
            )
        ),
    )
    runs = runs_by_x(count_file)
    assert len(runs) == 5
    hungry = {x for x in runs if x > 0.5}
    assert hungry and hungry != set(runs), "the seed must draw configs on both sides of 0.5"
    # Each sampled value that ran out of memory ran again, exactly, at 2 CPUs; no new draws.
    assert runs == {x: [1.0, 2.0] if x in hungry else [1.0] for x in runs}
    df = one_row_per_trial(results["df"])
    assert set(df.index) == set(runs)
    assert df["cpu_per_trial"].to_dict() == {x: 2.0 if x in hungry else 1.0 for x in runs}


def test_other_errors_are_reported_not_rerun(workdir: Path) -> None:
    count_file = workdir / "executions.jsonl"
    # x=1 fails with a ValueError that mentions memory; x=2 raises MemoryError once.
    space = {
        "x": tune.grid_search([1, 2, 3]),
        "errors": tune.sample_from(
            lambda config: {1: ["ValueError"], 2: ["MemoryError", "none"], 3: ["none"]}[config["x"]]
        ),
        "count_file": str(count_file),
    }
    results = run(experiment_name="oom-mixed", trainable=failing_in_turn, param_space=space)
    assert runs_by_x(count_file) == {1: [1.0], 2: [1.0, 2.0], 3: [1.0]}
    df = one_row_per_trial(results["df"])
    assert df["trial_status"].to_dict() == {1: "ERROR", 2: "TERMINATED", 3: "TERMINATED"}
    assert df["cpu_per_trial"].to_dict() == {1: 1.0, 2: 2.0, 3: 1.0}
    assert results["tuner"].num_errors == 1
    [entry] = results["tuner"].oom_rounds
    assert len(entry.roots) == 1
    summary = latest_artifact("summary", "oom-mixed").data
    assert "1 trial ran out of memory at cpu_per_trial=1 and completed at 2" in summary


@pytest.fixture
def ray_memory_monitor_at(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The flow's local Ray restarted with a memory monitor that fires 4.5 GiB above now."""
    import ray

    used, total = memory_used_and_total()
    if total - used < 10 * GIB:
        pytest.skip("needs 10 GiB of free memory to trip Ray's memory monitor safely")
    monkeypatch.setenv("RAY_memory_usage_threshold", f"{(used + 4.5 * GIB) / total:.4f}")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "50")
    if ray.is_initialized():
        ray.shutdown()  # the flow starts its local Ray again, with these settings
    yield
    ray.shutdown()  # later tests get a Ray with the default memory monitor


# Serial: the threshold leaves 1.5 GiB for everything else on the machine, and a parallel test
# that allocates more (the other memory-monitor test grabs 3 GiB) trips it in the wrong place.
@pytest.mark.serial
@pytest.mark.usefixtures("ray_memory_monitor_at")
def test_trials_killed_by_ray_memory_monitor_rerun(workdir: Path) -> None:
    # Two trials at 1 CPU run side by side and together cross the threshold: Ray's memory
    # monitor kills them and Tune stops. At 2 CPUs they run one at a time and fit, with
    # 1.5 GiB to spare for other processes on the machine.
    count_file = workdir / "executions.jsonl"
    space = {
        "x": tune.grid_search([1, 2]),
        "grab_mib": 3072,
        "hold_s": 3,
        "count_file": str(count_file),
    }
    results = run(experiment_name="oom-monitor", trainable=memory_grabber, param_space=space)
    assert runs_by_x(count_file) == {1: [1.0, 2.0], 2: [1.0, 2.0]}
    df = one_row_per_trial(results["df"])
    assert df["cpu_per_trial"].to_dict() == {1: 2.0, 2: 2.0}
    assert (df["trial_status"] == "TERMINATED").all()
    logs = "\n".join(logs_of(latest_artifact("summary", "oom-monitor").flow_run_id))
    assert "Ray Tune stopped early because Ray's memory monitor killed a trial" in logs
    assert json.dumps(df["held_mib"].tolist()) == "[3072, 3072]"
