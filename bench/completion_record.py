"""What recording each completed trial costs, against forcing Tune to save its state instead.

Runs a sweep of trivial trials through the radas driver (``run_driver``, local Ray, actor
reuse) and prints, per completed trial: the time the completion record took
(``CompletionJournal``), and what one forced save of Tune's experiment state (the state file
plus the upload of the experiment folder Tune does with it) costs at the sweep's end, which is
what saving on every completion would add. Also times the same sweep without the record.

    .venv/bin/python bench/completion_record.py --trials 200
    .venv/bin/python bench/completion_record.py --trials 1000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any


def trivial(config: dict[str, Any]) -> dict[str, Any]:
    return {"score": config["a"]}


def sweep(trials: int, root: str, *, record: bool) -> tuple[float, Any]:
    from ray.tune.execution import tune_controller

    from radas_flows import _completion_journal, driver

    saves: list[float] = []
    original_save = tune_controller.TuneController.save_to_dir

    def timed_save(self: Any) -> None:
        started = time.perf_counter()
        original_save(self)
        saves.append(time.perf_counter() - started)

    tune_controller.TuneController.save_to_dir = timed_save  # type: ignore[method-assign]
    journals: list[Any] = []
    original_init = _completion_journal.CompletionJournal.__init__

    def init(self: Any) -> None:
        original_init(self)
        journals.append(self)

    _completion_journal.CompletionJournal.__init__ = init  # type: ignore[method-assign]
    original_record = _completion_journal._record
    durations: list[float] = []

    def timed_record(trial: Any) -> None:
        started = time.perf_counter()
        original_record(trial)
        durations.append(time.perf_counter() - started)

    _completion_journal._record = timed_record
    if not record:
        _completion_journal.CompletionJournal.on_trial_complete = (  # type: ignore[method-assign]
            lambda self, *a, **k: None
        )
    spec = driver.DriverSpec(
        trainable=trivial,
        param_space={"a": {"grid_search": list(range(trials))}},
        tuner_init_kwargs={},
        storage_path=root,
        name=f"bench_{trials}_{record}",
        resources={"cpu": 1},
    )
    started = time.perf_counter()
    results = driver.run_driver(spec)
    elapsed = time.perf_counter() - started
    assert len(results) == trials and not results.num_errors
    journal = journals[-1]
    return elapsed, (journal, saves, spec, durations)


def forced_save_cost(spec: Any) -> float:
    """One save of the experiment state and upload of the experiment folder, as Tune forces it."""
    import glob
    import os

    import ray
    from ray.train._internal.storage import _upload_to_fs_path, get_fs_and_path

    fs, path = get_fs_and_path(spec.experiment_path, None)
    session = ray._private.worker.global_worker.node.get_session_dir_path()
    staging = max(
        glob.glob(f"{session}/artifacts/*/{spec.name}/driver_artifacts"), key=os.path.getmtime
    )
    started = time.perf_counter()
    _upload_to_fs_path(staging, fs, path)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    root = tempfile.mkdtemp(prefix="radas-bench-")
    sweep(20, root, record=True)  # warm up: worker processes, imports
    with_record, (journal, saves, spec, durations) = sweep(args.trials, root, record=True)
    upload = forced_save_cost(spec)
    import importlib

    from radas_flows import _completion_journal

    importlib.reload(_completion_journal)
    without, _ = sweep(args.trials, root, record=False)  # after the first: warm too
    per = journal.seconds / max(journal.count, 1)
    print(f"trials: {args.trials}")
    print(f"sweep with the completion record: {with_record:.1f} s; without: {without:.1f} s")
    tenth = max(len(durations) // 10, 1)
    print(
        f"completion record: {journal.count} records, {per * 1e3:.2f} ms each on average; "
        f"median of the first tenth {statistics.median(durations[:tenth]) * 1e3:.2f} ms, "
        f"of the last tenth {statistics.median(durations[-tenth:]) * 1e3:.2f} ms"
    )
    print(
        f"Tune's state file: {len(saves)} saves, last {saves[-1] * 1e3:.1f} ms, "
        f"median {statistics.median(saves) * 1e3:.1f} ms"
    )
    print(f"upload of the experiment folder (a forced save): {upload * 1e3:.1f} ms")
    print(
        "a forced save per completion would add about "
        f"{(saves[-1] + upload) * args.trials / 2:.1f} s over the sweep (cost grows linearly)"
    )


if __name__ == "__main__":
    main()
