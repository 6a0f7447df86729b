"""Benchmark: the fixed cost of a sweep, from a cold process until it has exited.

A 4-trial sweep through ``run_experiment`` (temporary Prefect server, local Ray) against the
same sweep as a plain Ray Tune script (``reuse_actors=True``, as radas_flows runs it), each a
fresh Python process, alternated. Target: at most 3 s more than the plain script. The CPU
seconds of each process tree, by kind of process, show where the extra time goes on a machine
whose CPUs the start-up keeps busy.

Run: ``python bench/fixed_cost.py`` (4 runs each, about 1.5 minutes alone on 2 CPUs;
``--quick``: one pair).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench

TRIALS = 4
TARGET_EXTRA_S = 3.0


KINDS = {
    "main": "the measured process",
    "prefect_server": "the temporary Prefect server",
    "trial_workers": "Ray's trial workers",
    "ray_system": "Ray's own processes",
}


def cpu_medians(reports: list[dict]) -> dict[str, float]:
    """Median CPU seconds per kind of process over the runs, and their total."""
    runs = [r["cpu_s"] for r in reports if "cpu_s" in r]
    kinds = sorted({k for run in runs for k in run})
    out = {k: round(_bench.median([run.get(k, 0.0) for run in runs]) or 0.0, 2) for k in kinds}
    out["total"] = round(_bench.median([sum(run.values()) for run in runs]) or 0.0, 2)
    return out


def describe_cpu(cpu: dict[str, float]) -> str:
    parts = [f"{KINDS[k]} {cpu[k]:.1f}" for k in KINDS if k in cpu]
    return f"{cpu.get('total', 0.0):.1f} in all ({', '.join(parts)})"


def main(argv: list[str] | None = None) -> int:
    args = _bench.parser(__doc__.splitlines()[0]).parse_args(argv)
    started = time.perf_counter()
    repeats = args.repeats or (1 if args.quick else 4)
    _bench.ensure_prefect_home()
    phases: dict[str, list[dict]] = {"radas": [], "raw": []}

    def side(kind: str, *more: str) -> float:
        seconds, report = _bench.workload(kind, TRIALS, f"fixed-{kind}", *more, cpu=True)
        phases[kind].append(report)
        return seconds

    print(f"fixed cost: {TRIALS} trials, {repeats} runs of each, alternated")
    runs = _bench.alternate(
        {"radas": lambda: side("radas"), "raw": lambda: side("raw", "--reuse")}, repeats
    )
    ours, base = _bench.median(runs["radas"]), _bench.median(runs["raw"])
    assert ours is not None and base is not None
    extra = ours - base
    cpu = {side: cpu_medians(reports) for side, reports in phases.items()}
    cpu_note = (
        "CPU seconds by process, medians: ours "
        + describe_cpu(cpu["radas"])
        + "; the plain script "
        + describe_cpu(cpu["raw"])
    )
    case = _bench.Case(
        name="fixed cost, 4 trials",
        what=f"{TRIALS}-trial run_experiment (local), cold process to exit",
        ours_s=ours,
        baseline_s=base,
        baseline_what="the same sweep as a plain Ray Tune script, reuse_actors=True",
        target=f"<= baseline + {TARGET_EXTRA_S:g} s",
        met=extra <= TARGET_EXTRA_S,
        ours_runs=runs["radas"],
        baseline_runs=runs["raw"],
        note=f"extra {extra:+.2f} s over the plain script",
        extra={"extra_s": extra, "cpu_s": cpu, "reports": phases},
    )
    _bench.write_results("fixed_cost", [case], quick=args.quick, started=started, notes=[cpu_note])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
