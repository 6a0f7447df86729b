"""Real out-of-memory trials on a private local Ray, classified as the escalation loop sees them."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from radas_flows.oom import classify_error, oom_signature, read_trial_error
from tests.oom_trainables import (
    kernel_oom_victim,
    memory_grabber,
    memory_hungry,
    memory_used_and_total,
    own_memory_cgroup_v1,
    private_local_ray,
    read_executions,
)

GIB = 2**30


def _fit(trainable: Any, cpus: float, param_space: dict[str, Any], storage: Path, name: str):
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus}),
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(storage), name=name, verbose=0),
    )
    return tuner.fit()


@pytest.fixture(scope="class")
def local_ray():
    with private_local_ray(num_cpus=2) as ray:
        yield ray


@pytest.mark.usefixtures("local_ray")
class TestRealOutOfMemory:
    """Trials whose memory budget follows the CPUs Ray assigned: out of memory at 1, fine at 2."""

    def test_memory_error_at_one_cpu_completes_at_two(self, tmp_path: Path) -> None:
        from ray import tune

        count_file = tmp_path / "executions.jsonl"
        space = {
            "x": tune.grid_search([1, 2]),
            "need_mib": tune.sample_from(lambda config: 768 if config["x"] == 1 else 64),
            "count_file": str(count_file),
        }
        first = {r.config["x"]: r for r in _fit(memory_hungry, 1, space, tmp_path, "round1")}

        hungry = first[1]
        assert type(hungry.error).__name__ == "RayTaskError(MemoryError)"
        assert isinstance(hungry.error, MemoryError)
        assert oom_signature(hungry.error) == "MemoryError"
        assert classify_error(hungry.error) == "oom"
        stored = read_trial_error(hungry.path)
        assert stored is not None
        assert stored.splitlines()[-1] == "MemoryError"
        assert classify_error(stored) == "oom"
        assert first[2].error is None
        assert first[2].metrics["cpus"] == 1.0
        assert read_trial_error(first[2].path) is None

        # Read back from storage, as a flow attaching to a finished experiment does.
        restored = tune.Tuner.restore(
            str(tmp_path / "round1"), trainable=tune.with_resources(memory_hungry, {"cpu": 1})
        ).get_results()
        assert [classify_error(r.error) for r in restored if r.error is not None] == ["oom"]

        retry = {"x": 1, "need_mib": 768, "count_file": str(count_file)}
        second = _fit(memory_hungry, 2, retry, tmp_path, "round2")
        assert second[0].error is None
        assert second[0].metrics["cpus"] == 2.0
        assert second[0].metrics["allocated_mib"] == 768

        runs = sorted((e["config"]["x"], e["cpus"]) for e in read_executions(count_file))
        assert runs == [(1, 1.0), (1, 2.0), (2, 1.0)]

    def test_kernel_oom_kill_at_one_cpu_completes_at_two(self, tmp_path: Path) -> None:
        parent = own_memory_cgroup_v1()
        if parent is None:
            pytest.skip("needs a writable cgroup-v1 memory controller (root on a cgroup-v1 host)")
        count_file = tmp_path / "executions.jsonl"
        config = {"x": 1, "need_mib": 768, "count_file": str(count_file)}
        try:
            first = _fit(kernel_oom_victim, 1, config, tmp_path, "kernel1")[0]
            [killed] = read_executions(count_file)
            oom_control = (parent / killed["cgroup"] / "memory.oom_control").read_text()
            assert "oom_kill 1" in oom_control, "the kernel's OOM killer did not fire"

            assert type(first.error).__name__ == "ActorDiedError"
            assert "Worker exit type: SYSTEM_ERROR" in str(first.error)
            assert oom_signature(first.error) == "worker killed by the OOM killer"
            assert classify_error(first.error) == "oom"
            assert classify_error(first.error, killed_worker_is_oom=False) == "error"
            assert classify_error(read_trial_error(first.path)) == "oom"

            second = _fit(kernel_oom_victim, 2, config, tmp_path, "kernel2")[0]
            assert second.error is None
            assert second.metrics["cpus"] == 2.0
            assert [e["cpus"] for e in read_executions(count_file)] == [1.0, 2.0]
        finally:
            for execution in read_executions(count_file):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(parent / execution["cgroup"])


@pytest.fixture
def ray_with_low_memory_threshold():
    """A private Ray whose memory monitor fires 1.25 GiB above the memory in use right now."""
    used, total = memory_used_and_total()
    if total - used < 6 * GIB:
        pytest.skip("needs 6 GiB of free memory to trip Ray's memory monitor safely")
    system_config = {
        "memory_usage_threshold": (used + 1.25 * GIB) / total,
        "memory_monitor_refresh_ms": 50,
    }
    with private_local_ray(num_cpus=2, _system_config=system_config) as ray:
        yield ray


# Serial: the monitor's threshold is set from the memory in use when the fixture starts, so a
# parallel test's allocation trips it early, killing the trial's actor while it is still being
# created; Tune then marks the trial ERRORED and fit() returns instead of raising.
@pytest.mark.serial
def test_ray_memory_monitor_kill_aborts_fit_and_is_classified_oom(
    ray_with_low_memory_threshold, tmp_path: Path
) -> None:
    from ray.exceptions import OutOfMemoryError

    count_file = tmp_path / "executions.jsonl"
    space = {"x": 1, "grab_mib": 3072, "hold_s": 20, "count_file": str(count_file)}
    # Tune 2.60 handles only RayActorError and RayTaskError from a trial; the memory monitor's
    # OutOfMemoryError is neither, so fit() itself raises instead of marking the trial ERRORED.
    with pytest.raises(
        RuntimeError, match=r"Caught unexpected exception: \d+ worker\(s\) were killed"
    ) as caught:
        _fit(memory_grabber, 1, space, tmp_path, "monitor")
    assert len(read_executions(count_file)) == 1

    error = caught.value
    assert isinstance(error.__cause__, OutOfMemoryError)
    assert "killed due to the node running low on memory" in str(error.__cause__)
    assert oom_signature(error) == "ray.exceptions.OutOfMemoryError"
    assert classify_error(error) == "oom"
    assert oom_signature(str(error)) == "Ray memory monitor"  # the text a Ray Jobs log carries
    trial_dirs = [path for path in (tmp_path / "monitor").iterdir() if path.is_dir()]
    assert len(trial_dirs) == 1
    assert read_trial_error(trial_dirs[0]) is None, "Tune stored nothing for the killed trial"
