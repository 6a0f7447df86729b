"""run_with="auto" on two real loopback clusters (one with logical GPUs) and an offline entry.

The choice (CPU-only and GPU sweeps, a restriction list, an offline default), failover at
submission (the Jobs API dropping every submission; a head gone between check and
submission), a sweep moved off a cluster killed mid-run with a shared results root (no
completed trial runs twice), a lost cluster that cannot move, and the CPU-/GPU-hours.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prefect import flow
from ray import tune

from radas_flows import run_experiment
from radas_flows.inputs.rules import RunTarget
from radas_flows.inputs.spec import build_spec
from radas_flows.stages.check import cluster_check
from radas_flows.stages.placement import ClusterLostError, Placement, placed_spec, submit_placed
from radas_flows.targets import ClusterUnavailableError, TargetCheck, target_for
from tests.clusters.flaky_proxy import FlakyProxy, Rule
from tests.clusters.helpers import import_source
from tests.clusters.loopback_ray import RayHead, start_head, stop_head
from tests.prefect_reads import flow_run_named, latest_artifact, logs_of
from tests.smtp_server import SmtpServer

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("radas_env")]

USER = "auto"
TRAINABLES = """\
import os
import time
import uuid


def timed(config):
    # One marker file per execution: a trial that runs twice leaves two.
    markers = config["markers"]
    os.makedirs(markers, exist_ok=True)
    with open(os.path.join(markers, f"a{config['a']}-{uuid.uuid4().hex[:8]}"), "w") as f:
        f.write("ran")
    started = time.monotonic()
    time.sleep(config["sleep"])
    return {"score": config["a"] ** 2, "own_s": time.monotonic() - started}
"""


@pytest.fixture(scope="module")
def heads() -> Iterator[dict[str, RayHead]]:
    """Two loopback heads for the module: CPU-only, and one with 2 logical GPUs."""
    cpu = start_head(num_cpus=2, num_gpus=0)
    try:
        gpu = start_head(num_cpus=2, num_gpus=2)
    except BaseException:
        stop_head(cpu)
        raise
    try:
        yield {"cpu": cpu, "gpu": gpu}
    finally:
        stop_head(gpu)
        stop_head(cpu)


def entry(name: str, head: RayHead | None, **overrides: Any) -> str:
    """One registry table: a loopback head's (``None``: an address nothing listens at)."""
    if head is None:
        values: dict[str, Any] = {
            "address": f"http://127.0.0.1:{_closed_port()}",
            "cpu_per_node": 4,
            "gpu_per_node": 0,
            "gpu_per_cpu": 0,
            "hint": "offline",
        }
    else:
        import tomllib

        values = dict(tomllib.loads(head.registry.read_text())["loopback"])
    values.update(overrides)
    lines = [f"[{name}]"]
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def _closed_port() -> int:
    from tests.clusters.loopback_ray import free_port

    return free_port()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    def write(*tables: str) -> Path:
        path = tmp_path / "clusters.toml"
        path.write_text("\n".join(tables))
        monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(path))
        return path

    return write


@pytest.fixture
def project(workdir: Path) -> ModuleType:
    return import_source(workdir, TRAINABLES, "auto_trainables")


def decide(project: ModuleType, workdir: Path, run_with: str, **kwargs: Any) -> TargetCheck:
    """The check of ``run_with`` (outside a flow: the decision, nothing submitted)."""
    spec = build_spec(
        user_name=USER,
        trainable=project.timed,
        experiment_name="decide",
        run_with=run_with,
        param_space={"a": 1, "sleep": 0, "markers": str(workdir)},
        run_choice="run",
        cwd=str(workdir),
        **kwargs,
    )
    return target_for(spec.target).check(spec)


def chosen(check: TargetCheck) -> str:
    [row] = [r for r in check.rows if r["chosen"] == "yes"]
    assert check.placed == RunTarget("cluster", row["cluster"])
    return str(row["cluster"])


