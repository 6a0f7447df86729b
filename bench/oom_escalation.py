"""Benchmark: out-of-memory escalation against re-running the whole sweep with doubled CPUs.

A sweep of N trials (default 20, each working 8 s) where a share of them (default 10%) needs
more memory than one CPU's share allows: each trial sets an address-space limit of ``--mib-per-
cpu`` per CPU Ray assigned it and allocates its need halfway through its work, so those trials
genuinely raise ``MemoryError`` at cpu_per_trial=1 and complete at 2. Measured in one process,
on one local Ray:

* baseline: the sweep in which nothing runs out of memory (every need fits at 1 CPU);
* escalation: radas_flows re-runs only the trials that ran out of memory, at 2 CPUs;
* naive: the sweep with the failures, then the whole sweep again at 2 CPUs.

Each is timed with plain Ray Tune and through ``radas_flows.run_experiment`` (a real Prefect
API from ``prefect_test_harness``). The escalation with plain Ray Tune is the sweep followed
by a Tune run of exactly the failed configs at 2 CPUs, the work radas_flows automates.

Run: ``.venv/bin/python bench/oom_escalation.py`` (about 16 minutes on 2 CPUs; ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIB = 2**20


def sweep_trial(config: dict[str, Any]) -> dict[str, Any]:
    """Work for ``work_s`` seconds; halfway, allocate ``need_mib`` under the CPU-sized limit."""
    import ray

    cpus = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0))
    time.sleep(config["work_s"] / 2)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status", encoding="ascii") as status:
        vm_size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
    limit = vm_size + int(cpus * config["mib_per_cpu"] * MIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard < 0 else min(limit, hard), hard))
    try:
        block = bytearray(int(config["need_mib"] * MIB))
        del block
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    time.sleep(config["work_s"] / 2)
    return {"score": float(config["i"]), "cpus": cpus}


def sweep_space(args: argparse.Namespace, hungry: set[int]) -> dict[str, Any]:
    from ray import tune

    fits, needs_two = args.mib_per_cpu // 8, args.mib_per_cpu * 3 // 2
    return {
        "i": tune.grid_search(list(range(args.trials))),
        "need_mib": tune.sample_from(lambda config: needs_two if config["i"] in hungry else fits),
        "mib_per_cpu": args.mib_per_cpu,
        "work_s": args.work_s,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def nested_trial(config: dict[str, Any]) -> dict[str, Any]:
    """``sweep_trial`` on the config under ``"cfg"``: a plain way to re-run listed configs."""
    return sweep_trial(config["cfg"])


def raw_tune(
    space: dict[str, Any], cpus: float, storage: str, name: str, trainable: Any = sweep_trial
) -> Any:
    """Plain Ray Tune with the settings radas_flows uses (actor reuse, quiet output)."""
    from ray import tune

    return tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus}),
        param_space=space,
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0),
    ).fit()


def raw_escalation(space: dict[str, Any], storage: str, name: str) -> tuple[int, int]:
    """The sweep, then exactly its out-of-memory configs again at 2 CPUs, with plain Tune."""
    from ray import tune

    from radas_flows.oom import classify_error

    first = raw_tune(space, 1, storage, name)
    failed = [r.config for r in first if r.error is not None and classify_error(r.error) == "oom"]
    again = raw_tune({"cfg": tune.grid_search(failed)}, 2, storage, f"{name}2", nested_trial)
    assert again.num_errors == 0, "the re-run at 2 CPUs must complete"
    return len(failed), first.num_errors


def radas_run(space: dict[str, Any], name: str, cpu_per_trial: float = 1) -> dict[str, Any]:
    from ray import tune

    from radas_flows import run_experiment

    return asyncio.run(
        run_experiment(
            user_name="bench",
            trainable=sweep_trial,
            experiment_name=name,
            param_space=space,
            run_choice="run",
            cpu_per_trial=cpu_per_trial,
            tuner_init_kwargs={"run_config": tune.RunConfig(verbose=0)},
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--oom-share", type=float, default=0.1, help="share that runs out")
    parser.add_argument("--work-s", type=float, default=8.0, help="seconds of work per trial")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--mib-per-cpu", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 trials x 1 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.work_s = 10, 1.0
    started = time.perf_counter()

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RADAS_LOCAL_NUM_CPUS"] = str(args.cpus)
    root = tempfile.mkdtemp(prefix="radas-bench-")
    os.environ["RADAS_RESULTS_ROOT"] = root
    raw_root = str(Path(root) / "raw")

    n_hungry = max(1, round(args.trials * args.oom_share))
    step = args.trials / n_hungry
    hungry = {int(k * step) for k in range(n_hungry)}
    nothing = sweep_space(args, set())
    some = sweep_space(args, hungry)

    import ray
    from prefect.testing.utilities import prefect_test_harness

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    with prefect_test_harness(server_startup_timeout=120):
        warm = {**nothing, "i": {"grid_search": [0, 1]}}
        radas_run(warm, "warm-up")  # Prefect API, imports, Tune: not timed
        raw_tune(warm, 1, raw_root, "warm-up")

        t = {}
        t["raw baseline"], _ = timed(lambda: raw_tune(nothing, 1, raw_root, "baseline"))
        t["radas baseline"], base = timed(lambda: radas_run(nothing, "baseline"))
        t["raw escalation"], (n_failed, _) = timed(lambda: raw_escalation(some, raw_root, "esc"))
        t["radas escalation"], esc = timed(lambda: radas_run(some, "escalation"))
        t["raw naive"], _ = timed(
            lambda: (raw_tune(some, 1, raw_root, "naive1"), raw_tune(some, 2, raw_root, "naive2"))
        )
        os.environ["RADAS_MAX_OOM_ROUNDS"] = "0"  # the first pass keeps its failures
        t["radas naive"], _ = timed(
            lambda: (radas_run(some, "naive"), radas_run(some, "naive", cpu_per_trial=2))
        )
        os.environ.pop("RADAS_MAX_OOM_ROUNDS")

    df = esc["df"]
    assert base["tuner"].num_errors == 0, "the baseline must not run out of memory"
    assert n_failed == len(hungry), f"{n_failed} trials ran out of memory, not {len(hungry)}"
    assert esc["tuner"].num_errors == 0 and len(df) == args.trials
    assert sorted(df[df["cpu_per_trial"] == 2]["config/i"]) == sorted(hungry)
    report(args, len(hungry), t)
    write_json(args, len(hungry), t, started)
    ray.shutdown()
    shutil.rmtree(root, ignore_errors=True)
    return 0


def report(args: argparse.Namespace, n_hungry: int, t: dict[str, float]) -> None:
    def extra(kind: str, how: str) -> float:
        return t[f"{kind} {how}"] - t[f"{kind} baseline"]

    print(
        f"\nSweep: {args.trials} trials x {args.work_s:g} s of work on {args.cpus} CPUs; "
        f"{n_hungry} ({n_hungry / args.trials:.0%}) run out of memory once at cpu_per_trial=1 "
        "and complete at 2.\n"
    )
    print(f"{'':44}{'Ray Tune':>12}{'radas_flows':>14}")
    rows = [
        ("baseline: nothing runs out of memory", "baseline"),
        ("escalation: re-run only those at 2 CPUs", "escalation"),
        ("naive: whole sweep again at 2 CPUs", "naive"),
    ]
    for label, how in rows:
        print(f"{label:44}{t['raw ' + how]:>10.1f} s{t['radas ' + how]:>12.1f} s")
    print()
    for kind, name in (("raw", "Ray Tune"), ("radas", "radas_flows")):
        esc, naive = extra(kind, "escalation"), extra(kind, "naive")
        print(
            f"{name + ':':13} extra over baseline: escalation {esc:+.1f} s, naive {naive:+.1f} s; "
            f"ratio {esc / naive:.2f} (target <= 0.20; ideal about {n_hungry / args.trials:.2f})"
        )
    print()
    overheads = ", ".join(
        f"{how} {t['radas ' + how] / t['raw ' + how]:.2f}x"
        for how in ("baseline", "escalation", "naive")
    )
    print(f"radas_flows time / Ray Tune time for the same work: {overheads}")


def write_json(
    args: argparse.Namespace, n_hungry: int, t: dict[str, float], started: float
) -> None:
    """``bench/results/oom_escalation.json``, in the suite's format."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _bench

    def ratio(kind: str) -> float:
        base = t[f"{kind} baseline"]
        return (t[f"{kind} escalation"] - base) / (t[f"{kind} naive"] - base)

    sweep = f"{args.trials} trials x {args.work_s:g} s, {n_hungry} run out of memory once"
    cases = [
        _bench.Case(
            name="OOM: escalation extra / naive extra",
            what=f"{sweep}; radas_flows re-runs only those at 2 CPUs",
            ours_s=ratio("radas"),
            baseline_s=ratio("raw"),
            baseline_what="plain Tune, the same by hand (a second Tuner of the failed configs)",
            unit="",
            ratio=None,
            target="<= 0.20 (ideal: the share re-run)",
            met=ratio("radas") <= 0.20,
        )
    ]
    for how in ("baseline", "escalation", "naive"):
        cases.append(
            _bench.Case(
                name=f"OOM: {how}",
                what=f"{sweep}: the {how} pass(es), one process, warm",
                ours_s=t[f"radas {how}"],
                baseline_s=t[f"raw {how}"],
                baseline_what="plain Ray Tune, the same work",
                target="-",
                met=None,
            )
        )
    _bench.write_results("oom_escalation", cases, quick=args.quick, started=started)


if __name__ == "__main__":
    sys.exit(main())
