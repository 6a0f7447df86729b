"""A sweep's flow process killed on a real `prefect server start`: the next run starts at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.crash_runs import (
    EXPERIMENT,
    assert_each_completed_once,
    assert_no_lock_left,
    dead_holder_freed,
    finish,
    kill_after_some_trials,
    printed,
    start,
)
from tests.deployments.conftest import Server

pytestmark = pytest.mark.slow


def test_restore_after_the_flow_process_is_killed_on_a_real_server(
    prefect_server: Server, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    # The server lives on; with no worker watching, the flow run stays Running there.
    saved, finished = kill_after_some_trials(tmp_path, marks, prefect_server.api)
    runs = prefect_server.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": ["killme"]}}})
    assert [r["state"]["type"] for r in runs] == ["RUNNING"]  # until the next run finds it gone
    output = finish(
        start(tmp_path, "restore", marks, 3.0, "restore.log", prefect_server.api),
        tmp_path,
        "restore.log",
    )
    assert "ExperimentBusyError" not in output
    released = dead_holder_freed(EXPERIMENT) + "; its flow run is now marked Crashed"
    assert re.search(released, output), output
    assert printed(output, "STATES") == ["COMPLETED", "CRASHED"]  # the killed run says so
    assert_each_completed_once(output, marks, finished)
    kept = len(finished - saved)
    assert f"[radas] {kept} trial{'s' * (kept != 1)} completed after Tune last saved" in output
    assert_no_lock_left(output)
