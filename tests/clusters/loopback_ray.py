"""Start and stop a real loopback Ray head (`ray start --head`) with its own token and registry."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

# Every process of the test cluster inherits this variable (raylet, GCS, dashboard, job
# drivers, workers), so teardown can find exactly those processes and no others.
MARKER_ENV = "RADAS_TEST_RAY_HEAD"
#: A variable set only in the head's environment (so in every job's): a secret "on the cluster".
CLUSTER_SECRET_ENV = "RADAS_TEST_CLUSTER_SECRET"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RayHead:
    """A running loopback Ray head and the registry that names it."""

    temp_dir: Path
    dashboard_url: str
    gcs_address: str
    token_file: Path
    registry: Path
    offline_url: str
    start_seconds: float
    cluster_secret: str = ""  # the value of CLUSTER_SECRET_ENV on the cluster

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()


def _get(url: str, token: str | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait_ready(dashboard_url: str, token: str, deadline: float) -> None:
    """Wait until the dashboard reports the cluster's resources (the monitor has run)."""
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            code, body = _get(dashboard_url + "/api/cluster_status", token)
            if code == 200:
                data = json.loads(body).get("data", {})
                usage = ((data.get("clusterStatus") or {}).get("loadMetricsReport") or {}).get(
                    "usage"
                ) or {}
                if "CPU" in usage:
                    return
                last = "no resource usage yet"
            else:
                last = f"HTTP {code}"
        except OSError as e:
            last = repr(e)
        time.sleep(0.5)
    raise RuntimeError(f"The test Ray head at {dashboard_url} did not become ready: {last}")


def _cluster_processes(marker: str) -> list[psutil.Process]:
    """The processes of one test cluster: those with its marker in their environment.

    Job drivers run in sessions of their own, so the session of `ray start` does not find
    them all; the marker does, since every process of the cluster inherits it.
    """
    me = os.getpid()
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(MARKER_ENV) == marker:
                found[proc.pid] = proc
        except (psutil.Error, OSError):
            continue
    for proc in list(found.values()):
        try:
            for child in proc.children(recursive=True):
                if child.pid != me:
                    found[child.pid] = child
        except psutil.Error:
            continue
    return list(found.values())


def stop_head(head: RayHead) -> float:
    """Stop only this test cluster's processes (never `ray stop`, which stops every Ray)."""
    start = time.monotonic()
    procs = _cluster_processes(str(head.temp_dir))
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=1.5)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=3)
    shutil.rmtree(head.temp_dir, ignore_errors=True)
    return time.monotonic() - start


def start_head(num_cpus: int = 2, num_gpus: int = 2, node_ip: str = "127.0.0.1") -> RayHead:
    """Start `ray start --head` on loopback with a private temp dir, token and ports.

    ``node_ip`` is where its GCS and raylet listen (the dashboard is on 127.0.0.1): a head
    that worker nodes join uses another loopback address (see :func:`start_worker`).
    """
    # A short path: Ray's Unix sockets live under the temp dir and paths are limited to 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rdsray-", dir="/tmp"))
    token_file = temp_dir / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    ports = {
        name: free_port()
        for name in (
            "port",
            "dashboard-port",
            "ray-client-server-port",
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
    }
    cluster_secret = f"cluster-secret-{secrets.token_hex(16)}"
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(name, None)
    env.update(
        {
            # Token auth on, with this cluster's own token: ~/.ray/auth_token is not touched.
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_file),
            # Ray turns --node-ip-address=127.0.0.1 into the machine's external address
            # unless single-node mode is on; with it every server binds to loopback.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            # Job entrypoints run `python`: make it this virtual environment's.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            MARKER_ENV: str(temp_dir),
            CLUSTER_SECRET_ENV: cluster_secret,
        }
    )
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        f"--node-ip-address={node_ip}",
        "--dashboard-host=127.0.0.1",
        f"--num-cpus={num_cpus}",
        f"--num-gpus={num_gpus}",
        "--object-store-memory=200000000",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        *(f"--{name}={port}" for name, port in ports.items()),
    ]
    started = time.monotonic()
    # A session of its own, so that signals sent to the test run's terminal do not reach it.
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    head = RayHead(
        temp_dir=temp_dir,
        dashboard_url=f"http://127.0.0.1:{ports['dashboard-port']}",
        gcs_address=f"{node_ip}:{ports['port']}",
        token_file=token_file,
        registry=temp_dir / "clusters.toml",
        offline_url=f"http://127.0.0.1:{free_port()}",
        start_seconds=0.0,
        cluster_secret=cluster_secret,
    )
    try:
        output, _ = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"`ray start --head` failed ({proc.returncode}):\n{output[-4000:]}")
        _wait_ready(head.dashboard_url, head.token, time.monotonic() + 60)
    except BaseException:
        proc.kill()
        stop_head(head)
        raise
    head.registry.write_text(
        f"""\
[loopback]
address = "{head.dashboard_url}"
cpu_per_node = {num_cpus}
gpu_per_node = {num_gpus}
gpu_per_cpu = {num_gpus / num_cpus}
hint = "loopback test cluster with {num_cpus} CPUs and {num_gpus} logical GPUs"
token_file = "{token_file}"
results_root = "{temp_dir / "results"}"

[offline]
address = "{head.offline_url}"
cpu_per_node = 4
gpu_per_node = 0
gpu_per_cpu = 0
hint = "nothing listens at this address"
"""
    )
    return RayHead(**{**head.__dict__, "start_seconds": time.monotonic() - started})


