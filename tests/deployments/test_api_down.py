"""The Prefect API goes away mid-sweep on a real `prefect server start`.

The trials run to the end and their results are on disk; the analysis, which Prefect cannot
start as a task without its API, runs in the flow process and writes the table; the lock
cannot be released and says so; ``run_experiment`` returns the results although Prefect
cannot record the flow's end. The server, back on the same database, shows the flow run as
Running until the next run of the experiment finds its holder gone and marks it Crashed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.crash_runs import dead_holder_freed
from tests.deployments.conftest import free_port, start, stop, tail

pytestmark = pytest.mark.slow

TRIALS = 8
EXPERIMENT = "apidown"
DRIVER = textwrap.dedent(f"""
    import asyncio, sys
    from ray import tune
    from radas_flows import run_experiment
    from tests.trainables_for_tests import marked

    result = asyncio.run(run_experiment(
        user_name="acc_user", trainable=marked, experiment_name={EXPERIMENT!r},
        param_space={{"a": tune.grid_search(list(range({TRIALS}))), "sleep": 1.0,
                      "marks": sys.argv[1]}},
        run_choice="run", dos=sys.argv[2].split(","), cpu_per_trial=1))
    print("ROWS", len(result["df"]), flush=True)
""")


def serve(base: Path, port: int, log: str) -> subprocess.Popen[bytes]:
    """`prefect server start` on 127.0.0.1:port with the database under ``base``; healthy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RADAS_"))}
    env.update(PREFECT_HOME=str(base / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    process = start(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env,
        base / log,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"the Prefect server did not start:\n{tail(base / log)}")
        time.sleep(0.5)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """What the test starts; all stopped (by PID, with their process groups) at the end."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            stop(process)


def test_sweep_finishes_and_keeps_its_results_when_the_api_goes_away(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = serve(tmp_path, port, "server.log")
    processes.append(server)
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RADAS_"))}
    env.update(
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        PREFECT_HOME=str(tmp_path / "client-home"),
        PREFECT_API_URL=api,
        RADAS_RESULTS_ROOT=str(tmp_path / "results"),
        RADAS_LOCAL_NUM_CPUS="2",
        RAY_USAGE_STATS_ENABLED="0",
        MPLBACKEND="Agg",
        # With Prefect's default client retries (5, with backoff) every call to the gone API
        # takes about 60 s, and the process had not exited 7 minutes after the trials ended.
        # One retry (2 s) still rides out the 503 a busy SQLite server answers now and then.
        PREFECT_CLIENT_MAX_RETRIES="1",
    )
    log = tmp_path / "sweep.log"
    with log.open("wb") as out:
        sweep = subprocess.Popen(
            [sys.executable, "-u", "driver.py", str(marks), "run,analyze"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    processes.append(sweep)
    deadline = time.monotonic() + 300
    # The first trial has finished and the monitor task has started: a task that starts while
    # the API is gone fails the flow (only the analysis has a fallback), so on a loaded machine
    # stopping the server before the monitor task starts would test something else.
    while not (
        list(marks.glob("done-*"))
        and "experiment_monitor" in (started := tail(log, 400))
        and " - progress: " in started
    ):
        assert sweep.poll() is None and time.monotonic() < deadline, tail(log, 80)
        time.sleep(0.1)
    stop(server)  # SIGTERM to the server's process group: the API is gone
    assert len(list(marks.glob("done-*"))) < TRIALS, "the sweep ended before the API went away"
    sweep.wait(timeout=420)
    output = log.read_text(errors="replace")
    folder = next((tmp_path / "results" / "acc_user").glob(f"*{EXPERIMENT}"))
    finished = sorted(folder.glob("marked_*/result.json"))
    csv = sorted(folder.rglob("radas_results.csv"))
    # Back on the same database: what the UI shows for the flow run.
    processes.append(serve(tmp_path, port, "server2.log"))
    runs = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=30).json()
    states = [(r["name"], r["state"]["type"]) for r in runs]
    assert sweep.returncode == 0, output[-4000:]
    assert f"ROWS {TRIALS}" in output, output[-4000:]  # the caller got its results
    assert len(finished) == TRIALS, output[-4000:]  # every trial's result is on disk
    # Prefect cannot start the analysis task (its concurrency tags need the API): the flow
    # process analyzes instead and writes the table.
    assert "analyzing in the flow process instead" in output, output[-4000:]
    assert len(csv) == 1, output[-4000:]
    assert "Could not release the lock" in output, output[-4000:]
    assert "did not answer to record the end of its flow run" in output, output[-4000:]
    # The server never heard of the end: the UI shows the flow run as Running.
    assert states == [(EXPERIMENT, "RUNNING")]
    # With the API back, analyzing the stored trials writes the table.
    csv[0].unlink()
    del env["PREFECT_CLIENT_MAX_RETRIES"]  # the API is back: Prefect's own retries apply
    again = subprocess.run(
        [sys.executable, "-u", "driver.py", str(marks), "analyze"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert f"ROWS {TRIALS}" in again.stdout
    assert list(folder.rglob("radas_results.csv"))
    after = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=30).json()
    # That next run finds the lock's holder gone: it releases the lock and marks the stranded
    # flow run Crashed, so the UI no longer shows a Running sweep that is not running.
    released = dead_holder_freed("apidown")
    assert re.search(released, again.stdout + again.stderr), again.stderr[-4000:]
    assert "its flow run is now marked Crashed" in again.stdout + again.stderr
    states_after = {r["id"]: r["state"]["type"] for r in after}
    assert states_after[runs[0]["id"]] == "CRASHED"
    assert sorted(states_after.values()) == ["COMPLETED", "CRASHED"]
