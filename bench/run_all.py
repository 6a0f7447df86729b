"""Run every benchmark, one after the other, then render BENCHMARKS.md's table.

Run alone on the machine (nothing else busy): ``python bench/run_all.py`` (25 to 30
minutes on 2 CPUs); ``--quick`` for a smoke run (a few minutes); ``--only per_trial,analysis``.
Each benchmark writes ``bench/results/<name>.json``; a failed one is reported and the
others still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

#: In order: memory reuses per_trial's 1,000-trial runs. Extra arguments of a full run.
SUITE: list[tuple[str, list[str]]] = [
    ("fixed_cost", []),
    ("per_trial", []),
    ("trial_profile", []),
    ("memory", []),
    ("bookkeeping", []),
    ("analysis", []),
    ("cluster_path", []),
    ("monitoring", []),
    # 10 trials x 2 s keeps the suite under half an hour (the script's default is ~16 min alone).
    ("oom_escalation", ["--trials", "10", "--work-s", "2"]),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="", help="comma-separated benchmark names")
    args = p.parse_args(argv)
    only = {name for name in args.only.split(",") if name}
    unknown = only - {name for name, _ in SUITE}
    if unknown:
        p.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {[n for n, _ in SUITE]}")
    started = time.perf_counter()
    failed = []
    for name, extra in SUITE:
        if only and name not in only:
            continue
        cmd = [sys.executable, str(BENCH / f"{name}.py"), *(["--quick"] if args.quick else extra)]
        print(f"\n### {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(cmd, check=False).returncode
        print(f"### {name}: exit {code} after {time.perf_counter() - t0:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    subprocess.run([sys.executable, str(BENCH / "render.py")], check=False)
    total = time.perf_counter() - started
    print(f"\nsuite: {total / 60:.1f} minutes; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
