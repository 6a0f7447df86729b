"""Benchmark: the fixed cost of a sweep, from a cold process until it has exited.

A 4-trial sweep through ``run_experiment`` (temporary Prefect server, local Ray) against the
same sweep as a plain Ray Tune script (``reuse_actors=True``, as radas_flows runs it), each a
fresh Python process, alternated. Target: at most 3 s more than the plain script.

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


def main(argv: list[str] | None = None) -> int:
    args = _bench.parser(__doc__.splitlines()[0]).parse_args(argv)
    started = time.perf_counter()
    repeats = args.repeats or (1 if args.quick else 4)
    _bench.ensure_prefect_home()
    phases: dict[str, list[dict]] = {"radas": [], "raw": []}

    def side(kind: str, *more: str) -> float:
        seconds, report = _bench.workload(kind, TRIALS, f"fixed-{kind}", *more)
        phases[kind].append(report)
        return seconds

    print(f"fixed cost: {TRIALS} trials, {repeats} runs of each, alternated")
    runs = _bench.alternate(
        {"radas": lambda: side("radas"), "raw": lambda: side("raw", "--reuse")}, repeats
    )
    ours, base = _bench.median(runs["radas"]), _bench.median(runs["raw"])
    assert ours is not None and base is not None
    extra = ours - base
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
        extra={"extra_s": extra, "reports": phases},
    )
    _bench.write_results("fixed_cost", [case], quick=args.quick, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
