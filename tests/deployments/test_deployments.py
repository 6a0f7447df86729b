"""End to end on a real Prefect server and process worker: prefect.yaml as users run it."""

from __future__ import annotations

import base64
import csv
import json
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from radas_flows._artifacts import artifact_key
from tests.deployments.conftest import ROOT, Server, create_run, tail, wait_final
from tests.prefect_reads import poll

pytestmark = pytest.mark.slow

TRAINABLE = "tests.trainables_for_tests:returning"


def flow_run_named(server: Server, name: str) -> dict[str, Any]:
    runs = server.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
    assert len(runs) == 1, [r["name"] for r in runs]
    return dict(runs[0])


def artifacts_of(server: Server, flow_run_id: str) -> dict[str, dict[str, Any]]:
    found = server.post(
        "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    )
    return {a["key"]: a for a in found}


def task_runs_of(server: Server, flow_run_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """A flow run's task runs once each is final (task states arrive as events, stored later)."""
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    final = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
    return poll(
        lambda: list(server.post("/task_runs/filter", body)),
        lambda runs: all((r["state"] or {}).get("type") in final for r in runs),
        timeout,
    )


def test_cli_sweep_run_completes_with_named_tagged_run_and_artifacts(deployed: Server) -> None:
    result = deployed.prefect(
        "deployment", "run", "radas/sweep",
        "--param", "user_name=e2e",
        "--param", f"trainable={TRAINABLE}",
        "--param", "experiment_name=cli-sweep",
        "--param", 'param_space={"a": {"grid_search": [1, 2, 3]}, "b": {"uniform": [1, 2]}}',
        "--param", 'tuner={"metric": "score", "mode": "max", "max_concurrent_trials": 2}',
        "--param", 'plot={"fn": "barplot", "kwargs": {"x": "config/a", "y": "score"}}',
        "--param", "run_choice=run",
        "--watch",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Flow run finished successfully in 'Completed'" in result.stdout

    run = flow_run_named(deployed, "cli-sweep")  # the flow run is named after the experiment
    assert run["state"]["type"] == "COMPLETED"
    assert {"user:e2e", "cluster:local", "experiment:cli-sweep", "sweep"} <= set(run["tags"])
    stages = {t["name"].rsplit("-", 1)[0] for t in task_runs_of(deployed, run["id"])}
    assert {"cluster_check", "experiment_submit", "experiment_monitor", "results_analyze"} <= stages

    artifacts = artifacts_of(deployed, run["id"])
    key = {kind: artifact_key(kind, "e2e", "cli-sweep") for kind in
           ("clusters", "progress", "results", "summary", "figure")}  # fmt: skip
    assert set(key.values()) <= set(artifacts), sorted(artifacts)
    assert artifacts[key["progress"]]["data"] == 100
    rows = json.loads(artifacts[key["results"]]["data"])
    assert sorted(int(r["config/a"]) for r in rows) == [1, 2, 3]
    summary = artifacts[key["summary"]]["data"]
    assert "**Best score:**" in summary and "| TERMINATED | 3 |" in summary
    figure = artifacts[key["figure"]]["data"]
    encoded = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", figure)
    assert encoded is not None
    assert base64.b64decode(encoded.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    saved = list(deployed.results.glob("e2e/*cli_sweep/radas_figure.png"))
    assert len(saved) == 1 and str(saved[0]) in figure


def test_the_card_command_as_written_runs_the_two_moons_sweep(deployed: Server) -> None:
    import getpass

    # What the UI's run form opens on: the two-moons preset, without a user_name.
    sweep = deployed.get("/deployments/name/radas/sweep")
    preset = json.loads((ROOT / "deployments/presets/two_moons_lr.json").read_text())
    assert sweep["parameters"] == {k: v for k, v in preset.items() if k != "user_name"}
    schema = sweep["parameter_openapi_schema"]
    assert "user_name" not in schema["required"]
    assert schema["properties"]["user_name"]["default"] is None

    result = deployed.prefect("deployment", "run", "radas/sweep", "--watch", timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Flow run finished successfully in 'Completed'" in result.stdout

    user = getpass.getuser()  # the worker's OS user (it runs as this test's user)
    run = flow_run_named(deployed, "two-moons-lr")
    assert run["parameters"] == sweep["parameters"]
    assert {f"user:{user}", "cluster:local", "experiment:two-moons-lr"} <= set(run["tags"])
    assert artifact_key("figure", user, "two-moons-lr") in artifacts_of(deployed, run["id"])
    (folder,) = deployed.results.glob(f"{user}/*two_moons_lr")
    assert (folder / "radas_figure.png").is_file()
    with (folder / "radas_results.csv").open() as table:
        rows = list(csv.DictReader(table))  # every reported epoch of every trial
    assert len({r["trial_id"] for r in rows}) == 6  # 3 samples x 2 seeds
    assert {int(r["config/seed"]) for r in rows} == {0, 1}
    assert all(0.0001 <= float(r["config/lr"]) <= 0.1 for r in rows)
    assert max(float(r["accuracy"]) for r in rows) > 0.8


def test_one_run_per_experiment_and_other_experiments_side_by_side(deployed: Server) -> None:
    def params(name: str) -> dict[str, Any]:
        return {
            "user_name": "e2e",
            "trainable": "tests.trainables_for_tests:slow",
            "experiment_name": name,
            "param_space": {"a": {"grid_search": [1, 2]}, "sleep": 5},
            "tuner": {"max_concurrent_trials": 1},
            "plot": None,  # not the deployment's two-moons figure
            "run_choice": "run",
        }

    first = create_run(deployed, "radas/sweep", params("locked"))
    second = create_run(deployed, "radas/sweep", params("locked"))
    other = create_run(deployed, "radas/sweep", params("side-by-side"))
    runs = {r["id"]: wait_final(deployed, r["id"]) for r in (first, second, other)}

    locked = sorted(
        (runs[first["id"]], runs[second["id"]]), key=lambda r: r["state"]["type"] != "COMPLETED"
    )
    winner, loser = locked
    assert winner["state"]["type"] == "COMPLETED", winner["state"]
    assert loser["state"]["type"] == "FAILED"
    message = loser["state"]["message"]
    assert "ExperimentBusyError: Experiment 'locked' of user 'e2e' is already running" in message
    assert f"in flow run 'locked' (id {winner['id']})" in message
    assert "RADAS_EXPERIMENT_LOCK_WAIT_S" in message
    assert task_runs_of(deployed, loser["id"]) == []  # failed before anything was submitted

    side = runs[other["id"]]
    assert side["state"]["type"] == "COMPLETED", side["state"]
    # The other experiment ran at the same time as the locked one.
    assert side["start_time"] < winner["end_time"] and winner["start_time"] < side["end_time"]


def test_invalid_parameters_fail_before_anything_is_submitted(deployed: Server) -> None:
    # The server checks the typed schema: the CLI fails and no flow run exists.
    rejected = deployed.prefect(
        "deployment", "run", "radas/sweep",
        "--param", "user_name=e2e", "--param", f"trainable={TRAINABLE}",
        "--param", "experiment_name=never-created",
        "--param", 'plot={"fn": "lineplt"}',
    )  # fmt: skip
    assert rejected.returncode == 1
    assert "Validation failed for field 'plot.fn'" in rejected.stdout
    assert "'lineplt' is not one of" in rejected.stdout
    runs = deployed.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": ["never-created"]}}})
    assert runs == []

    # The grammar and the trainable are checked when the run starts, before any task.
    base = {"user_name": "e2e", "trainable": TRAINABLE, "run_choice": "run"}
    bad_space = create_run(
        deployed,
        "radas/sweep",
        {**base, "experiment_name": "bad-space", "param_space": {"lr": {"loguniform": [0, 1]}}},
    )
    bad_trainable = create_run(
        deployed,
        "radas/sweep",
        {
            **base,
            "experiment_name": "bad-trainable",
            "trainable": "tests.trainables_for_tests:nope",
        },
    )
    space_run = wait_final(deployed, bad_space["id"])
    trainable_run = wait_final(deployed, bad_trainable["id"])
    assert space_run["state"]["type"] == "FAILED"
    message = space_run["state"]["message"]
    assert 'param_space.lr: "loguniform" samples on a log scale and needs 0 < lo' in message
    assert "param_space grammar:" in message
    assert trainable_run["state"]["type"] == "FAILED"
    assert "trainable='tests.trainables_for_tests:nope'" in trainable_run["state"]["message"]
    assert "has no attribute 'nope'" in trainable_run["state"]["message"]
    for run in (space_run, trainable_run):
        assert task_runs_of(deployed, run["id"]) == []


def test_nightly_schedule_creates_scheduled_runs(deployed: Server) -> None:
    nightly = deployed.get("/deployments/name/radas-nightly/nightly")
    (schedule,) = nightly["schedules"]
    assert schedule["schedule"]["cron"] == "30 2 * * *"
    assert schedule["schedule"]["timezone"] == "Europe/Paris"
    body = {
        "deployments": {"id": {"any_": [nightly["id"]]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    }
    scheduled = deployed.post("/flow_runs/filter", body)
    assert len(scheduled) >= 3  # the scheduler filled the next nights in
    paris = ZoneInfo("Europe/Paris")
    starts = sorted(
        datetime.fromisoformat(r["expected_start_time"]).astimezone(paris) for r in scheduled
    )
    assert all((s.hour, s.minute) == (2, 30) for s in starts)
    assert len({s.date() for s in starts}) == len(starts)  # one run a night


def test_nightly_suite_runs_each_preset_as_a_dated_child_run(deployed: Server) -> None:
    presets = ["tests/deployments/presets/tiny_a.json", "tests/deployments/presets/tiny_b.json"]
    suite = create_run(deployed, "radas-nightly/nightly", {"presets": presets})
    final = wait_final(deployed, suite["id"], timeout=300)
    assert final["state"]["type"] == "COMPLETED", (
        final["state"].get("message"),
        tail(deployed.home / "worker.log", 60),
    )
    night = datetime.fromisoformat(final["expected_start_time"]).astimezone(
        ZoneInfo("Europe/Paris")
    )
    date = night.date().isoformat()
    assert final["name"] == f"nightly-{date}"

    children = {}
    for name in (f"tiny-a-{date}", f"tiny-b-{date}"):
        child = flow_run_named(deployed, name)
        assert child["state"]["type"] == "COMPLETED"
        assert child["parent_task_run_id"] is not None  # shown as a subflow of the suite
        assert f"experiment:{name}" in child["tags"]
        children[name] = child
    suite_tasks = {t["id"]: t for t in task_runs_of(deployed, final["id"])}
    assert {c["parent_task_run_id"] for c in children.values()} <= set(suite_tasks)
    ray_tasks = [t for t in suite_tasks.values() if t["name"].startswith("suite_experiment-")]
    assert len(ray_tasks) == 2 and all(t["state"]["type"] == "COMPLETED" for t in ray_tasks)

    report = artifacts_of(deployed, final["id"])["radas-nightly-suite"]["data"]
    assert f"| tiny-a-{date} | COMPLETED | score = 6 |" in report  # max of a*b over a in 1, 2
    assert f"| tiny-b-{date} | COMPLETED | score = " in report
    # The night's CPU-hours: the sum of what each experiment's usage artifact states.
    cpu_hours = 0.0
    for name, child in children.items():
        key = artifact_key("usage", "e2e", name)
        [usage] = json.loads(artifacts_of(deployed, child["id"])[key]["data"])
        assert usage["cluster"] == "local" and usage["executions"] == 2 and usage["cpu_hours"] > 0
        cpu_hours += usage["cpu_hours"]
    assert f"## Resources used on {date}" in report
    assert f"| local | {cpu_hours:.4g} | 0 | 0.0% |" in report


def test_hostile_references_run_nothing_on_the_worker(
    deployed: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The attack of issue 11 through a real deployment run: a pandas method that evaluates
    # an expression (os is a global of radas_flows.analysis), and radas' own driver entrypoint.
    pwned = tmp_path_factory.mktemp("hostile") / "PWNED"
    base = {"user_name": "attacker", "trainable": TRAINABLE, "run_choice": "run"}
    eval_run = create_run(
        deployed,
        "radas/sweep",
        {
            **base,
            "experiment_name": "hostile-eval",
            "param_space": {"a": 1},
            "process_df_fn": "pandas:DataFrame.eval",
            "process_df_fn_kwargs": {"expr": f"@os.system('id > {pwned}')", "engine": "python"},
        },
    )
    driver_run = create_run(
        deployed,
        "radas/sweep",
        {**base, "experiment_name": "hostile-driver", "trainable": "radas_flows.driver:main"},
    )
    eval_final = wait_final(deployed, eval_run["id"])
    driver_final = wait_final(deployed, driver_run["id"])
    assert not pwned.exists(), f"the worker ran the command: {pwned.read_text()!r}"
    assert eval_final["state"]["type"] == "FAILED"
    message = eval_final["state"]["message"]
    assert "process_df_fn='pandas:DataFrame.eval': module 'pandas' is installed in" in message
    assert driver_final["state"]["type"] == "FAILED"
    assert "module 'radas_flows' is radas_flows itself" in driver_final["state"]["message"]
    for run in (eval_final, driver_final):
        assert task_runs_of(deployed, run["id"]) == []  # refused before any task


def test_a_run_of_another_trainable_is_told_what_it_inherited(deployed: Server) -> None:
    # The deployment's defaults are the two-moons sweep; this run names its own trainable and
    # space but no tuner or plot, so it gets the two-moons tuner and figure (Prefect's rule).
    run = create_run(
        deployed,
        "radas/sweep",
        {
            "user_name": "e2e",
            "trainable": TRAINABLE,
            "experiment_name": "inherits",
            "param_space": {"a": {"grid_search": [1, 2]}},
            "run_choice": "run",
        },
    )
    wait_final(deployed, run["id"])
    logs = deployed.post(
        "/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200}
    )
    messages = "\n".join(log["message"] for log in logs)
    for key, fix in (("tuner", "{}"), ("plot", "null")):
        assert (
            f"{key} is the deployment 'radas/sweep''s default, set for its trainable "
            f"'examples.two_moons.trainable:trainable', not for trainable='{TRAINABLE}': give "
            f"the run its own {key} (for the flow's default, --param {key}={fix})."
        ) in messages
    assert "param_space is the deployment" not in messages  # the run gave its own
