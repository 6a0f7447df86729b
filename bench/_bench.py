"""Shared pieces of the benchmarks: fresh-process timing, alternated repeats, the results file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / ".work"  # Prefect home and results roots of the runs (git-ignored)
WORKLOADS = BENCH_DIR / "workloads.py"
RESULT_MARK = "BENCH-RESULT "


@dataclass
class Case:
    """One row of a benchmark's table: ours against a baseline, and the target."""

    name: str
    what: str  # what ran, in words
    ours_s: float | None  # median seconds (or the measured value, see ``unit``)
    baseline_s: float | None
    target: str  # the target in words
    met: bool | None  # None: not measured or no target
    ratio: float | None = None  # ours / baseline
    unit: str = "s"
    ours_runs: list[float] = field(default_factory=list)
    baseline_runs: list[float] = field(default_factory=list)
    baseline_what: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.ours_s is not None and self.baseline_s:
            self.ratio = self.ours_s / self.baseline_s


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a smoke run: small sizes, one repeat")
    p.add_argument("--repeats", type=int, default=None, help="runs of each side (median)")
    return p


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def child_env(tag: str, **extra: str) -> dict[str, str]:
    """Environment of a measured process: this tree on the path, a quiet, private setup.

    PREFECT_HOME is shared by all runs (its database is created once, as a user's is);
    every run gets its own results root. No PREFECT_API_URL: run_experiment starts its
    temporary Prefect server, as it does for a user without a server.
    """
    env = dict(os.environ)
    for name in ("PREFECT_API_URL", "RAY_ADDRESS", "RADAS_CLUSTERS_FILE"):
        env.pop(name, None)
    WORK_DIR.mkdir(exist_ok=True)
    results = tempfile.mkdtemp(prefix=f"{tag}-", dir=WORK_DIR)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
            "PREFECT_HOME": str(WORK_DIR / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Only a guard for a loaded machine (the default 20 s can run out there).
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
            "RADAS_RESULTS_ROOT": results,
            "RADAS_LOCAL_NUM_CPUS": "2",
            "RAY_USAGE_STATS_ENABLED": "0",
            "BENCH_RESULTS_ROOT": results,
        }
    )
    env.update(extra)
    return env


def run_process(
    args: Sequence[str],
    env: dict[str, str],
    timeout: float = 1800,
    attempts: int = 2,
    cpu: bool = False,
) -> tuple[float, dict[str, Any]]:
    """Run a fresh Python process to its exit; return its wall seconds and what it reported.

    A process that fails (Ray's start can time out on a busy machine) is run once more; the
    failure is printed, and a second one raises. ``cpu``: the report gets ``cpu_s``, the CPU
    seconds of the process and everything it started, by kind (see ``CpuSampler``).
    """
    for attempt in range(1, attempts + 1):
        try:
            return _run_once(args, env, timeout, cpu)
        except RuntimeError as e:
            if attempt == attempts:
                raise
            print(f"  (failed, running it again) {str(e)[:2000]}", flush=True)
    raise AssertionError("unreachable")


def _run_once(
    args: Sequence[str], env: dict[str, str], timeout: float, cpu: bool = False
) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = CpuSampler(proc.pid) if cpu else None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    finally:
        cpu_s = sampler.stop() if sampler is not None else None
    elapsed = time.perf_counter() - start
    reported: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARK):
            reported = json.loads(line[len(RESULT_MARK) :])
    if proc.returncode != 0 or not reported:
        tail = "\n".join((stdout + stderr).splitlines()[-40:])
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{tail}")
    if cpu_s is not None:
        reported["cpu_s"] = cpu_s
    return elapsed, reported


