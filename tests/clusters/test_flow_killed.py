"""A cluster run whose flow process is SIGKILLed after submission: what becomes of its job."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from radas_flows import run_experiment
from radas_flows.clusters.heartbeat import FOLLOWER_TIMEOUT_ENV, follower_timeout
from radas_flows.clusters.jobs import find_jobs, job_client
from radas_flows.clusters.registry import get_cluster
from radas_flows.errors import RadasValueError
from radas_flows.inputs.spec import build_spec
from radas_flows.targets.cluster import KEEP_JOB_ENV
from tests.clusters.helpers import import_source
from tests.crash_runs import ROOT

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("radas_env", "cluster_registry")]

TRAINABLE = """\
import time


def sleeper(config):
    time.sleep(config["sleep"])
    return {"score": config["a"]}
"""
TRIALS, SLEEP, TIMEOUT = 8, 5.0, 5  # 8 trials of 5 s on 2 CPUs: about 20 s to the end

SCRIPT = """\
import asyncio, sys
from ray import tune
from radas_flows import run_experiment
from MODULE import sleeper

asyncio.run(run_experiment(
    user_name="erin", trainable=sleeper, experiment_name=sys.argv[1],
    run_with="cluster:loopback", run_choice="run",
    param_space={"a": tune.grid_search(list(range(TRIALS))), "sleep": SLEEP}))
"""
FINISHED_2 = re.compile(r'"finished": ([2-9]|\d\d)')


def test_follower_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FOLLOWER_TIMEOUT_ENV, raising=False)
    assert follower_timeout() == 60.0
    monkeypatch.setenv(FOLLOWER_TIMEOUT_ENV, "12.5")
    assert follower_timeout() == 12.5
    for bad in ("1", "soon", "nan"):
        monkeypatch.setenv(FOLLOWER_TIMEOUT_ENV, bad)
        with pytest.raises(RadasValueError, match=rf"RADAS_FOLLOWER_TIMEOUT_S='{bad}' must be"):
            follower_timeout()


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


class KilledFlow:
    """A sweep started in its own process group on the loopback cluster, to be SIGKILLed."""

    def __init__(self, workdir: Path, experiment: str, **env: str) -> None:
        self.module = import_source(workdir, TRAINABLE, "killed_trainable")
        self.experiment = experiment
        self.workdir = workdir
        script = SCRIPT.replace("MODULE", self.module.__name__).replace("TRIALS", str(TRIALS))
        (workdir / "sweep.py").write_text(script.replace("SLEEP", str(SLEEP)))
        full_name = build_spec(
            user_name="erin",
            trainable=self.module.sleeper,
            experiment_name=experiment,
            run_with="cluster:loopback",
            cwd=str(workdir),
        ).full_name
        self.client = job_client(get_cluster("loopback"))
        self.jobs = lambda: find_jobs(self.client, "erin", full_name)
        environment = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{workdir}",
            "PREFECT_API_URL": _api_url(),
            FOLLOWER_TIMEOUT_ENV: str(TIMEOUT),
            **env,
        }
        self.log = workdir / f"{experiment}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-u", "sweep.py", experiment],
                cwd=workdir,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.job_id = ""

    def kill_after_the_first_trials(self) -> float:
        """SIGKILL the flow's process group once its job reported finished trials."""
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline and self.process.poll() is None:
                running = [j for j in self.jobs() if not j.status.is_terminal()]
                if running and FINISHED_2.search(
                    self.client.get_job_logs(str(running[0].submission_id))
                ):
                    self.job_id = str(running[0].submission_id)
                    break
                time.sleep(0.5)
            assert self.job_id, f"no job got going:\n{self.log.read_text()[-3000:]}"
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        return time.monotonic()

    def status(self) -> str:
        return str(self.client.get_job_status(self.job_id).value)

    def wait_terminal(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not self.client.get_job_status(self.job_id).is_terminal():
            assert time.monotonic() < deadline, f"job {self.job_id} still {self.status()}"
            time.sleep(0.5)
        return self.status()

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for job in self.jobs():
            if not job.status.is_terminal():
                self.client.stop_job(str(job.submission_id))

    def run(self, run_choice: str) -> dict[str, Any]:
        return asyncio.run(
            run_experiment(
                user_name="erin",
                trainable=self.module.sleeper,
                experiment_name=self.experiment,
                run_with="cluster:loopback",
                run_choice=run_choice,
            )
        )


@pytest.fixture
def killed(workdir: Path) -> Iterator[list[KilledFlow]]:
    flows: list[KilledFlow] = []
    try:
        yield flows
    finally:
        for flow in flows:
            flow.close()


def _scores(results: dict[str, Any]) -> list[int]:
    return sorted(int(s) for s in results["df"].groupby("config/a")["score"].max().dropna())


@pytest.mark.slow
def test_by_default_the_job_stops_itself_when_its_flow_is_killed(
    workdir: Path, killed: list[KilledFlow], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEEP_JOB_ENV, raising=False)
    flow = KilledFlow(workdir, "killed-default")
    killed.append(flow)
    killed_at = flow.kill_after_the_first_trials()
    assert flow.status() == "RUNNING"  # the kill reached only the flow's own processes
    assert flow.wait_terminal(TIMEOUT + 60) == "FAILED"
    took = time.monotonic() - killed_at
    logs = flow.client.get_job_logs(flow.job_id)
    print(f"\nthe job stopped {took:.1f} s after its flow was killed; its log ends:\n{logs[-900:]}")
    assert f"The flow that submitted this job has not been heard from for {TIMEOUT} s" in logs
    # Nothing runs any more: attach analyzes what the job finished and saved.
    results = flow.run("attach")
    assert 2 <= len(_scores(results)) < TRIALS


@pytest.mark.slow
def test_a_kept_job_is_followed_to_its_end_by_attach(
    workdir: Path, killed: list[KilledFlow]
) -> None:
    flow = KilledFlow(workdir, "killed-kept", **{KEEP_JOB_ENV: "1"})
    killed.append(flow)
    flow.kill_after_the_first_trials()
    time.sleep(TIMEOUT + 3)
    assert flow.status() == "RUNNING"  # no watch: it runs on without its flow
    results = flow.run("attach")
    assert flow.status() == "SUCCEEDED"
    assert _scores(results) == list(range(TRIALS))


@pytest.mark.slow
def test_a_kept_job_is_stopped_by_stop_attach_from_a_second_script(
    workdir: Path, killed: list[KilledFlow]
) -> None:
    flow = KilledFlow(workdir, "killed-stopped", **{KEEP_JOB_ENV: "1"})
    killed.append(flow)
    flow.kill_after_the_first_trials()
    results = flow.run("stop_attach")
    assert flow.status() == "STOPPED"
    assert 2 <= len(_scores(results)) < TRIALS
