"""A real Prefect server, process work pool, `prefect deploy` of prefect.yaml and a worker."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
POOL = "radas-process"  # the work pool prefect.yaml names


@dataclass
class Server:
    """A running Prefect server and the environment that talks to it."""

    url: str
    env: dict[str, str]
    home: Path
    results: Path

    @property
    def api(self) -> str:
        return f"{self.url}/api"

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """Call the REST API; retry what Prefect's own client retries (SQLite busy: 503).

        Prefect's server answers 503 when SQLite stayed locked past its busy timeout (a loaded
        server: PrefectHQ/prefect#16299); nothing was written then, so a retry is safe. A GET
        that times out is retried too: on a loaded 2-CPU machine the server can stall for a
        while (it is busy with the worker's runs and their Ray), and reading is safe to repeat.
        """
        for attempt in range(10):
            try:
                response = httpx.request(method, f"{self.api}{path}", json=body, timeout=60)
            except (httpx.TimeoutException, httpx.NetworkError):
                if method != "GET" or attempt == 9:
                    raise
                time.sleep(1.0 * (attempt + 1))
                continue
            if response.status_code not in (429, 502, 503) or attempt == 9:
                break
            time.sleep(0.5 * (attempt + 1))
        return response

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """``send``, raising on an error status; the JSON answer."""
        response = self.send(method, path, body)
        response.raise_for_status()
        return response.json()

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def prefect(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the prefect CLI from the repository root against this server."""
        return subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own process group (so it and its children stop together)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process we started, by its PID (its process group): SIGTERM, then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    else:  # the leader exited; its children may not have
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def tail(path: Path, lines: int = 40) -> str:
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
    )


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`prefect server start` on 127.0.0.1 at a free port, with its own PREFECT_HOME."""
    base = tmp_path_factory.mktemp("prefect-e2e")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "RADAS_", "RAY_ADDRESS"))
    }
    env.update(
        PREFECT_HOME=str(base / "home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_API_URL=f"{url}/api",
        # Each poll writes to the server's SQLite; every 2 s keeps the writes few.
        PREFECT_WORKER_QUERY_SECONDS="2",
        # A request refused with 503 (SQLite locked) is logged in server.log.
        PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true",
        RADAS_LOCAL_NUM_CPUS="2",
        RADAS_RESULTS_ROOT=str(base / "results"),
        RADAS_NIGHTLY_PARALLEL="2",
        RAY_USAGE_STATS_ENABLED="0",
        MPLBACKEND="Agg",
        PWD=str(ROOT),  # what `{{ $PWD }}` in prefect.yaml resolves to, as in a shell
    )
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    log = base / "server.log"
    process = start(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        server_env,
        log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start:\n{tail(log)}")
            time.sleep(0.5)
        yield Server(url=url, env=env, home=base, results=base / "results")
    finally:
        stop(process)


@pytest.fixture(scope="session")
def deployed(prefect_server: Server) -> Iterator[Server]:
    """The repository's prefect.yaml deployed to a process work pool, with a worker polling it."""
    server = prefect_server
    created = server.prefect("work-pool", "create", POOL, "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    deploy = server.prefect("--no-prompt", "deploy", "--all", timeout=180)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    log = server.home / "worker.log"
    worker = start(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL], server.env, log
    )
    try:
        yield server
    finally:
        stop(worker)


def wait_final(server: Server, flow_run_id: str, timeout: float = 240) -> dict[str, Any]:
    """Poll a flow run until it reaches a final state."""
    deadline = time.monotonic() + timeout
    while True:
        run = server.get(f"/flow_runs/{flow_run_id}")
        if run["state"] and run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return dict(run)
        if time.monotonic() > deadline:
            worker_log = tail(server.home / "worker.log", 80)
            raise TimeoutError(f"flow run {run['name']} stuck in {run['state']}:\n{worker_log}")
        time.sleep(0.25)


def create_run(server: Server, deployment: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Create a flow run of a deployment through the REST API (as the UI's Run button does)."""
    flow_name, name = deployment.split("/")
    found = server.get(f"/deployments/name/{flow_name}/{name}")
    return dict(
        server.post(f"/deployments/{found['id']}/create_flow_run", {"parameters": parameters})
    )