class CpuSampler:
    """CPU seconds (user + system) of a process and of every process it starts, by kind.

    A thread reads ``/proc`` every 0.1 s: a process whose parent is a known one is added, and
    each keeps the most CPU time it was seen with (so up to 0.1 s of a process's end is
    missed). Kinds: ``main`` (the measured process), ``prefect_server`` (the temporary
    server's uvicorn), ``trial_workers`` (Ray workers: ``ray::`` processes other than Ray's
    agents), ``ray_system`` (GCS, raylet, dashboard, agents, monitors). Linux only.
    """

    def __init__(self, pid: int) -> None:
        self._root = pid
        self._seen: dict[int, tuple[float, str]] = {}
        self._stop = False
        self._tick = os.sysconf("SC_CLK_TCK")
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            self._sample()
            time.sleep(0.1)

    def _sample(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            ppid, seconds = int(fields[1]), (int(fields[11]) + int(fields[12])) / self._tick
            known = pid == self._root or pid in self._seen
            if not known and ppid != self._root and ppid not in self._seen:
                continue
            before, command = self._seen.get(pid, (0.0, ""))
            command = cmdline.decode(errors="replace")[:200] or command  # empty once a zombie
            self._seen[pid] = (max(before, seconds), command)

    def stop(self) -> dict[str, float]:
        self._stop = True
        self._thread.join()
        kinds: dict[str, float] = {}
        for pid, (seconds, command) in self._seen.items():
            kind = self.kind(pid == self._root, command)
            kinds[kind] = round(kinds.get(kind, 0.0) + seconds, 2)
        return kinds

    @staticmethod
    def kind(root: bool, command: str) -> str:
        if root:
            return "main"
        if "uvicorn" in command and "prefect" in command:
            return "prefect_server"
        if command.startswith("ray::") and "Agent" not in command:
            return "trial_workers"
        return "ray_system"


def workload(
    kind: str,
    n: int,
    tag: str,
    *more: str,
    env: dict[str, str] | None = None,
    cpu: bool = False,
) -> Any:
    """One fresh process of ``bench/workloads.py``: (wall seconds, its report)."""
    args = [str(WORKLOADS), kind, "--n", str(n), *more]
    return run_process(args, env or child_env(tag), cpu=cpu)


def alternate(
    sides: dict[str, Callable[[], float]], repeats: int, log: Callable[[str], None] = print
) -> dict[str, list[float]]:
    """Run each side ``repeats`` times, alternating them (and their order) round by round."""
    runs: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            value = sides[name]()
            runs[name].append(value)
            log(f"  round {r + 1}/{repeats} {name}: {value:.2f}")
    return runs


def ensure_prefect_home() -> None:
    """Create the shared Prefect database once (migrations are not part of any measurement)."""
    marker = WORK_DIR / "prefect-home" / ".bench-ready"
    if marker.exists():
        return
    run_process([str(WORKLOADS), "prefect-init", "--n", "0"], child_env("init"))
    marker.write_text("ready\n")


def fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:.3g} {unit}"


def table(cases: Sequence[Case]) -> str:
    head = ["case", "ours", "baseline", "ratio", "target", "met"]
    rows = [
        [
            c.name,
            fmt(c.ours_s, c.unit),
            fmt(c.baseline_s, c.unit),
            "-" if c.ratio is None else f"{c.ratio:.2f}",
            c.target,
            {True: "yes", False: "NO", None: "-"}[c.met],
        ]
        for c in cases
    ]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    sep = "-+-".join("-" * w for w in widths)
    header = " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    return "\n".join([header, sep, *lines])


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m_at_end": round(load[0], 2),
    }


def write_results(
    name: str, cases: Sequence[Case], *, quick: bool, started: float, notes: Sequence[str] = ()
) -> Path:
    """Print the table and write ``bench/results/<name>.json``."""
    RESULTS_DIR.mkdir(exist_ok=True)
    data = {
        "benchmark": name,
        "quick": quick,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "notes": list(notes),
        "cases": [asdict(c) for c in cases],
    }
    versions = {}
    for pkg in ("ray", "prefect", "pandas"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:
            versions[pkg] = "?"
    data["versions"] = versions
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\n== {name}{' (quick)' if quick else ''} ==")
    print(table(cases))
    for note in notes:
        print(f"- {note}")
    for c in cases:
        if c.note:
            print(f"- {c.name}: {c.note}")
    print(f"(written to {path.relative_to(REPO)}; {data['wall_s']} s)")
    return path
