"""A worker node stopped mid-sweep: its trials run again elsewhere; every config completes once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from ray import tune

from radas_flows import run_experiment
from tests.clusters.helpers import import_source
from tests.clusters.loopback_ray import (
    JOINABLE_HEAD_IP,
    WORKER_ENV,
    RayWorker,
    start_head,
    start_worker,
    stop_head,
)

# Serial: under a parallel suite's load the stopper thread once missed every trial on the
# worker node (each runs 4 s), so the node was never stopped mid-trial.
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.serial,
    pytest.mark.usefixtures("radas_env"),
]

CONFIGS = 5

TRAINABLES = """\
import os
import time


def marked(config):
    marks, a = config["marks"], config["a"]
    with open(os.path.join(marks, f"start-{a}-{os.getpid()}-{time.time_ns()}"), "w"):
        pass
    time.sleep(config["sleep"])
    with open(os.path.join(marks, f"done-{a}"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    return {"score": a}
"""


@pytest.fixture
def two_nodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[RayWorker]:
    """A dedicated loopback head (1 CPU) with a joined worker node (2 CPUs), stopped after."""
    head = start_head(num_cpus=1, num_gpus=0, node_ip=JOINABLE_HEAD_IP)
    worker = None
    try:
        worker = start_worker(head, num_cpus=2)
        deadline = time.monotonic() + 120
        while worker.cpus_total() < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.cpus_total() == 3, "the worker node did not join"
        monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(head.registry))
        yield worker
    finally:
        stop_head(head)  # every process of both nodes, by PID
        if worker is not None:
            worker.remove()
    assert worker is not None and not worker.processes()


def _on_worker(pid: int) -> bool:
    try:
        return psutil.Process(pid).environ().get(WORKER_ENV) is not None
    except (psutil.Error, OSError):
        return False


def test_trials_of_a_stopped_node_run_again_and_every_config_completes_once(
    two_nodes: RayWorker, workdir: Path
) -> None:
    worker = two_nodes
    module = import_source(workdir, TRAINABLES, "lost_node_trainables")
    marks = workdir / "marks"
    marks.mkdir()
    lost: set[int] = set()

    def stop_the_worker_mid_trial() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            running = {}
            for p in marks.glob("start-*"):
                a, pid = (int(x) for x in p.name.split("-")[1:3])
                if not (marks / f"done-{a}").exists():
                    running[a] = pid
            there = {a for a, pid in running.items() if _on_worker(pid)}
            if there:
                lost.update(there)
                worker.stop()
                return
            time.sleep(0.1)

    stopper = threading.Thread(target=stop_the_worker_mid_trial, daemon=True)
    stopper.start()
    started = time.monotonic()
    results = asyncio.run(
        run_experiment(
            user_name="nora",
            trainable=module.marked,
            experiment_name="lost_node",
            param_space={
                "a": tune.grid_search(list(range(CONFIGS))),
                "sleep": 4.0,
                "marks": str(marks),
            },
            run_with="cluster:loopback",
            run_choice="run",
            dos=["run"],
        )
    )
    stopper.join(timeout=5)
    print(f"sweep with a node stopped: {time.monotonic() - started:.1f} s; lost: {sorted(lost)}")
    assert lost, "the worker node was not stopped while running a trial"
    assert not worker.processes()
    tuner = results["tuner"]
    outcomes = tuner.trial_outcomes()
    assert sorted(o["config"]["a"] for o in outcomes) == list(range(CONFIGS))  # each once
    assert [o["status"] for o in outcomes] == ["TERMINATED"] * CONFIGS, outcomes
    df = tuner.get_dataframe()
    assert sorted(df["config/a"]) == list(range(CONFIGS))  # one row per config
    ran = Counter(int(p.name.split("-")[1]) for p in marks.glob("start-*"))
    assert all(ran[a] >= 2 for a in lost), ran  # the lost trials ran again
    finished = {a: (marks / f"done-{a}").read_text().split() for a in range(CONFIGS)}
    assert all(len(pids) == 1 for pids in finished.values()), finished  # each completed once
