"""Benchmark: the cost per trial, N = 200 and 1,000 trivial trials, whole fresh processes.

``run_experiment`` against the same sweep as a plain Ray Tune script with Tune's defaults
and with ``reuse_actors=True``, alternated. Targets: at least 30x faster than Tune's
defaults at N = 200; never slower than plain Tune's best setting; a marginal cost per trial
(the slope between the two sizes) at most plain Tune's.

Tune's defaults start a new worker process for every trial (about 1.6 s a trial on 2 CPUs):
N = 200 takes about 5 minutes, so that side runs once, at N = 200 only (N = 1,000 would take
about 27 minutes).

Run: ``python bench/per_trial.py`` (about 10 minutes alone on 2 CPUs; ``--quick``: N = 20
and 60, one run each, about 2 minutes).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench

TARGET_VS_DEFAULTS = 30.0


def main(argv: list[str] | None = None) -> int:
    p = _bench.parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs=2, default=None, metavar=("SMALL", "LARGE"))
    p.add_argument("--defaults-repeats", type=int, default=1)
    args = p.parse_args(argv)
    started = time.perf_counter()
    small, large = args.sizes or ((20, 60) if args.quick else (200, 1000))
    repeats_small = args.repeats or (1 if args.quick else 3)
    repeats_large = args.repeats or (1 if args.quick else 2)
    _bench.ensure_prefect_home()
    reports: dict[str, list[dict]] = {}

    def side(kind: str, n: int, *more: str) -> float:
        seconds, report = _bench.workload(kind, n, f"trial-{kind}-{n}", *more)
        reports.setdefault(f"{kind}{''.join(more)}-{n}", []).append(report)
        return seconds

    print(f"per-trial cost: N={small} ({repeats_small} runs) and N={large} ({repeats_large} runs)")
    at_small = _bench.alternate(
        {
            "radas": lambda: side("radas", small),
            "raw-reuse": lambda: side("raw", small, "--reuse"),
        },
        repeats_small,
    )
    print(f"Tune's defaults at N={small}: {args.defaults_repeats} run(s)")
    defaults = [side("raw", small) for _ in range(args.defaults_repeats)]
    at_large = _bench.alternate(
        {
            "radas": lambda: side("radas", large),
            "raw-reuse": lambda: side("raw", large, "--reuse"),
        },
        repeats_large,
    )
    med = _bench.median
    ours_s, reuse_s, defaults_s = med(at_small["radas"]), med(at_small["raw-reuse"]), med(defaults)
    ours_l, reuse_l = med(at_large["radas"]), med(at_large["raw-reuse"])
    assert None not in (ours_s, reuse_s, defaults_s, ours_l, reuse_l)
    span = large - small
    ours_marginal = (ours_l - ours_s) / span * 1000  # type: ignore[operator]
    reuse_marginal = (reuse_l - reuse_s) / span * 1000  # type: ignore[operator]
    speedup = defaults_s / ours_s  # type: ignore[operator]
    cases = [
        _bench.Case(
            name=f"N={small} vs Tune defaults",
            what=f"{small} trivial trials, run_experiment, fresh process",
            ours_s=ours_s,
            baseline_s=defaults_s,
            baseline_what=f"plain Tune, defaults (new worker per trial); {len(defaults)} run(s)",
            target=f">= {TARGET_VS_DEFAULTS:g}x faster (ratio <= {1 / TARGET_VS_DEFAULTS:.3f})",
            met=speedup >= TARGET_VS_DEFAULTS,
            ours_runs=at_small["radas"],
            baseline_runs=defaults,
            note=f"{speedup:.1f}x faster than Tune's defaults",
        ),
        _bench.Case(
            name=f"N={small} vs Tune reuse_actors",
            what=f"{small} trivial trials, run_experiment, fresh process",
            ours_s=ours_s,
            baseline_s=reuse_s,
            baseline_what="plain Tune, reuse_actors=True",
            target="ratio <= 1.0",
            met=ours_s <= reuse_s,  # type: ignore[operator]
            ours_runs=at_small["radas"],
            baseline_runs=at_small["raw-reuse"],
        ),
        _bench.Case(
            name=f"N={large} vs Tune reuse_actors",
            what=f"{large} trivial trials, run_experiment, fresh process",
            ours_s=ours_l,
            baseline_s=reuse_l,
            baseline_what="plain Tune, reuse_actors=True (defaults not run: ~27 min)",
            target="ratio <= 1.0",
            met=ours_l <= reuse_l,  # type: ignore[operator]
            ours_runs=at_large["radas"],
            baseline_runs=at_large["raw-reuse"],
        ),
        _bench.Case(
            name="marginal ms per trial",
            what=f"(T(N={large}) - T(N={small})) / {span}, medians",
            ours_s=ours_marginal,
            baseline_s=reuse_marginal,
            baseline_what="plain Tune, reuse_actors=True",
            unit="ms",
            target="<= plain Tune's (ideal: 8 ms)",
            met=ours_marginal <= reuse_marginal,
        ),
    ]
    notes = [
        f"Tune's defaults measured {len(defaults)} time(s), at N={small} only.",
        "Each timing is a whole fresh process (imports, Prefect server, Ray start, exit).",
    ]
    for case in cases:
        case.extra["reports"] = {}
    cases[0].extra["reports"] = reports
    _bench.write_results("per_trial", cases, quick=args.quick, started=started, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
