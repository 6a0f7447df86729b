"""The flow's behaviours end to end, once per placement: local Ray and a loopback cluster."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
from ray import tune

import tests.oom_trainables
import tests.trainables_for_tests
from radas_flows import Tuner, run_experiment_sync
from radas_flows.errors import ExperimentStateError
from tests.clusters.helpers import import_source
from tests.oom_trainables import read_executions, ship_by_value

pytestmark = pytest.mark.usefixtures("radas_env")


@dataclass(frozen=True)
class Placement:
    """Where the flow runs, and the test trainables as modules of the experiment's folder.

    A cluster job imports the trainable by reference from the uploaded working dir, so the
    trainables are copied there for both placements (local Ray gets them pickled by value).
    """

    run_with: str
    workdir: Path
    trainables: ModuleType
    oom: ModuleType

    @property
    def is_local(self) -> bool:
        return self.run_with == "local"

    def run(self, **kwargs: Any) -> dict[str, Any]:
        """One call of the public entry point, on this placement."""
        kwargs.setdefault("user_name", "tester")
        kwargs.setdefault("run_with", self.run_with)
        return run_experiment_sync(**kwargs)


def _copy_module(workdir: Path, module: ModuleType, prefix: str) -> ModuleType:
    copied = import_source(workdir, Path(str(module.__file__)).read_text(), prefix)
    ship_by_value(copied.__name__)
    return copied


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("cluster:loopback", id="cluster", marks=pytest.mark.cluster),
    ]
)
def placement(request: pytest.FixtureRequest, workdir: Path) -> Placement:
    """The placement under test; a cluster one points the registry at the loopback head."""
    if request.param != "local":
        request.getfixturevalue("cluster_registry")
    return Placement(
        run_with=request.param,
        workdir=workdir,
        trainables=_copy_module(workdir, tests.trainables_for_tests, "flow_trainables"),
        oom=_copy_module(workdir, tests.oom_trainables, "flow_oom_trainables"),
    )


def counts(path: Path) -> list[str]:
    """The ``a`` of every execution recorded in a count file, in order."""
    return path.read_text().split() if path.exists() else []


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class TestFlowOnEachPlacement:
    """Run, restore, analyze-only, the out-of-memory re-run and stop, through the public API."""

    def test_run(self, placement: Placement) -> None:
        count_file = placement.workdir / "count.txt"
        results = placement.run(
            trainable=placement.trainables.returning,
            experiment_name="flow",
            param_space={"a": tune.grid_search([1, 2, 3]), "b": 10, "count_file": str(count_file)},
            run_choice="run",
        )
        df, tuner = results["df"], results["tuner"]
        assert isinstance(tuner, Tuner)
        assert sorted(counts(count_file)) == ["1", "2", "3"]
        assert sorted(df["config/a"]) == [1, 2, 3]
        assert sorted(df["score"]) == [10, 20, 30]
        assert (df["trial_status"] == "TERMINATED").all()
        assert results["fig"] is None
        best = tuner.get_results().get_best_result(metric="score", mode="max")
        assert best.config["a"] == 3
        # The brief table drops bookkeeping columns and keeps config and metrics.
        brief = tuner.get_brief_dataframe()
        assert not {"timestamp", "pid", "hostname", "node_ip", "time_total_s"} & set(brief.columns)
        assert {"timestamp", "pid", "config/a", "score"} <= set(tuner.get_dataframe().columns)
        # The table is saved beside the results.
        csv = Path(tuner.experiment_path) / "radas_results.csv"
        assert pd.read_csv(csv)["score"].sum() == 60

    def test_restore_reruns_only_errored_trials(self, placement: Placement) -> None:
        count_file, gate = placement.workdir / "count.txt", placement.workdir / "gate"
        space = {
            "a": tune.grid_search([1, 2, 3]),
            "fail_a": 2,
            "gate": str(gate),
            "count_file": str(count_file),
        }
        trainable = placement.trainables.fails_once
        first = placement.run(
            trainable=trainable, experiment_name="restore", param_space=space, run_choice="run"
        )
        assert first["tuner"].num_errors == 1
        df = first["df"].set_index("config/a")
        # Every config appears once; the errored one has its status and no metrics.
        assert sorted(df.index) == [1, 2, 3]
        assert df.loc[2, "trial_status"] == "ERROR" and pd.isna(df.loc[2, "score"])
        assert (df.loc[[1, 3], "trial_status"] == "TERMINATED").all()
        gate.touch()
        second = placement.run(
            trainable=trainable, experiment_name="restore", param_space=space, run_choice="restore"
        )
        assert second["tuner"].num_errors == 0
        assert sorted(second["df"]["config/a"]) == [1, 2, 3]
        assert second["df"]["score"].notna().all()
        # Only the errored trial ran again.
        assert sorted(counts(count_file)) == ["1", "2", "2", "3"]

    def test_analyze_only_reads_stored_results(self, placement: Placement) -> None:
        import matplotlib.figure
        import seaborn as sns

        count_file = placement.workdir / "count.txt"
        trainable = placement.trainables.returning
        first = placement.run(
            trainable=trainable,
            experiment_name="dos",
            param_space={"a": tune.grid_search([1, 2, 3]), "b": 10, "count_file": str(count_file)},
            run_choice="run",
            dos=["run"],
        )
        assert first["df"] is None and first["fig"] is None
        assert first["tuner"].num_trials == 3
        # Analyze only: param_space and run_choice may be omitted, and nothing runs again.
        again = placement.run(
            trainable=trainable,
            experiment_name="dos",
            dos=["analyze"],
            plot_fn=sns.barplot,
            plot_kwargs=dict(x="config/a", y="score"),
        )
        assert sorted(again["df"]["score"]) == [10, 20, 30]
        assert isinstance(again["fig"], matplotlib.figure.Figure)
        assert sorted(counts(count_file)) == ["1", "2", "3"]

    def test_out_of_memory_trials_rerun_with_doubled_cpus(self, placement: Placement) -> None:
        # memory_hungry may use 512 MiB per CPU Ray assigned: 64 MiB fits at 1 CPU, 768 at 2.
        needs = {1: 64, 2: 768, 3: 64}
        count_file = placement.workdir / "executions.jsonl"
        space = {
            "x": tune.grid_search([1, 2, 3]),
            "need_mib": tune.sample_from(lambda config: needs[config["x"]]),
            "count_file": str(count_file),
        }
        results = placement.run(
            trainable=placement.oom.memory_hungry,
            experiment_name="oom",
            param_space=space,
            run_choice="run",
        )
        runs: dict[int, list[float]] = defaultdict(list)
        for execution in read_executions(count_file):
            runs[execution["config"]["x"]].append(execution["cpus"])
        # Completed trials ran once; the one out of memory ran again, alone, at 2 CPUs.
        assert dict(runs) == {1: [1.0], 2: [1.0, 2.0], 3: [1.0]}
        tuner = results["tuner"]
        assert tuner.num_trials == 3 and tuner.num_errors == 0
        assert [r.cpu_per_trial for r in tuner.oom_rounds] == [2.0]
        df = results["df"].set_index("config/x")
        assert df["cpu_per_trial"].to_dict() == {1: 1.0, 2: 2.0, 3: 1.0}
        assert df["allocated_mib"].to_dict() == {1: 64, 2: 768, 3: 64}
        assert (df["trial_status"] == "TERMINATED").all()
        # Analyzing later merges the round too, from storage alone.
        again = placement.run(
            trainable=placement.oom.memory_hungry, experiment_name="oom", dos=["analyze"]
        )
        assert again["df"].set_index("config/x")["cpu_per_trial"].to_dict() == {
            1: 1.0,
            2: 2.0,
            3: 1.0,
        }
        assert len(read_executions(count_file)) == 4

    def test_stop_attach_from_a_second_call(self, placement: Placement) -> None:
        if placement.is_local:
            pytest.skip(
                "a local run lives in the calling process: there is no job for a second call "
                "to stop (run_choice='stop_attach' is refused for run_with='local')"
            )
        count_file, gate = placement.workdir / "count.txt", placement.workdir / "gate"
        trainable = placement.trainables.gated
        # Trials 0 and 1 finish at once; 2 and 3 wait for the gate; 4 and 5 wait for a CPU.
        space = {
            "a": tune.grid_search(list(range(6))),
            "open_below": 2,
            "gate": str(gate),
            "count_file": str(count_file),
        }
        # The first call runs in a process of its own, as from another terminal: it follows the
        # job (and holds the experiment's lock on its own Prefect API) until the job is stopped.
        script = placement.workdir / "first_call.py"
        script.write_text(
            "import asyncio\n"
            "from radas_flows import run_experiment\n"
            f"from {trainable.__module__} import gated\n"
            "asyncio.run(run_experiment(user_name='tester', trainable=gated, experiment_name="
            f"'stop', run_with={placement.run_with!r}, param_space={space!r}, run_choice='run'))\n"
        )
        first_log = placement.workdir / "first_call.log"
        with first_log.open("wb") as log:
            first = subprocess.Popen(
                [sys.executable, script.name],
                cwd=placement.workdir,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            # Four trials started on two CPUs: 0 and 1 have finished, 2 and 3 wait.
            wait_for(
                lambda: len(counts(count_file)) >= 4 or first.poll() is not None, 300, "4 trials"
            )
            assert first.poll() is None, first_log.read_text()[-3000:]
            # Another run of the experiment while its job runs: an error naming the fixes.
            with pytest.raises(
                ExperimentStateError,
                match=r"already has a running job on cluster 'loopback' .*run_choice='attach'"
                r".*run_choice='stop_attach'",
            ):
                placement.run(
                    trainable=trainable, experiment_name="stop", param_space=space, run_choice="run"
                )
            stopped = placement.run(
                trainable=trainable, experiment_name="stop", run_choice="stop_attach"
            )
            # The call that followed the job analyzed what finished, then said it was stopped.
            assert first.wait(timeout=120) != 0
            followed = first_log.read_text()
            assert (
                "ExperimentStoppedError" in followed
                and "was stopped before it finished" in followed
            )
            assert "What finished was analyzed" in followed and "Results table:" in followed
        finally:
            gate.touch()  # a job the stop missed finishes
            with contextlib.suppress(subprocess.TimeoutExpired):
                first.wait(timeout=60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(first.pid, signal.SIGKILL)  # its Prefect server
        # Trials 0 and 1 finished; two of 2 to 5 were cut off (Tune picks which). While it
        # stops, Tune may start another in the CPU a stopped trial freed; it is cut off too.
        before = Counter(counts(count_file))
        assert {"0", "1"} <= set(before) and len(before) >= 4, before
        assert set(before.values()) == {1}, before
        # What finished is analyzed; trials the stop cut off or never started have no score.
        scored = stopped["df"].dropna(subset=["score"])
        assert sorted(scored["score"]) == [0, 1], stopped["df"]
        status = {o["trial_id"]: o["status"] for o in stopped["tuner"].trial_outcomes()}
        assert {status[t] for t in scored["trial_id"]} == {"TERMINATED"}, status
        unfinished = {s for t, s in status.items() if t not in set(scored["trial_id"])}
        assert unfinished and unfinished <= {"PENDING", "RUNNING", "PAUSED"}, status
        # Restoring runs the unfinished trials, and only those.
        restored = placement.run(
            trainable=trainable, experiment_name="stop", param_space=space, run_choice="restore"
        )
        assert sorted(restored["df"].dropna(subset=["score"])["score"]) == list(range(6))
        # Each unfinished trial ran once more; the finished ones did not run again.
        assert Counter(counts(count_file)) - before == Counter("2345")
