"""Sweeps in subprocesses (own process group, private Prefect and results) to kill and rerun."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "killme"
TRIALS = 10

DRIVER = textwrap.dedent(f"""
    import asyncio, json, sys
    from ray import tune
    from radas_flows import run_experiment
    from tests.trainables_for_tests import marked

    choice, sleep, marks = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    result = asyncio.run(run_experiment(
        user_name="acc_user", trainable=marked, experiment_name={EXPERIMENT!r},
        param_space={{"a": tune.grid_search(list(range({TRIALS}))), "sleep": sleep,
                      "marks": marks}},
        run_choice=choice, dos=["run"]))
    configs = sorted(r.config["a"] for r in result["tuner"].get_results())
    print("CONFIGS", json.dumps(configs), flush=True)
    df = result["tuner"].get_dataframe()
    rows = sorted([int(a), int(pid), int(s)] for a, pid, s in
                  zip(df["config/a"], df["pid"], df["score"]))
    print("ROWS", json.dumps(rows), flush=True)

    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:
        limits = [limit.name for limit in client.read_global_concurrency_limits(limit=200)]
        variables = [v.name for v in client.read_variables()]
        runs = client.read_flow_runs()
    states = sorted(r.state.type.value for r in runs if r.name == {EXPERIMENT!r} and r.state)
    print("LIMITS", json.dumps(limits), flush=True)
    print("VARIABLES", json.dumps(variables), flush=True)
    print("STATES", json.dumps(states), flush=True)
""")


def dead_holder_freed(experiment: str) -> str:
    """What the next run logs on finding the lock's holder dead (a regular expression).

    It releases the dead holder's slot, or finds that the server already freed it: a loaded
    server can take longer to answer than the holder's 60 s lease lasts.
    """
    freed = r"(?:Released the lock|The lock) of experiment"
    return rf"{freed} '{experiment}' .*: its process \d+ on .* has exited"


def _env(tmp_path: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """A private ephemeral Prefect (its own PREFECT_HOME), or ``api_url``; a results root."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "RADAS_RESULTS_ROOT": str(tmp_path / "results"),
        **extra,
    }
    env.pop("PREFECT_API_URL", None)  # the embedded default: an ephemeral Prefect API
    if api_url:
        env["PREFECT_API_URL"] = api_url
    if "RADAS_EXPERIMENT_LOCK_WAIT_S" not in extra:
        env.pop("RADAS_EXPERIMENT_LOCK_WAIT_S", None)  # fail at once unless told to wait
    return env


