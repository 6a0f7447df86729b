"""The measured processes: the same sweep as a plain Ray Tune script and through radas_flows.

``python bench/workloads.py raw --n 200 --reuse`` runs ``N`` trivial trials
(``{"score": config["x"] ** 2}`` over a grid of N values) with plain Ray Tune;
``python bench/workloads.py radas --n 200`` runs the same sweep with
``radas_flows.run_experiment``. Each prints one ``BENCH-RESULT {json}`` line with the time
spent in its phases and its peak memory. ``--work-s`` makes each trial sleep (the
bookkeeping case); ``--reports`` makes each trial report that many rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

STARTED = time.perf_counter()


def make_trainable(work_s: float, reports: int):
    if work_s <= 0 and reports <= 1:

        def trainable(config):
            return {"score": config["x"] ** 2}

        return trainable

    def trainable(config):
        from ray import tune

        for step in range(reports):
            if work_s > 0:
                time.sleep(work_s / reports)
            tune.report({"score": config["x"] ** 2 + step, "step": step})

    return trainable


_TUNE_RUN: dict[str, float] = {}


def timer_callback():
    """Records when Tune's run started (setup) and ended, in this (the driver's) process."""
    from ray import tune

    class Timer(tune.Callback):
        def setup(self, **info):
            _TUNE_RUN["start"] = time.perf_counter()

        def on_experiment_end(self, trials, **info):
            _TUNE_RUN["end"] = time.perf_counter()

    return Timer()


def tune_run_s() -> dict[str, float]:
    if "start" in _TUNE_RUN and "end" in _TUNE_RUN:
        return {"tune_run_s": _TUNE_RUN["end"] - _TUNE_RUN["start"]}
    return {}


def peak_rss_mib() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mib": round(own, 1), "peak_child_rss_mib": round(children, 1)}


def run_raw(args: argparse.Namespace) -> dict[str, object]:
    """A plain Ray Tune script, as its user would write it (a private local Ray)."""
    import ray
    from ray import tune

    imported = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False)
    ray_up = time.perf_counter()
    tuner = tune.Tuner(
        make_trainable(args.work_s, args.reports),
        param_space={"x": tune.grid_search(list(range(args.n)))},
        tune_config=tune.TuneConfig(reuse_actors=args.reuse),
        run_config=tune.RunConfig(
            storage_path=os.environ["BENCH_RESULTS_ROOT"],
            name=f"raw-{args.n}",
            callbacks=[timer_callback()] if args.timer else None,
        ),
    )
    grid = tuner.fit()
    fitted = time.perf_counter()
    rows = len(grid.get_dataframe())
    assert len(grid) == args.n and grid.num_errors == 0, (len(grid), grid.num_errors)
    ray.shutdown()
    return {
        "import_s": imported - STARTED,
        "ray_init_s": ray_up - imported,
        "fit_s": fitted - ray_up,
        "trials": len(grid),
        "rows": rows,
    }


def run_radas(args: argparse.Namespace) -> dict[str, object]:
    """The same sweep through ``run_experiment`` (local Ray, temporary Prefect server)."""
    from radas_flows import run_experiment_sync

    imported = time.perf_counter()
    more = {}
    if args.timer:
        from ray import tune

        more["tuner_init_kwargs"] = {"run_config": tune.RunConfig(callbacks=[timer_callback()])}
    out = run_experiment_sync(
        **more,
        user_name="bench",
        trainable=make_trainable(args.work_s, args.reports),
        experiment_name=f"radas-{args.n}",
        param_space={"x": {"grid_search": list(range(args.n))}},
        run_choice="run",
    )
    done = time.perf_counter()
    tuner = out["tuner"]
    assert tuner.num_trials == args.n and tuner.num_errors == 0, (tuner.num_trials,)
    return {
        "import_s": imported - STARTED,
        "run_experiment_s": done - imported,
        "trials": tuner.num_trials,
        "rows": len(out["df"]),
    }


def prefect_init(args: argparse.Namespace) -> dict[str, object]:
    """Create the Prefect database once (a first flow in a new PREFECT_HOME)."""
    from prefect import flow

    @flow
    def hello() -> int:
        return 1

    hello()
    return {}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["raw", "radas", "prefect-init"])
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--reuse", action="store_true", help="raw: TuneConfig(reuse_actors=True)")
    p.add_argument("--work-s", type=float, default=0.0)
    p.add_argument("--reports", type=int, default=1)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--timer", action="store_true", help="report Tune's own run time")
    args = p.parse_args()
    report = {"raw": run_raw, "radas": run_radas, "prefect-init": prefect_init}[args.kind](args)
    report.update(tune_run_s())
    report.update(peak_rss_mib())
    report["in_process_s"] = time.perf_counter() - STARTED
    print("BENCH-RESULT " + json.dumps(report), flush=True)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
