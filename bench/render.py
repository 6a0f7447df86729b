"""Render BENCHMARKS.md's results table from ``bench/results/*.json``.

``python bench/render.py`` replaces the part of BENCHMARKS.md between the
``<!-- results:start -->`` and ``<!-- results:end -->`` markers; ``--stdout`` prints it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DOC = BENCH.parent / "BENCHMARKS.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
ORDER = [
    "fixed_cost",
    "per_trial",
    "trial_profile",
    "bookkeeping",
    "analysis",
    "cluster_path",
    "monitoring",
    "memory",
    "oom_escalation",
]


def value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "ms":
        return f"{v:.1f} ms"
    if unit == "":
        return f"{v:.2f}"
    return f"{v:.1f} {unit}"


def render(results: Path = BENCH / "results") -> str:
    files = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    names = [n for n in ORDER if n in files] + sorted(set(files) - set(ORDER))
    lines = [
        "| benchmark | case | ours | baseline | ratio | target | met |",
        "|---|---|---:|---:|---:|---|:---:|",
    ]
    notes = []
    for name in names:
        data = files[name]
        label = name + (" (quick)" if data.get("quick") else "")
        for c in data["cases"]:
            ratio = "-" if c.get("ratio") is None else f"{c['ratio']:.2f}"
            met = {True: "yes", False: "**no**", None: "-"}[c.get("met")]
            lines.append(
                f"| {label} | {c['name']} | {value(c['ours_s'], c['unit'])} | "
                f"{value(c['baseline_s'], c['unit'])} | {ratio} | {c['target']} | {met} |"
            )
            if c.get("note"):
                notes.append(f"- {name}, {c['name']}: {c['note']}.")
        for note in data.get("notes", []):
            notes.append(f"- {name}: {note}")
    runs = [
        f"{n} {files[n]['finished_utc']} ({files[n]['wall_s']:.0f} s, load "
        f"{files[n]['machine']['load_avg_1m_at_end']})"
        for n in names
    ]
    machine = files[names[0]]["machine"] if names else {}
    versions = files[names[0]].get("versions", {}) if names else {}
    head = (
        f"Machine: {machine.get('cpus')} CPUs, Python {machine.get('python')}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".\n\nRuns (finished, wall time, 1-minute load average at the end): "
        + "; ".join(runs)
        + ".\n"
    )
    return "\n".join([head, *lines, "", *notes])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stdout", action="store_true")
    args = p.parse_args(argv)
    table = render()
    if args.stdout or not DOC.exists():
        print(table)
        return 0
    text = DOC.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{DOC} has no {START} ... {END} section")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    DOC.write_text(f"{before}{START}\n{table}\n{END}{after}")
    print(f"rendered {DOC.name} from bench/results/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
