"""Benchmark: peak memory of the driver and the flow process as a sweep grows.

Peak RSS of the process that runs ``run_experiment`` locally (it is the flow process and,
in a thread, the Tune driver) and of the largest child process (Ray's workers and
services), at 1,000 trials and at a larger size, against a plain Ray Tune script
(``reuse_actors=True``, the Tune driver). Target: the memory each added trial costs is at
most 1.2x what it costs plain Tune (the results a Tune driver keeps are the same).

A 10,000-trial sweep takes about 5 minutes on 2 CPUs per side, so the suite runs 2,000;
``--large 10000`` measures the full size. The 1,000-trial numbers are taken from
``bench/results/per_trial.json`` when the same suite run wrote it (same mode), else measured.
The flow process's memory for analyzing 10,000 trials is in the analysis benchmark.

Run: ``python bench/memory.py`` (about 4 minutes alone on 2 CPUs; ``--quick``: 60 and 200).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench

TARGET_RATIO = 1.2


def reused_reports(n: int, quick: bool) -> dict[str, list[dict[str, Any]]]:
    """Reports of per_trial's runs at ``n`` trials, when that file is of this mode."""
    path = _bench.RESULTS_DIR / "per_trial.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if data.get("quick") != quick:
        return {}
    reports = data["cases"][0]["extra"].get("reports", {})
    out = {"radas": reports.get(f"radas-{n}", []), "raw": reports.get(f"raw--reuse-{n}", [])}
    return out if out["radas"] and out["raw"] else {}


def main(argv: list[str] | None = None) -> int:
    p = _bench.parser(__doc__.splitlines()[0])
    p.add_argument("--small", type=int, default=None)
    p.add_argument("--large", type=int, default=None)
    args = p.parse_args(argv)
    started = time.perf_counter()
    small = args.small or (60 if args.quick else 1000)
    large = args.large or (200 if args.quick else 2000)
    _bench.ensure_prefect_home()
    reports: dict[int, dict[str, list[dict[str, Any]]]] = {}
    notes = []
    for n in (small, large):
        found = reused_reports(n, args.quick)
        if found:
            notes.append(f"N={n}: peak RSS from this suite run's per_trial.json")
            reports[n] = found
            continue
        reports[n] = {"radas": [], "raw": []}
        for kind, more in (("radas", ()), ("raw", ("--reuse",))):
            _, report = _bench.workload(kind, n, f"memory-{kind}-{n}", *more)
            reports[n][kind].append(report)
            print(f"  {kind} N={n}: peak RSS {report['peak_rss_mib']:.0f} MiB")

    def peak(n: int, kind: str, key: str = "peak_rss_mib") -> float:
        value = _bench.median([r[key] for r in reports[n][kind]])
        assert value is not None
        return value

    span = large - small
    per_trial = {
        kind: (peak(large, kind) - peak(small, kind)) * 1024 / span for kind in ("radas", "raw")
    }
    cases = [
        _bench.Case(
            name=f"peak RSS, {n} trials",
            what="run_experiment's process (flow + Tune driver), peak RSS",
            ours_s=peak(n, "radas"),
            baseline_s=peak(n, "raw"),
            baseline_what="plain Tune script's process (the Tune driver)",
            unit="MiB",
            target="-",
            met=None,
            note=f"largest child: ours {peak(n, 'radas', 'peak_child_rss_mib'):.0f} MiB, "
            f"plain Tune {peak(n, 'raw', 'peak_child_rss_mib'):.0f} MiB",
        )
        for n in (small, large)
    ]
    cases.append(
        _bench.Case(
            name="memory per added trial",
            what=f"(peak RSS at {large} - at {small}) / {span}",
            ours_s=per_trial["radas"],
            baseline_s=per_trial["raw"],
            baseline_what="plain Tune, reuse_actors=True",
            unit="KiB",
            target=f"ratio <= {TARGET_RATIO:g}",
            met=per_trial["radas"] <= TARGET_RATIO * max(per_trial["raw"], 1e-9),
        )
    )
    cases[0].extra["reports"] = {str(k): v for k, v in reports.items()}
    _bench.write_results("memory", cases, quick=args.quick, started=started, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
