"""Benchmark: Tune's bookkeeping around short trials, 1,000 trials of 50 ms on 2 CPUs.

The trials' own work takes at least 1,000 x 50 ms / 2 CPUs = 25 s. Measured is Tune's run
(from Tune's setup to the end of the experiment, by a ``ray.tune.Callback`` in the driver),
through ``run_experiment`` and as a plain Ray Tune script with ``reuse_actors=True``, each a
fresh process, alternated. Target: at most 10% over the minimum (Ray Tune publishes 14.4%
for 10,000 one-second trials on 16 CPUs). Start-up and exit are the fixed-cost case.

Run: ``python bench/bookkeeping.py`` (about 3 minutes alone on 2 CPUs; ``--quick``: 100 trials).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench

WORK_S = 0.05
CPUS = 2
TARGET_OVER = 0.10


def main(argv: list[str] | None = None) -> int:
    p = _bench.parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=None)
    args = p.parse_args(argv)
    started = time.perf_counter()
    trials = args.trials or (100 if args.quick else 1000)
    repeats = args.repeats or (1 if args.quick else 2)
    minimum = trials * WORK_S / CPUS
    _bench.ensure_prefect_home()
    whole: dict[str, list[float]] = {"radas": [], "raw": []}

    def side(kind: str, *more: str) -> float:
        seconds, report = _bench.workload(
            kind, trials, f"book-{kind}", "--work-s", str(WORK_S), "--timer", *more
        )
        whole[kind].append(seconds)
        return float(report["tune_run_s"])

    print(f"bookkeeping: {trials} trials x {WORK_S * 1000:.0f} ms on {CPUS} CPUs, {repeats} runs")
    runs = _bench.alternate(
        {"radas": lambda: side("radas"), "raw": lambda: side("raw", "--reuse")}, repeats
    )
    cases = []
    for kind, label in (("radas", "run_experiment"), ("raw", "plain Tune, reuse_actors=True")):
        value = _bench.median(runs[kind])
        assert value is not None
        over = value / minimum - 1
        cases.append(
            _bench.Case(
                name=f"bookkeeping, {label}",
                what=f"Tune run of {trials} x {WORK_S * 1000:.0f} ms trials on {CPUS} CPUs",
                ours_s=value,
                baseline_s=minimum,
                baseline_what="the minimum: trials x work / CPUs",
                target=f"<= minimum + {TARGET_OVER:.0%}",
                met=over <= TARGET_OVER,
                ours_runs=runs[kind],
                note=f"{over:+.1%} over the minimum; whole process "
                f"{_bench.median(whole[kind]):.1f} s",
                extra={"whole_process_s": whole[kind]},
            )
        )
    _bench.write_results("bookkeeping", cases, quick=args.quick, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
