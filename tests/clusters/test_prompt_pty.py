"""The "experiment exists" question on a real terminal, while a job of the experiment runs."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radas_flows.clusters.jobs import job_client
from radas_flows.clusters.registry import get_cluster
from radas_flows.inputs.spec import build_spec
from radas_flows.stages.submit import driver_spec_for
from radas_flows.targets.cluster import ClusterTarget
from tests.clusters.helpers import import_source

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.usefixtures("radas_env", "cluster_registry"),
]

ROOT = Path(__file__).resolve().parents[2]

TRAINABLE = """\
import time


def first_fast(config):
    if config["a"] != 1:
        time.sleep(300)  # still running when the question is answered
    return {"score": config["a"]}
"""

SCRIPT = """\
import asyncio

from radas_flows import run_experiment
from {module} import first_fast

results = asyncio.run(
    run_experiment(
        user_name="erin",
        trainable=first_fast,
        experiment_name="prompted",
        run_with="cluster:loopback",
    )
)
print("SCORES", sorted(results["df"]["score"].dropna().astype(int)))
"""


def read_until(fd: int, wanted: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """What the terminal showed until ``wanted`` appeared (or the process ended)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    return seen.decode(errors="replace")


def test_prompt_offers_attach_and_stop_attach_of_a_running_job(workdir: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    mod = import_source(workdir, TRAINABLE, "prompt_trainables")
    spec = build_spec(
        user_name="erin",
        trainable=mod.first_fast,
        experiment_name="prompted",
        run_with="cluster:loopback",
        param_space={"a": {"grid_search": [1, 2]}},
        run_choice="run",
        cwd=str(workdir),
    )
    target = ClusterTarget("loopback")
    driver_spec = driver_spec_for(spec, "run", cpu_per_trial=1, check=target.check(spec))
    handle = target.submit(spec, driver_spec, submit_key=None)  # a job no flow follows
    client = job_client(get_cluster("loopback"))
    (workdir / "run.py").write_text(SCRIPT.format(module=mod.__name__))
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PYTHONPATH": str(ROOT),
        "MPLBACKEND": "Agg",
    }
    master, slave = pty.openpty()
    proc = None
    try:
        deadline = time.monotonic() + 120  # the first trial completed: something to analyze
        while '"finished": 1' not in client.get_job_logs(handle.job_id):
            assert time.monotonic() < deadline, client.get_job_logs(handle.job_id)[-2000:]
            time.sleep(0.5)
        proc = subprocess.Popen(
            [sys.executable, "-u", "run.py"],
            cwd=workdir,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        question = read_until(master, "[A/s]", proc, timeout=240)
        assert "[A/s]" in question, question[-3000:]
        assert f"is still running on cluster 'loopback': {handle.job_id}" in question
        assert "[a]ttach to it" in question and "[s]top it and analyze" in question
        os.write(master, b"s\n")
        rest = read_until(master, "SCORES", proc, timeout=240)
        rest += read_until(master, "\n", proc, timeout=10)
        assert proc.wait(timeout=120) == 0, rest[-3000:]
        assert "SCORES [1]" in rest, rest[-3000:]
        assert str(client.get_job_status(handle.job_id).value) == "STOPPED"
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
        if not client.get_job_status(handle.job_id).is_terminal():
            client.stop_job(handle.job_id)
        os.close(master)
