"""Benchmark: the cluster path, a 20-trial sweep on a loopback ``ray start --head``.

``run_experiment(run_with="cluster:loopback")`` (temporary Prefect server, a Ray job through
the Jobs API, results read back and analyzed) against the same Tune script sent with
``ray job submit`` (the CLI, waiting for the job). Both are fresh processes started from a
project folder, alternated; the head (2 CPUs, token auth, 127.0.0.1 only) is started once,
as ``tests/clusters/loopback_ray.py`` does, and stopped by its processes' ids. Measured: from
the start of the submitting process to the first trial result stored (``result.json`` in the
results folder) and to the process's exit. Target: ratio at most 1.2 for both.

Run: ``python bench/cluster_path.py`` (about 3 minutes alone on 2 CPUs; ``--quick``: 1 run).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench

TRIALS = 20
TARGET_RATIO = 1.2

TRAINABLE = """\
def trainable(config):
    return {"score": config["x"] ** 2}
"""

RAW_JOB = """\
import os
import sys

import ray
from ray import tune

sys.path.insert(0, os.getcwd())
from bench_trainable import trainable

ray.init()
tune.Tuner(
    trainable,
    param_space={"x": tune.grid_search(list(range(int(sys.argv[1]))))},
    tune_config=tune.TuneConfig(reuse_actors=True),
    run_config=tune.RunConfig(storage_path=sys.argv[2], name=sys.argv[3]),
).fit()
"""

RADAS_RUN = """\
import sys

from bench_trainable import trainable
from radas_flows import run_experiment_sync

run_experiment_sync(
    user_name="bench",
    trainable=trainable,
    experiment_name=sys.argv[2],
    run_with="cluster:loopback",
    param_space={"x": {"grid_search": list(range(int(sys.argv[1])))}},
    run_choice="run",
)
"""


def timed_until_exit(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    results: Path,
    pattern: str,
    timeout: float = 900,
) -> tuple[float, float]:
    """(seconds to the first stored trial result, seconds to exit) of one process."""
    with tempfile.TemporaryFile(mode="w+") as log:  # a pipe nobody reads would block it
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        first = None
        while proc.poll() is None:
            if first is None and any(results.glob(pattern)):
                first = time.perf_counter() - start
            if time.perf_counter() - start > timeout:
                proc.kill()
                break
            time.sleep(0.05)
        total = time.perf_counter() - start
        proc.wait()
        log.seek(0)
        output = log.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}):\n{output[-4000:]}")
    if first is None:
        first = total if any(results.glob(pattern)) else float("nan")
    return first, total


def main(argv: list[str] | None = None) -> int:
    args = _bench.parser(__doc__.splitlines()[0]).parse_args(argv)
    started = time.perf_counter()
    repeats = args.repeats or (1 if args.quick else 3)
    sys.path.insert(0, str(_bench.REPO))
    from tests.clusters.loopback_ray import start_head, stop_head

    _bench.ensure_prefect_home()
    project = Path(tempfile.mkdtemp(prefix="cluster-project-", dir=_bench.WORK_DIR))
    (project / "bench_trainable.py").write_text(TRAINABLE)
    (project / "raw_job.py").write_text(RAW_JOB)
    (project / "radas_run.py").write_text(RADAS_RUN)
    ray_cli = str(Path(sys.executable).parent / "ray")
    head = start_head(num_cpus=2, num_gpus=0)
    print(f"loopback head up in {head.start_seconds:.1f} s at {head.dashboard_url}")
    first: dict[str, list[float]] = {"radas": [], "raw": []}
    done: dict[str, list[float]] = {"radas": [], "raw": []}
    counter = [0]
    try:
        results_root = head.temp_dir / "results"

        def side(kind: str) -> float:
            counter[0] += 1
            name = f"{kind}{counter[0]:03d}"
            env = _bench.child_env(
                f"cluster-{kind}",
                RADAS_CLUSTERS_FILE=str(head.registry),
                RAY_AUTH_MODE="token",
                RAY_AUTH_TOKEN_PATH=str(head.token_file),
            )
            if kind == "radas":
                cmd = [sys.executable, "radas_run.py", str(TRIALS), name]
                watch, pattern = results_root / "bench", f"*{name}/*/result.json"
            else:
                storage = results_root / "raw"
                cmd = [
                    ray_cli,
                    "job",
                    "submit",
                    "--address",
                    head.dashboard_url,
                    "--working-dir",
                    ".",
                    "--",
                    "python",
                    "raw_job.py",
                    str(TRIALS),
                    str(storage),
                    name,
                ]
                watch, pattern = storage, f"{name}/*/result.json"
            f, t = timed_until_exit(cmd, project, env, watch, pattern)
            first[kind].append(f)
            done[kind].append(t)
            return t

        print(f"cluster path: {TRIALS} trials, {repeats} runs of each, alternated")
        _bench.alternate({"radas": lambda: side("radas"), "raw": lambda: side("raw")}, repeats)
    finally:
        print(f"stopped the loopback head in {stop_head(head):.1f} s")
    med = _bench.median
    cases = []
    for label, values in (("submit to first result", first), ("submit to done", done)):
        ours, base = med(values["radas"]), med(values["raw"])
        assert ours is not None and base is not None
        cases.append(
            _bench.Case(
                name=f"cluster, {label}",
                what=f"{TRIALS}-trial run_experiment on a loopback ray start --head",
                ours_s=ours,
                baseline_s=base,
                baseline_what="the same Tune script with `ray job submit` (waits for the job)",
                target=f"ratio <= {TARGET_RATIO:g}",
                met=ours / base <= TARGET_RATIO,
                ours_runs=values["radas"],
                baseline_runs=values["raw"],
            )
        )
    _bench.write_results("cluster_path", cases, quick=args.quick, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
