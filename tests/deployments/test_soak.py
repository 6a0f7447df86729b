"""Soak: 20 small sweeps back to back through the deployment leave nothing behind."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.deployments.conftest import Server, wait_final

pytestmark = [pytest.mark.slow, pytest.mark.longest, pytest.mark.timeout(2400)]

RUNS = 20
TRAINABLE = "tests.trainables_for_tests:returning"


def _ours(server: Server) -> list[psutil.Process]:
    """The processes of this deployment: the server, the worker, flow runs and their Ray."""
    home = server.env["PREFECT_HOME"]
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PREFECT_HOME") == home:
                found.append(proc)
        except (psutil.Error, OSError):
            continue  # gone, or not ours to read
    return found


def _counts(server: Server, tmp: Path) -> dict[str, Any]:
    procs = _ours(server)
    ports: set[int] = set()
    fds = 0
    for proc in procs:
        try:
            fds += proc.num_fds()
            ports |= {
                c.laddr.port
                for c in proc.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            }
        except (psutil.Error, OSError):
            continue
    limits = server.post("/v2/concurrency_limits/filter", {"limit": 200})
    return {
        "processes": sorted(p.name() for p in procs if p.is_running()),
        "ports": len(ports),
        "fds": fds,
        "temp": sorted(p.name for p in tmp.iterdir()),
        "ray_sessions": len(list(tmp.glob("ray/session_2*"))),
        "ray_other": sorted(p.name for p in tmp.glob("ray/*") if not p.name.startswith("session")),
        "limits": sorted(lim["name"] for lim in limits),
    }


@pytest.fixture
def run_tmp() -> Iterator[Path]:
    """The flow runs' TMPDIR: short (Ray's socket paths must stay under 108 bytes), private."""
    path = Path(tempfile.mkdtemp(prefix="rsoak", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _sweep(server: Server, tmp: Path, index: int) -> None:
    found = server.get("/deployments/name/radas/sweep")
    run = server.post(
        f"/deployments/{found['id']}/create_flow_run",
        {
            "parameters": {
                "user_name": "soak",
                "trainable": TRAINABLE,
                "experiment_name": f"soak-{index}",
                "param_space": {"a": {"grid_search": [1, 2]}},
                "run_choice": "run",
                "tuner": {},  # not the deployment's two-moons tuner and figure
                "plot": None,
            },
            "job_variables": {"env": {"TMPDIR": str(tmp)}},
        },
    )
    final = wait_final(server, run["id"], timeout=300)
    assert final["state"]["type"] == "COMPLETED", final["state"]


def _settled(server: Server, tmp: Path, before: dict[str, Any]) -> dict[str, Any]:
    """The counts once the last run's processes have exited (up to 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        now = _counts(server, tmp)
        if len(now["processes"]) <= len(before["processes"]) or time.monotonic() > deadline:
            return now
        time.sleep(2)


def test_twenty_sweeps_back_to_back_leave_nothing_behind(deployed: Server, run_tmp: Path) -> None:
    _sweep(deployed, run_tmp, 0)  # warm-up: the worker's first run imports and caches
    before = _settled(deployed, run_tmp, {"processes": []})
    started = time.monotonic()
    for index in range(1, RUNS + 1):
        _sweep(deployed, run_tmp, index)
    after = _settled(deployed, run_tmp, before)
    print(f"\n{RUNS} sweeps in {time.monotonic() - started:.0f} s; before {before}; after {after}")
    assert after["processes"] == before["processes"]
    assert after["ports"] <= before["ports"]
    assert after["fds"] <= before["fds"] + RUNS // 2  # a leak of one a run would show
    assert after["temp"] == before["temp"] and after["ray_other"] == before["ray_other"]
    # Ray keeps each session's logs (about 0.4 MB) in $TMPDIR/ray: one folder a run, no more.
    assert after["ray_sessions"] == before["ray_sessions"] + RUNS
    assert after["limits"] == before["limits"]
    stored = sorted(p.name for p in (deployed.results / "soak").iterdir() if p.is_dir())
    assert len(stored) == RUNS + 1  # every sweep stored its results
