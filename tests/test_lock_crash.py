"""The experiment lock survives killed runs: the next run starts at once, two live runs never."""

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

import pytest

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

    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:
        limits = [limit.name for limit in client.read_global_concurrency_limits(limit=200)]
        variables = [v.name for v in client.read_variables()]
    print("LIMITS", json.dumps(limits), flush=True)
    print("VARIABLES", json.dumps(variables), flush=True)
""")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A private ephemeral Prefect (its own PREFECT_HOME) and results root, as a user has."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "RADAS_RESULTS_ROOT": str(tmp_path / "results"),
        **extra,
    }
    env.pop("PREFECT_API_URL", None)  # the embedded default: an ephemeral Prefect API
    if "RADAS_EXPERIMENT_LOCK_WAIT_S" not in extra:
        env.pop("RADAS_EXPERIMENT_LOCK_WAIT_S", None)  # fail at once unless told to wait
    return env


def _start(
    tmp_path: Path, choice: str, marks: Path, sleep: float, log: str, **extra: str
) -> subprocess.Popen[bytes]:
    marks.mkdir(exist_ok=True)
    (tmp_path / "driver.py").write_text(DRIVER)
    with open(tmp_path / log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-u", "driver.py", choice, str(sleep), str(marks)],
            cwd=tmp_path,
            env=_env(tmp_path, **extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ray and the ephemeral server too
        )


def _finish(proc: subprocess.Popen[bytes], tmp_path: Path, log: str, timeout: float = 420) -> str:
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return (tmp_path / log).read_text(errors="replace")


def _printed(output: str, key: str) -> list[object]:
    match = re.search(rf"^{key} (.*)$", output, re.MULTILINE)
    assert match, f"no {key} line in the output:\n{output[-4000:]}"
    return list(json.loads(match.group(1)))


def _starts(marks: Path) -> Counter[int]:
    return Counter(int(p.name.split("-")[1]) for p in marks.glob("start-*"))


def _done(marks: Path) -> set[int]:
    return {int(p.name.split("-")[1]) for p in marks.glob("done-*")}


def _snapshotted(tmp_path: Path) -> set[int]:
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


def _kill_after_some_trials(tmp_path: Path, marks: Path) -> set[int]:
    """Run the sweep; SIGKILL its process group once Tune has saved 2 finished trials.

    Returns the configs Tune's saved state records as finished at the kill. Tune saves its
    experiment state now and then (every 10 s or more, ``TUNE_GLOBAL_CHECKPOINT_S=auto``):
    a trial that finished after the last save is not known to be finished and runs again.
    """
    first = _start(tmp_path, "run", marks, 3.0, "first.log")
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None:
            if len(_snapshotted(tmp_path)) >= 2:
                break
            time.sleep(0.1)
        assert first.poll() is None, "the sweep ended before it could be killed"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver, its Ray and its Prefect server
        first.wait()
    recorded = _snapshotted(tmp_path)
    assert len(recorded) >= 2, (tmp_path / "first.log").read_text()[-4000:]
    assert len(_done(marks)) < TRIALS
    return recorded


def _assert_no_lock_left(output: str) -> None:
    assert not [n for n in _printed(output, "LIMITS") if str(n).startswith("radas-")]
    assert not [n for n in _printed(output, "VARIABLES") if str(n).startswith("radas-")]


@pytest.mark.slow
def test_restore_after_the_process_group_is_killed_starts_at_once(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    finished = _kill_after_some_trials(tmp_path, marks)
    done_at_kill = _done(marks)
    output = _finish(
        _start(tmp_path, "restore", marks, 3.0, "restore.log"), tmp_path, "restore.log"
    )
    assert "ExperimentBusyError" not in output
    assert re.search(r"Released the lock of experiment 'killme' .* has exited", output), output[
        -4000:
    ]
    assert _printed(output, "CONFIGS") == list(range(TRIALS))
    assert _done(marks) == set(range(TRIALS))
    starts = _starts(marks)
    assert {a: starts[a] for a in finished} == {a: 1 for a in finished}  # none ran twice
    again = sorted(a for a in done_at_kill - finished if starts[a] > 1)
    print(
        f"finished at the kill: {sorted(done_at_kill)}; saved by Tune: {sorted(finished)}; "
        f"ran again: {again}"
    )
    _assert_no_lock_left(output)


@pytest.mark.slow
def test_run_after_the_process_group_is_killed_replaces_the_experiment(tmp_path: Path) -> None:
    _kill_after_some_trials(tmp_path, tmp_path / "marks")
    again = tmp_path / "marks-again"
    output = _finish(_start(tmp_path, "run", again, 0.5, "run.log"), tmp_path, "run.log")
    assert "ExperimentBusyError" not in output
    assert "Released the lock of experiment 'killme'" in output
    assert _printed(output, "CONFIGS") == list(range(TRIALS))  # each config once
    assert _starts(again) == Counter({a: 1 for a in range(TRIALS)})
    _assert_no_lock_left(output)


@pytest.mark.slow
def test_a_second_live_run_is_refused_or_waits(tmp_path: Path) -> None:
    first_marks, waiting_marks = tmp_path / "first", tmp_path / "waiting"
    first = _start(tmp_path, "run", first_marks, 5.0, "first.log")
    try:
        deadline = time.time() + 300
        while not _starts(first_marks) and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert _starts(first_marks), (tmp_path / "first.log").read_text()[-4000:]
        waiting = _start(
            tmp_path, "run", waiting_marks, 0.2, "waiting.log", RADAS_EXPERIMENT_LOCK_WAIT_S="inf"
        )
        refused = _finish(
            _start(tmp_path, "restore", tmp_path / "unused", 0.2, "refused.log"),
            tmp_path,
            "refused.log",
        )
        assert first.poll() is None, "the first run ended before the second was tried"
        assert "ExperimentBusyError: Experiment 'killme' of user 'acc_user' is already running" in (
            refused
        )
        assert "in flow run 'killme' (id " in refused
        assert not list((tmp_path / "unused").iterdir())  # nothing of it ran
        first_output = _finish(first, tmp_path, "first.log")
        waiting_output = _finish(waiting, tmp_path, "waiting.log")
    finally:
        for proc in (first,):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert _printed(first_output, "CONFIGS") == list(range(TRIALS))
    assert _printed(waiting_output, "CONFIGS") == list(range(TRIALS))
    first_end = max(float(t) for p in first_marks.glob("done-*") for t in p.read_text().split())
    waiting_start = min(int(p.name.split("-")[3]) / 1e9 for p in waiting_marks.glob("start-*"))
    assert waiting_start >= first_end  # never both at once
    _assert_no_lock_left(waiting_output)