def wait_idle(*heads: RayHead, timeout: float = 120) -> None:
    """Wait until every CPU and GPU of the heads is free (jobs of earlier tests ended)."""
    from radas_flows.clusters.availability import parse_cluster_status
    from tests.clusters.loopback_ray import _get

    for head in heads:
        deadline = time.monotonic() + timeout
        while True:
            code, body = _get(head.dashboard_url + "/api/cluster_status", head.token)
            found = parse_cluster_status(json.loads(body)) if code == 200 else None
            idle = found and found["cpus_free"] == found["cpus_total"]
            if idle and found["gpus_free"] == found["gpus_total"]:  # type: ignore[index]
                break
            assert time.monotonic() < deadline, f"{head.dashboard_url} stayed busy: {found}"
            time.sleep(0.5)


def markers_by_config(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for marker in folder.iterdir():
        key = marker.name.split("-")[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


# -- the choice -----------------------------------------------------------------------------


def test_a_cpu_sweep_goes_where_most_trials_start_now(
    heads: dict[str, RayHead], registry: Callable[..., Path], project: ModuleType, workdir: Path
) -> None:
    # gpu-b is the declared default, but gives each CPU two GPUs: one trial fits at a time
    # there, two on cpu-a. The offline entry is skipped.
    registry(
        entry("down", None),
        entry("gpu-b", heads["gpu"], cpu_per_node=1, gpu_per_cpu=2, default=True),
        entry("cpu-a", heads["cpu"]),
    )
    check = decide(project, workdir, "auto")
    assert chosen(check) == "cpu-a"
    rows = {r["cluster"]: r for r in check.rows}
    assert set(rows) == {"down", "gpu-b", "cpu-a"}, "local is no candidate unless named"
    assert rows["down"]["online"] == "no" and rows["down"]["fits"] == "no"
    assert rows["gpu-b"]["trials startable now"] == "1"
    assert rows["cpu-a"]["trials startable now"] == "2"
    assert "most trials now" in rows["cpu-a"]["reason"]
    assert [f.placed for f in check.fallbacks] == [RunTarget("cluster", "gpu-b")]


def test_an_offline_default_is_skipped_then_order_decides(
    heads: dict[str, RayHead], registry: Callable[..., Path], project: ModuleType, workdir: Path
) -> None:
    registry(
        entry("down", None, default=True),
        entry("gpu-b", heads["gpu"]),
        entry("cpu-a", heads["cpu"]),
    )
    check = decide(project, workdir, "auto")
    assert chosen(check) == "gpu-b", "a tie in trials startable now goes to the first in order"
    rows = {r["cluster"]: r for r in check.rows}
    assert rows["down"]["default"] == "yes" and rows["down"]["chosen"] == ""
    assert "connection refused" in rows["down"]["reason"]
    assert "first in order" in rows["gpu-b"]["reason"]


def test_a_gpu_sweep_needs_the_stated_gpu_memory(
    heads: dict[str, RayHead], registry: Callable[..., Path], project: ModuleType, workdir: Path
) -> None:
    registry(
        entry("cpu-a", heads["cpu"], default=True),
        entry("gpu-b", heads["gpu"], gpu_memory_gb=24),
    )
    check = decide(project, workdir, "auto", min_gpu_memory_gb=16)
    assert chosen(check) == "gpu-b"
    rows = {r["cluster"]: r for r in check.rows}
    assert "no GPU" in rows["cpu-a"]["reason"] and rows["cpu-a"]["fits"] == "no"
    assert check.gpu_per_cpu == 1.0 and check.fallbacks == ()
    with pytest.raises(ClusterUnavailableError, match="min_gpu_memory_gb=48") as raised:
        decide(project, workdir, "auto", min_gpu_memory_gb=48)
    assert "24 GB, less than 48" in str(raised.value)
    assert {r["fits"] for r in raised.value.rows} == {"no"}


def test_a_restriction_list_limits_the_candidates(
    heads: dict[str, RayHead], registry: Callable[..., Path], project: ModuleType, workdir: Path
) -> None:
    registry(entry("cpu-a", heads["cpu"], default=True), entry("gpu-b", heads["gpu"]))
    check = decide(project, workdir, "auto:gpu-b")
    assert chosen(check) == "gpu-b"
    assert [r["cluster"] for r in check.rows] == ["gpu-b"]
    with_local = decide(project, workdir, "auto:local,cpu-a", cpu_per_trial=2)
    assert [r["cluster"] for r in with_local.rows] == ["local", "cpu-a"]
    with pytest.raises(ClusterUnavailableError, match="nowhere"):
        decide(project, workdir, "auto:nowhere,cpu-a")


# -- a whole run: the artifact and the accounting --------------------------------------------


def test_auto_run_records_the_decision_and_the_cpu_and_gpu_hours(
    heads: dict[str, RayHead],
    registry: Callable[..., Path],
    project: ModuleType,
    workdir: Path,
    smtp_server: SmtpServer,
    smtp_env: Callable[..., None],
) -> None:
    smtp_env(smtp_server)
    registry(entry("down", None), entry("gpu-b", heads["gpu"]), entry("cpu-a", heads["cpu"]))
    wait_idle(heads["gpu"], heads["cpu"])
    results = asyncio.run(
        run_experiment(
            user_name=USER,
            trainable=project.timed,
            experiment_name="auto-run",
            run_with="auto",
            param_space={
                "a": tune.grid_search([1, 2, 3]),
                "sleep": 1.0,
                "markers": str(workdir / "m"),
            },
            run_choice="run",
            email_notification_to_address="me@example.com",
        )
    )
    df = results["df"]
    assert sorted(df["score"]) == [1, 4, 9]
    decision = latest_artifact("clusters", "auto-run", USER)
    rows = {r["cluster"]: r for r in json.loads(decision.data)}
    assert rows["gpu-b"]["chosen"] == "yes" and rows["gpu-b"]["submission"] == "submitted (run)"
    assert rows["down"]["online"] == "no"
    # CPU-hours: each trial's own duration x 1 CPU; GPU-hours: x its 1 GPU (gpu_per_cpu = 1).
    own_hours = float(df["own_s"].sum()) / 3600
    [usage] = json.loads(latest_artifact("usage", "auto-run", USER).data)
    assert usage["cluster"] == "gpu-b" and usage["executions"] == 3
    assert own_hours <= usage["cpu_hours"] <= own_hours + 3 * 0.5 / 3600
    assert usage["gpu_hours"] == pytest.approx(usage["cpu_hours"])
    assert usage["oom_share"] == 0
    summary = latest_artifact("summary", "auto-run", USER).data
    assert "**Run target:** cluster:gpu-b" in summary
    assert f"| gpu-b | {usage['cpu_hours']:.4g} | {usage['gpu_hours']:.4g} | 0.0% |" in summary
    [message] = smtp_server.messages
    body = str(message.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
    assert "Cluster: cluster:gpu-b" in body
    assert f"gpu-b: {usage['cpu_hours']:.4g} CPU-hours, {usage['gpu_hours']:.4g} GPU-hours" in body
    logs = logs_of(flow_run_named("auto-run").id)
    assert any("run_with='auto' chose 'gpu-b'" in m for m in logs)


# -- failover at submission ------------------------------------------------------------------


@pytest.fixture
def proxy(heads: dict[str, RayHead]) -> Iterator[FlakyProxy]:
    flaky = FlakyProxy(heads["cpu"].dashboard_url)
    try:
        yield flaky
    finally:
        flaky.close()


def test_a_jobs_api_that_drops_every_submission_fails_over(
    heads: dict[str, RayHead],
    registry: Callable[..., Path],
    project: ModuleType,
    workdir: Path,
    proxy: FlakyProxy,
) -> None:
    proxy.rules.append(Rule("POST", "/api/jobs/", "drop_request", times=100))
    registry(entry("flaky-a", heads["cpu"], address=proxy.url), entry("gpu-b", heads["gpu"]))
    wait_idle(heads["gpu"], heads["cpu"])
    results = asyncio.run(
        run_experiment(
            user_name=USER,
            trainable=project.timed,
            experiment_name="failover-api",
            run_with="auto:flaky-a,gpu-b",
            param_space={"a": tune.grid_search([1, 2]), "sleep": 0, "markers": str(workdir)},
            run_choice="run",
        )
    )
    assert sorted(results["df"]["score"]) == [1, 4]
    assert proxy.rules[0].hits == 1, "one try on flaky-a, then the next candidate"
    rows = {
        r["cluster"]: r for r in json.loads(latest_artifact("clusters", "failover-api", USER).data)
    }
    assert rows["flaky-a"]["chosen"] == "yes"
    assert rows["flaky-a"]["submission"].startswith("submission failed")
    assert rows["flaky-a"]["submission"].endswith("trying gpu-b")
    assert rows["gpu-b"]["submission"] == "submitted (run)"
    assert "**Run target:** cluster:gpu-b" in latest_artifact("summary", "failover-api", USER).data


def test_a_head_gone_between_check_and_submission_fails_over(
    heads: dict[str, RayHead],
    registry: Callable[..., Path],
    project: ModuleType,
    workdir: Path,
    proxy: FlakyProxy,
) -> None:
    # The chosen head is reached through the proxy; closing it after the check leaves its
    # address refusing connections, as a stopped head's does.
    registry(entry("gone-a", heads["cpu"], address=proxy.url), entry("gpu-b", heads["gpu"]))
    wait_idle(heads["gpu"], heads["cpu"])
    spec = build_spec(
        user_name=USER,
        trainable=project.timed,
        experiment_name="failover-gone",
        run_with="auto",
        param_space={"a": tune.grid_search([1, 2]), "sleep": 0, "markers": str(workdir)},
        run_choice="run",
        cwd=str(workdir),
    )

    @flow(name="check-then-stop")
    def check_then_stop() -> tuple[str, list[dict[str, Any]]]:
        check = cluster_check(spec)
        assert check.placed == RunTarget("cluster", "gone-a")
        proxy.close()
        placement = Placement(placed_spec(spec, check), check, [dict(r) for r in check.rows])
        placement, handle = submit_placed(placement, "run")
        target_for(placement.spec.target).follow(placement.spec, handle, _NullProgress())
        return placement.check.target, placement.rows

    where, rows = check_then_stop()
    assert where == "cluster:gpu-b"
    by_name = {r["cluster"]: r for r in rows}
    assert "submission failed" in by_name["gone-a"]["submission"]
    assert by_name["gpu-b"]["submission"] == "submitted (run)"


class _NullProgress:
    """Progress that goes nowhere (the test follows the job without a progress artifact)."""

    def __init__(self) -> None:
        import logging

        self.logger = logging.getLogger("test")

    def update(self, update: dict[str, Any]) -> None:
        pass

    def done(self) -> None:
        pass


# -- a cluster lost mid-run ----------------------------------------------------------------------


def _when_done(user_root: Path, count: int, action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` once ``count`` trials of the experiment under ``user_root`` completed."""

    def wait() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = sorted(user_root.glob("*/radas_done")) if user_root.is_dir() else []
            if found and len(list(found[0].glob("*.json"))) >= count:
                action()
                return
            time.sleep(0.2)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def test_a_lost_cluster_without_a_shared_results_root_cannot_move(
    heads: dict[str, RayHead],
    registry: Callable[..., Path],
    project: ModuleType,
    workdir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RADAS_FOLLOW_ATTEMPTS", "2")
    root = tmp_path / "root-b"
    proxy = FlakyProxy(heads["gpu"].dashboard_url)
    registry(
        entry("far-b", heads["gpu"], address=proxy.url, results_root=str(root)),
        entry("cpu-a", heads["cpu"], results_root=str(tmp_path / "root-a")),
    )
    wait_idle(heads["gpu"], heads["cpu"])  # a tie in trials startable now: far-b is first
    # Losing the proxy loses the cluster as the flow sees it (its job runs on, and ends).
    killer = _when_done(root / USER, 1, proxy.close)
    with pytest.raises(ClusterLostError) as raised:
        asyncio.run(
            run_experiment(
                user_name=USER,
                trainable=project.timed,
                experiment_name="lost-apart",
                run_with="auto:far-b,cpu-a",
                param_space={
                    "a": tune.grid_search([1, 2, 3, 4]),
                    "sleep": tune.grid_search([0.2, 4.0]),
                    "markers": str(workdir / "m"),
                },
                run_choice="run",
            )
        )
    killer.join(5)
    proxy.close()
    text = str(raised.value)
    assert "Cluster 'far-b' was lost" in text and "could not move" in text
    assert f"cpu-a (results_root {tmp_path / 'root-a'})" in text
    assert "run_choice='restore'" in text


@pytest.mark.slow
def test_a_sweep_moves_off_a_killed_cluster_and_no_completed_trial_runs_twice(
    heads: dict[str, RayHead],
    registry: Callable[..., Path],
    project: ModuleType,
    workdir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RADAS_FOLLOW_ATTEMPTS", "2")
    shared = tmp_path / "shared"  # both clusters' results_root: a folder both see
    registry(
        entry("cpu-a", heads["cpu"], results_root=str(shared), default=True),
        entry("gpu-b", heads["gpu"], results_root=str(shared)),
    )
    markers = workdir / "m"
    wait_idle(heads["gpu"], heads["cpu"])  # a tie in trials startable now: the default wins
    killer = _when_done(shared / USER, 2, lambda: print(f"killed in {stop_head(heads['cpu'])} s"))
    results = asyncio.run(
        run_experiment(
            user_name=USER,
            trainable=project.timed,
            experiment_name="moved",
            run_with="auto",
            param_space={
                "a": tune.grid_search([1, 2, 3, 4, 5, 6]),
                "sleep": 1.5,
                "markers": str(markers),
            },
            run_choice="run",
        )
    )
    killer.join(5)
    assert sorted(results["df"]["score"]) == [1, 4, 9, 16, 25, 36]
    path = Path(results["tuner"].experiment_path)
    assert path.parent.parent == shared
    records = [json.loads(p.read_text()) for p in (path / "radas_done").glob("*.json")]
    on_a = [r for r in records if r["cluster"] == "cpu-a"]
    assert len(on_a) >= 2 and {r["cluster"] for r in records} == {"cpu-a", "gpu-b"}
    counts = markers_by_config(markers)
    by_trial = {
        str(row["trial_id"]): f"a{row['config/a']}" for row in results["df"].to_dict("records")
    }
    for record in on_a:
        config = by_trial[record["trial_id"]]
        assert counts[config] == 1, f"{config} completed on cpu-a and ran again: {counts}"
    rows = {r["cluster"]: r for r in json.loads(latest_artifact("clusters", "moved", USER).data)}
    assert "lost while running" in rows["cpu-a"]["submission"]
    assert rows["gpu-b"]["submission"] == "submitted (restore)"
    usage = {u["cluster"]: u for u in json.loads(latest_artifact("usage", "moved", USER).data)}
    assert set(usage) == {"cpu-a", "gpu-b"}
    assert usage["cpu-a"]["cpu_hours"] == pytest.approx(
        sum(r["seconds"] * r["cpu"] for r in on_a) / 3600
    )
    assert usage["cpu-a"]["gpu_hours"] == 0
    # Restored trials keep the resources they were created with: no GPU for those of cpu-a.
    assert usage["gpu-b"]["gpu_hours"] <= usage["gpu-b"]["cpu_hours"]


def test_auto_without_any_registered_cluster_says_so(
    no_registry: Path, project: ModuleType, workdir: Path
) -> None:
    with pytest.raises(ClusterUnavailableError, match="no cluster registry names a cluster"):
        decide(project, workdir, "auto")