#: Set in a joined worker node's environment only, so its processes can be told apart.
WORKER_ENV = "RADAS_TEST_RAY_WORKER"
#: Loopback addresses of a head that worker nodes join, and of its worker node (not
#: 127.0.0.1, which Ray's multi-node mode replaces by the machine's address).
JOINABLE_HEAD_IP = "127.0.0.2"
WORKER_IP = "127.0.0.3"


@dataclass(frozen=True)
class RayWorker:
    """A worker node joined to a loopback head (its processes carry ``WORKER_ENV=name``)."""

    head: RayHead
    name: str
    temp_dir: Path  # its own: two nodes of one machine must not share their session files

    def processes(self) -> list[psutil.Process]:
        """This node's processes: its raylet and everything under it (workers, trial actors)."""
        return [
            p
            for p in _cluster_processes(str(self.head.temp_dir))
            if _environ(p).get(WORKER_ENV) == self.name
        ]

    def stop(self) -> int:
        """Stop this node's processes, as `ray stop` on that machine does; their count."""
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=5)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=3)
        return len(procs)

    def remove(self) -> None:
        """Stop the node and delete its temp dir."""
        self.stop()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def cpus_total(self) -> float:
        """The CPUs the head's dashboard reports for the whole cluster (0 when unknown)."""
        try:
            code, body = _get(self.head.dashboard_url + "/api/cluster_status", self.head.token)
            data = json.loads(body).get("data", {}) if code == 200 else {}
        except (OSError, ValueError):
            return 0.0
        report = (data.get("clusterStatus") or {}).get("loadMetricsReport") or {}
        usage = (report.get("usage") or {}).get("CPU") or [0, 0]
        return float(usage[1])


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return dict(proc.environ())
    except (psutil.Error, OSError):
        return {}


def start_worker(head: RayHead, num_cpus: int, name: str = "worker") -> RayWorker:
    """Join a worker node (`ray start --address=...`) on loopback to ``head``, token auth on.

    ``head`` must have been started with ``node_ip=JOINABLE_HEAD_IP``. Its processes carry
    the head's marker too, so :func:`stop_head` stops them as well.
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="rdswrk-", dir="/tmp"))
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(key, None)
    env.update(
        {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(head.token_file),
            # `ray start --address` refuses to join unless multi-node mode is on; with it, Ray
            # replaces 127.0.0.1 by the machine's address, but not other loopback addresses.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            MARKER_ENV: str(head.temp_dir),
            WORKER_ENV: name,
        }
    )
    ports = (
        "node-manager-port",
        "object-manager-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    )
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        f"--address={head.gcs_address}",
        f"--node-ip-address={WORKER_IP}",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--object-store-memory=100000000",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        *(f"--{port}={free_port()}" for port in ports),
    ]
    worker = RayWorker(head, name, temp_dir)
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=180, start_new_session=True
        )
    except BaseException:
        worker.remove()
        raise
    if proc.returncode != 0:
        worker.remove()
        raise RuntimeError(
            f"`ray start --address` failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return worker
