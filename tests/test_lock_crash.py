"""The experiment lock survives killed runs: the next run starts at once, two live runs never."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.crash_runs import (
    EXPERIMENT,
    TRIALS,
    assert_each_completed_once,
    assert_no_lock_left,
    dead_holder_freed,
    finish,
    journaled,
    kill_after_some_trials,
    printed,
    start,
    starts,
)


@pytest.mark.slow
def test_restore_after_the_process_group_is_killed_starts_at_once(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    saved, finished = kill_after_some_trials(tmp_path, marks)
    output = finish(start(tmp_path, "restore", marks, 3.0, "restore.log"), tmp_path, "restore.log")
    assert "ExperimentBusyError" not in output
    released = dead_holder_freed(EXPERIMENT) + "; its flow run is now marked Crashed"
    assert re.search(released, output), output[-4000:]
    assert printed(output, "STATES") == ["COMPLETED", "CRASHED"]  # the killed run says so
    assert_each_completed_once(output, marks, finished)
    kept = len(finished - saved)
    assert f"[radas] {kept} trial{'s' * (kept != 1)} completed after Tune last saved" in output
    print(f"finished at the kill: {sorted(finished)}; saved by Tune: {sorted(saved)}")
    assert_no_lock_left(output)


@pytest.mark.slow
def test_run_after_the_process_group_is_killed_replaces_the_experiment(tmp_path: Path) -> None:
    kill_after_some_trials(tmp_path, tmp_path / "marks")
    again = tmp_path / "marks-again"
    output = finish(start(tmp_path, "run", again, 0.5, "run.log"), tmp_path, "run.log")
    assert "ExperimentBusyError" not in output
    assert re.search(dead_holder_freed(EXPERIMENT), output), output[-4000:]
    assert "after Tune last saved its state" not in output  # nothing of the old run is kept
    assert printed(output, "CONFIGS") == list(range(TRIALS))  # each config once
    assert starts(again) == Counter({a: 1 for a in range(TRIALS)})
    # Every row comes from the new run's executions, and so does every completion record.
    new_pids = {
        int(p.name.split("-")[1]): int(p.name.split("-")[2])
        for p in again.iterdir()
        if p.name.startswith("start-")
    }
    assert {a: pid for a, pid, _ in printed(output, "ROWS")} == new_pids
    assert len(printed(output, "ROWS")) == TRIALS
    assert journaled(tmp_path) == set(range(TRIALS))
    assert_no_lock_left(output)


@pytest.mark.slow
def test_a_second_live_run_is_refused_or_waits(tmp_path: Path) -> None:
    first_marks, waiting_marks = tmp_path / "first", tmp_path / "waiting"
    first_marks.mkdir()
    (first_marks / "hold").touch()  # the first run cannot end before the others are tried
    first = start(tmp_path, "run", first_marks, 1.0, "first.log")
    try:
        deadline = time.time() + 300
        while not starts(first_marks) and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert starts(first_marks), (tmp_path / "first.log").read_text()[-4000:]
        waiting = start(
            tmp_path, "run", waiting_marks, 0.2, "waiting.log", RADAS_EXPERIMENT_LOCK_WAIT_S="inf"
        )
        refused = finish(
            start(tmp_path, "restore", tmp_path / "unused", 0.2, "refused.log"),
            tmp_path,
            "refused.log",
        )
        assert first.poll() is None, "the first run ended before the second was tried"
        assert "ExperimentBusyError: Experiment 'killme' of user 'acc_user' is already running" in (
            refused
        )
        assert "in flow run 'killme' (id " in refused
        assert not list((tmp_path / "unused").iterdir())  # nothing of it ran
        (first_marks / "hold").unlink()
        first_output = finish(first, tmp_path, "first.log")
        waiting_output = finish(waiting, tmp_path, "waiting.log")
    finally:
        for proc in (first,):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert printed(first_output, "CONFIGS") == list(range(TRIALS))
    assert printed(waiting_output, "CONFIGS") == list(range(TRIALS))
    first_end = max(float(t) for p in first_marks.glob("done-*") for t in p.read_text().split())
    waiting_start = min(int(p.name.split("-")[3]) / 1e9 for p in waiting_marks.glob("start-*"))
    assert waiting_start >= first_end  # never both at once
    assert_no_lock_left(waiting_output)
