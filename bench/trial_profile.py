"""Profile: where each millisecond per trial goes in Tune's driver, ours and plain Tune's.

Runs ``N`` trivial trials (default 300) through ``run_experiment`` and as a plain Ray Tune
script (``reuse_actors=True``) under ``py-spy record --nonblocking --idle --threads``
(wall-clock samples of every thread), then splits the samples of the thread that runs Tune's
loop (``fit()``: plain Tune's main thread, our ``radas-driver-*`` thread) into: result
logging (Tune's JSON/CSV/TensorBoard loggers), experiment-state snapshots, console output,
our callbacks, waiting for trial results (``ray.wait`` and the actor manager's idle time),
and the rest of Tune's controller. Each share is scaled to the Tune run's measured time and
divided by N: milliseconds per trial. The samples are written to
``bench/results/trial_profile-*.txt`` (py-spy's raw, "collapsed" format; feed them to a flame
graph tool).

Run: ``python bench/trial_profile.py`` (about 2 minutes alone; ``--quick``: N = 100).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench

#: (category, substrings of a frame), checked in this order for each sample's stack.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("our callbacks", ("radas_flows/",)),
    ("result logging", ("ray/tune/logger/",)),
    ("console output", ("tune/experimental/output.py", "progress_reporter.py")),
    (
        "experiment-state snapshots",
        ("experiment_state.py", "save_to_dir", "checkpoint_manager", "_checkpoint"),
    ),
    (
        "waiting for trial results",
        ("ray.wait", "_private/worker.py:wait", "(ray/_private/worker.py", "_actor_manager.py"),
    ),
    ("trial start/stop, scheduling", ("tune_controller.py",)),
]


def categorize(stack: str) -> str:
    """The category of one sample: what it runs below ``Tuner.fit``, the first match."""
    stack = stack[stack.index("Tuner.fit") :] if "Tuner.fit" in stack else stack
    for name, needles in CATEGORIES:
        if any(n in stack for n in needles):
            return name
    return "other (Tune setup, searcher, Python)"


def fit_thread(stack: str, kind: str) -> bool:
    head = stack.split(";", 1)[0]
    if kind == "radas":
        return "radas-driver" in head
    return "MainThread" in head or "Tuner.fit" in stack


def profile(kind: str, n: int, out: Path) -> dict[str, object]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    env = _bench.child_env(f"profile-{kind}")
    more = ["--reuse"] if kind == "raw" else []
    cmd = [
        py_spy,
        "record",
        # Sampling without pausing the process: a pause per sample costs more the more
        # threads a process has (ours has about 24, plain Tune about 11), which inflated ours.
        "--nonblocking",
        "--idle",
        "--threads",
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
        "--",
        sys.executable,
        str(_bench.WORKLOADS),
        kind,
        "--n",
        str(n),
        "--timer",
        *more,
    ]
    proc = subprocess.run(cmd, env=env, cwd=str(_bench.REPO), capture_output=True, text=True)
    report: dict[str, object] = {}
    for line in proc.stdout.splitlines():
        if line.startswith(_bench.RESULT_MARK):
            import json

            report = json.loads(line[len(_bench.RESULT_MARK) :])
    if proc.returncode != 0 or not report:
        raise RuntimeError(f"py-spy run of {kind} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    counts: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and fit_thread(stack, kind) and "Tuner.fit" in stack:
            counts[categorize(stack)] += int(count)
    total = sum(counts.values()) or 1
    run_s = float(report["tune_run_s"])  # type: ignore[arg-type]
    ms = {name: counts[name] / total * run_s * 1000 / n for name in counts}
    return {"tune_run_s": run_s, "ms_per_trial": ms, "samples": total}


def main(argv: list[str] | None = None) -> int:
    p = _bench.parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=None)
    args = p.parse_args(argv)
    started = time.perf_counter()
    n = args.trials or (100 if args.quick else 300)
    _bench.ensure_prefect_home()
    _bench.RESULTS_DIR.mkdir(exist_ok=True)
    found = {
        kind: profile(kind, n, _bench.RESULTS_DIR / f"trial_profile-{kind}.txt")
        for kind in ("radas", "raw")
    }
    names = sorted(
        {k for f in found.values() for k in f["ms_per_trial"]},  # type: ignore[attr-defined]
        key=lambda k: -found["radas"]["ms_per_trial"].get(k, 0.0),  # type: ignore[attr-defined]
    )
    cases = []
    for name in names:
        ours = found["radas"]["ms_per_trial"].get(name, 0.0)  # type: ignore[attr-defined]
        base = found["raw"]["ms_per_trial"].get(name, 0.0)  # type: ignore[attr-defined]
        cases.append(
            _bench.Case(
                name=f"per trial: {name}",
                what=f"share of Tune's run over {n} trials, ms per trial",
                ours_s=ours,
                baseline_s=base,
                baseline_what="plain Tune, reuse_actors=True",
                unit="ms",
                target="-",
                met=None,
            )
        )
    total = {k: float(f["tune_run_s"]) * 1000 / n for k, f in found.items()}  # type: ignore[arg-type]
    cases.append(
        _bench.Case(
            name="per trial: Tune's run in all",
            what=f"Tune's run / {n} (under the profiler)",
            ours_s=total["radas"],
            baseline_s=total["raw"],
            baseline_what="plain Tune, reuse_actors=True",
            unit="ms",
            target="8 ms (how close)",
            met=total["radas"] <= 8.0,
        )
    )
    cases[0].extra["profiles"] = found
    _bench.write_results("trial_profile", cases, quick=args.quick, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
