"""Benchmark: the analysis of a large sweep, 10,000 trials x 20 reported rows, and of 20 trials.

The analyze stage as the flow runs it (the ``results_analyze`` task and the figure artifact,
inside a flow on the temporary Prefect server): the DataFrame of every reported row, its CSV,
a seaborn figure (``lineplot`` of score over step, no error bars) saved as PNG with its
preview, the results table artifact and the figure artifact. Measured in a fresh process per
run, after the imports; "reading" is Tune's own read of the stored results
(``ExperimentAnalysis`` and ``ResultGrid``). Targets: the analysis at most 2 s beyond reading
at 10,000 trials; well under 0.5 s at 20 trials. Peak memory (RSS) is reported.

The stored experiment is made once (cached under ``bench/.work``): a real Tune run of 20
trials x 20 reports, whose trials are copied to 10,000 (their own folders and result files).

Run: ``python bench/analysis.py`` (2 runs at 10,000, 3 at 20; about 2 minutes alone on 2
CPUs; ``--quick``: 1,000 trials; ``--profile``: one more, untimed run under pyinstrument,
written to ``bench/results/``).
"""

from __future__ import annotations

import copy
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench

ROWS = 20
TARGET_LARGE_S = 2.0
TARGET_SMALL_S = 0.5


def reporting_trial(config: dict[str, Any]) -> None:
    from ray import tune

    for step in range(ROWS):
        tune.report({"score": config["x"] * 0.01 + step, "step": step, "loss": 1.0 / (step + 1)})


def template_experiment() -> Path:
    """A real Tune experiment of 20 trials x 20 rows (made once)."""
    root = _bench.WORK_DIR / "analysis-template"
    path = root / "template"
    if (path / ".bench-ready").exists():
        return path
    shutil.rmtree(root, ignore_errors=True)
    import ray
    from ray import tune

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        tune.Tuner(
            reporting_trial,
            param_space={"x": tune.grid_search(list(range(20)))},
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(root), name="template", verbose=0),
        ).fit()
    finally:
        ray.shutdown()
    (path / ".bench-ready").write_text("ready\n")
    return path


def cloned_trials(template: Path, n: int) -> list[Any]:
    """``n`` trials, each with its own folder and result file, copied from the template's."""
    from ray.tune import ExperimentAnalysis

    base = ExperimentAnalysis(str(template)).trials
    out = []
    for i in range(n):
        source = base[i % len(base)]
        trial = copy.copy(source)
        trial.trial_id = f"{source.trial_id[:5]}_{i:05d}"
        trial.config = {**source.config, "x": i}
        trial.storage = copy.copy(source.storage)
        trial.storage.trial_dir_name = f"trainable_{trial.trial_id}_x={i}"
        trial.run_metadata = copy.copy(source.run_metadata)
        trial.run_metadata.last_result = {**source.last_result, "trial_id": trial.trial_id}
        out.append(trial)
    return out


def write_trial_files(template: Path, trials: list[Any]) -> None:
    source = next(p for p in template.iterdir() if (p / "result.json").exists())
    lines = (source / "result.json").read_text().splitlines()
    for i, trial in enumerate(trials):
        folder = Path(trial.storage.trial_fs_path)
        if (folder / "result.json").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for line in lines:
            row = json.loads(line)
            row["trial_id"] = trial.trial_id
            row["score"] = i * 0.01 + row["step"]
            row["config"] = dict(trial.config)
            out.append(json.dumps(row))
        (folder / "result.json").write_text("\n".join(out) + "\n")
        (folder / "params.json").write_text(json.dumps(trial.config))