def start(
    tmp_path: Path,
    choice: str,
    marks: Path,
    sleep: float,
    log: str,
    api_url: str | None = None,
    **extra: str,
) -> subprocess.Popen[bytes]:
    """Start the sweep (``driver.py`` in ``tmp_path``) with ``choice``; its output in ``log``."""
    marks.mkdir(exist_ok=True)
    (tmp_path / "driver.py").write_text(DRIVER)
    with open(tmp_path / log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-u", "driver.py", choice, str(sleep), str(marks)],
            cwd=tmp_path,
            env=_env(tmp_path, api_url, **extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ray and the ephemeral server too
        )


def finish(proc: subprocess.Popen[bytes], tmp_path: Path, log: str, timeout: float = 420) -> str:
    """Wait for a started sweep (kill its group if it overruns ``timeout``); its output."""
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return (tmp_path / log).read_text(errors="replace")


def printed(output: str, key: str) -> list[object]:
    """The JSON list the driver printed after ``key``."""
    match = re.search(rf"^{key} (.*)$", output, re.MULTILINE)
    assert match, f"no {key} line in the output:\n{output[-4000:]}"
    return list(json.loads(match.group(1)))


def starts(marks: Path) -> Counter[int]:
    """How many times each config started (one marker per execution)."""
    return Counter(int(p.name.split("-")[1]) for p in marks.glob("start-*"))


def done(marks: Path) -> set[int]:
    """The configs that finished at least once."""
    return {int(p.name.split("-")[1]) for p in marks.glob("done-*")}


def snapshotted(tmp_path: Path) -> set[int]:
    """The configs Tune's latest saved experiment state records as finished (TERMINATED)."""
    states = sorted((tmp_path / "results").glob("acc_user/*/experiment_state-*.json"))
    if not states:
        return set()
    try:
        trials = json.loads(states[-1].read_text())["trial_data"]
    except (OSError, ValueError):
        return set()  # being written
    recorded = (json.loads(trial) for trial, _ in trials)
    return {int(t["config"]["a"]) for t in recorded if t["status"] == "TERMINATED"}


def journaled(tmp_path: Path) -> set[int]:
    """The configs the driver recorded as completed (``radas_completed/<trial id>.json``)."""
    configs = set()
    for entry in (tmp_path / "results").glob("acc_user/*/radas_completed/*.json"):
        try:
            state = json.loads(json.loads(entry.read_text())["state"])
        except (OSError, ValueError):
            continue  # being written
        configs.add(int(state["config"]["a"]))
    return configs


def kill_after_some_trials(
    tmp_path: Path, marks: Path, api_url: str | None = None
) -> tuple[set[int], set[int]]:
    """Run the sweep; SIGKILL its process group after trials completed since Tune's last save.

    Tune saves its experiment state now and then (``TUNE_GLOBAL_CHECKPOINT_S``; in its
    ``auto`` mode every 10 s or more, longer on a loaded machine): here every 4 s, so the
    moment is the same on any machine. The kill comes once Tune's saved state holds 2
    finished trials and the driver has recorded at least one more as completed since.

    Returns (configs Tune's saved state records as finished, configs the driver recorded
    as completed), both read after the kill.
    """
    first = start(tmp_path, "run", marks, 3.0, "first.log", api_url, TUNE_GLOBAL_CHECKPOINT_S="4")
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None:
            saved = snapshotted(tmp_path)
            if len(saved) >= 2 and journaled(tmp_path) - saved:
                break
            time.sleep(0.05)
        assert first.poll() is None, "the sweep ended before it could be killed"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver, its Ray and its Prefect server
        first.wait()
    saved, recorded = snapshotted(tmp_path), journaled(tmp_path)
    assert len(saved) >= 2, (tmp_path / "first.log").read_text()[-4000:]
    assert recorded - saved, "no trial completed after Tune's last save"
    assert saved <= recorded <= done(marks) and len(recorded) < TRIALS
    return saved, recorded


def assert_each_completed_once(output: str, marks: Path, finished: set[int]) -> None:
    """Every config completed; none recorded as completed before the kill ran again.

    ``finished`` are the trials the driver had recorded as completed. (A trial killed after
    its function returned but before the driver received its result has no result to keep:
    it may run again.) Each config has one row, from the execution that completed it: for
    a trial finished at the kill, its ``pid`` is the one in its only start marker.
    """
    assert printed(output, "CONFIGS") == list(range(TRIALS))
    assert done(marks) == set(range(TRIALS))
    ran = starts(marks)
    assert {a: ran[a] for a in finished} == {a: 1 for a in finished}, ran  # none ran twice
    rows = printed(output, "ROWS")
    assert [row[0] for row in rows] == list(range(TRIALS)), rows  # one row per config
    first_pid = {
        int(p.name.split("-")[1]): int(p.name.split("-")[2])
        for p in marks.glob("start-*")
        if int(p.name.split("-")[1]) in finished
    }
    assert {a: pid for a, pid, _ in rows if a in finished} == first_pid
    assert all(score == a for a, _, score in rows)


def assert_no_lock_left(output: str) -> None:
    """The sweep's Prefect API holds no radas concurrency limit or holder record any more."""
    assert not [n for n in printed(output, "LIMITS") if str(n).startswith("radas-")]
    assert not [n for n in printed(output, "VARIABLES") if str(n).startswith("radas-")]