def child(n: int) -> dict[str, Any]:
    """One measured analysis (in a fresh process)."""
    started = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns
    from prefect import flow
    from ray.tune import ExperimentAnalysis, ResultGrid

    from radas_flows.flows import _record_figure
    from radas_flows.inputs.spec import build_spec
    from radas_flows.stages.analyze import results_analyze
    from radas_flows.tuner import Tuner

    template = template_experiment()
    trials = cloned_trials(template, n)
    write_trial_files(template, trials)
    spec = build_spec(
        user_name="bench",
        trainable=reporting_trial,
        experiment_name=f"analysis-{n}",
        param_space={},
        plot_fn=sns.lineplot,
        plot_kwargs={"x": "step", "y": "score", "errorbar": None},
        plot_format="png",
        run_choice="run",
        cwd=str(_bench.REPO),
    )
    imported = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times: dict[str, float] = {}

    @flow(name="bench-analysis", persist_result=False)
    def analyze() -> int:
        t0 = time.perf_counter()
        analysis = ExperimentAnalysis(str(template), trials=trials)
        tuner = Tuner(ResultGrid(analysis), experiment_path=str(template))
        t1 = time.perf_counter()
        result = results_analyze(spec, tuner, str(template))
        _record_figure(spec, {"fig": result.fig, "tuner": tuner})
        t2 = time.perf_counter()
        times.update(read_s=t1 - t0, analysis_s=t2 - t1)
        return len(result.df)

    profile_to = os.environ.get("BENCH_PROFILE_TO")
    if profile_to:  # an extra, untimed run under pyinstrument (--profile)
        from pyinstrument import Profiler

        with Profiler() as profiler:
            rows = analyze()
        Path(profile_to).write_text(profiler.output_text(unicode=False, color=False))
    else:
        rows = analyze()
    assert rows == n * ROWS, rows
    return {
        **times,
        "setup_s": imported - started,
        "rows": rows,
        "peak_rss_before_mib": round(rss_before, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure(n: int, repeats: int) -> tuple[list[dict[str, Any]], _bench.Case]:
    reports = []
    for r in range(repeats):
        _, report = _bench.run_process([__file__, "--child", str(n)], _bench.child_env("analysis"))
        reports.append(report)
        print(
            f"  {n} trials, run {r + 1}/{repeats}: read {report['read_s']:.2f} s, "
            f"analysis {report['analysis_s']:.2f} s, peak RSS {report['peak_rss_mib']:.0f} MiB"
        )
    read = _bench.median([x["read_s"] for x in reports])
    analysis = _bench.median([x["analysis_s"] for x in reports])
    assert read is not None and analysis is not None
    peak = _bench.median([x["peak_rss_mib"] for x in reports])
    small = n <= 100
    target = TARGET_SMALL_S if small else TARGET_LARGE_S
    return reports, _bench.Case(
        name=f"analysis, {n} trials x {ROWS} rows",
        what="DataFrame, CSV, figure (PNG + preview), table and figure artifacts",
        ours_s=read + analysis,
        baseline_s=read,
        baseline_what="reading the stored results (ExperimentAnalysis + ResultGrid)",
        target=(f"analysis < {target:g} s" if small else f"<= reading + {target:g} s"),
        met=analysis < target if small else analysis <= target,
        ours_runs=[x["read_s"] + x["analysis_s"] for x in reports],
        baseline_runs=[x["read_s"] for x in reports],
        note=f"analysis beyond reading {analysis:.2f} s; peak RSS {peak:.0f} MiB",
        extra={"analysis_s": analysis, "peak_rss_mib": peak, "reports": reports},
    )


def main(argv: list[str] | None = None) -> int:
    p = _bench.parser(__doc__.splitlines()[0])
    p.add_argument("--child", type=int, default=None, help=argparse_hidden())
    p.add_argument("--trials", type=int, default=None)
    p.add_argument("--profile", action="store_true", help="one more run under pyinstrument")
    args = p.parse_args(argv)
    if args.child is not None:
        print(_bench.RESULT_MARK + json.dumps(child(args.child)), flush=True)
        return 0
    started = time.perf_counter()
    large = args.trials or (1000 if args.quick else 10_000)
    repeats = args.repeats or (1 if args.quick else 3)
    _bench.ensure_prefect_home()
    os.environ.setdefault("PYTHONPATH", str(_bench.REPO))
    print(f"analysis: {large} and 20 trials x {ROWS} rows, {repeats} runs each")
    _, big = measure(large, repeats if args.repeats or args.quick else 2)
    _, small = measure(20, repeats)
    if args.profile:
        out = _bench.RESULTS_DIR / f"analysis_profile-{large}.txt"
        env = _bench.child_env("analysis", BENCH_PROFILE_TO=str(out))
        _bench.run_process([__file__, "--child", str(large)], env)
        print(f"pyinstrument profile of the {large}-trial read and analysis: {out}")
    _bench.write_results("analysis", [big, small], quick=args.quick, started=started)
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
