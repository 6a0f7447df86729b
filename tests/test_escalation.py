"""Out-of-memory classification over real Ray, Tune and Python errors; escalation decisions."""

from __future__ import annotations

import errno
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from radas_flows.errors import RadasValueError
from radas_flows.oom import (
    cap_failure_text,
    classify_error,
    format_number,
    gpu_share,
    next_cpu_per_trial,
    oom_signature,
    read_trial_error,
    recommendation_text,
)
from tests.oom_trainables import (
    failing_in_turn,
    private_local_ray,
    read_executions,
    ship_by_value,
)

ship_by_value(__name__)

# torch's CUDA caching allocator message (c10/cuda/CUDACachingAllocator.cpp, TORCH_CHECK_WITH(
# OutOfMemoryError, ...)), assembled from its pieces with example sizes; raised as
# torch.OutOfMemoryError (torch >= 2.5), torch.cuda.OutOfMemoryError (1.13 to 2.4).
TORCH_CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB "
    "of which 1.06 GiB is free. Including non-PyTorch memory, this process has 78.12 GiB memory "
    "in use. Of the allocated memory 76.50 GiB is allocated by PyTorch, and 1.02 GiB is reserved "
    "by PyTorch but unallocated. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation "
    "for Memory Management  (https://docs.pytorch.org/docs/stable/notes/cuda.html"
    "#optimizing-memory-usage-with-pytorch-cuda-alloc-conf)"
)
# The same allocator before torch 1.13, raised as a plain RuntimeError.
TORCH_CUDA_OOM_OLD = (
    "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 7.93 GiB total capacity; "
    "6.96 GiB already allocated; 13.12 MiB free; 7.02 GiB reserved in total by PyTorch)"
)
# Ray 2.60's memory monitor, as observed on this machine (first two lines of the message).
RAY_MEMORY_MONITOR = (
    "1 worker(s) were killed due to the node running low on memory. Memory on the node "
    "(IP: 192.0.2.2, ID: 7f977a40e0470609b7b519936fb572a1586d3c47c997ded9a372e7f5) was 1.58GB "
    "used / 23.54GB limit (0.066966)\n"
    "OOM kill reason: Memory usage 1610002432B exceeded threshold of 1564532736B "
    "(6.2% of 25276063744B limit)"
)

OOM_TEXTS = {
    "torch >= 2.5": f"torch.OutOfMemoryError: {TORCH_CUDA_OOM}",
    "torch 1.13 to 2.4": f"torch.cuda.OutOfMemoryError: {TORCH_CUDA_OOM}",
    "torch < 1.13": f"RuntimeError: {TORCH_CUDA_OOM_OLD}",
    "cudaErrorMemoryAllocation via C10_CUDA_CHECK": "RuntimeError: CUDA error: out of memory",
    "CUDA runtime enum": "cudaMalloc failed: cudaErrorMemoryAllocation",
    "cuBLAS": "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling "
    "`cublasCreate(handle)`",
    "cuDNN": "RuntimeError: cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "ROCm": "torch.OutOfMemoryError: HIP out of memory. Tried to allocate 1.00 GiB",
    "Apple MPS": "RuntimeError: MPS backend out of memory (MPS allocated: 17.00 GB)",
    "JAX on GPU": "jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory "
    "while trying to allocate 17179869184 bytes.",
    "JAX on TPU": "XlaRuntimeError: RESOURCE_EXHAUSTED: Error allocating device buffer: "
    "Attempting to allocate 1.00G. That was not possible. There are 500.00M free.",
    "TensorFlow": "tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when "
    "allocating tensor with shape[8192,8192] and type float on /job:localhost/device:GPU:0",
    "Ray memory monitor": RAY_MEMORY_MONITOR,
    "fork without memory": "OSError: [Errno 12] Cannot allocate memory",
    "C++ extension": "RuntimeError: std::bad_alloc",
    "Python traceback": "Traceback (most recent call last):\n"
    '  File "train.py", line 3, in <module>\n'
    "    buffer = bytearray(n)\n"
    "MemoryError",
}

NOT_OOM_TEXTS = {
    "illegal memory access": "RuntimeError: CUDA error: an illegal memory access was encountered",
    "user message about memory": "ValueError: not enough memory for batch_size=4096; lower it",
    "user message naming MemoryError": "ValueError: MemoryError is not raised by this config",
    "MemoryError only in source": "Traceback (most recent call last):\n"
    '  File "train.py", line 9, in fit\n'
    "    except MemoryError:\n"
    "KeyError: 'memory'",
    "gRPC message too large": "grpc: RESOURCE_EXHAUSTED: Received message larger than max "
    "(5242880 vs. 4194304)",
    "plain worker crash": "The worker died unexpectedly while executing this task. Check "
    "python-core-worker-*.log files for more information.",
    "job killed by user": "Job entrypoint command failed with exit code 1, last available logs",
    "empty": "",
}


# --- decisions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "cap", "expected"),
    [(1, 8, 2.0), (4, 8, 8.0), (8, 8, None), (0.5, 1, 1.0), (3, 4, None), (5, 4, None)],
)
def test_next_cpu_per_trial_doubles_up_to_the_cap(current, cap, expected) -> None:
    assert next_cpu_per_trial(current, cap) == expected


@pytest.mark.parametrize(
    ("current", "cap", "message"),
    [
        (0, 8, r"cpu_per_trial must be a positive finite number, got 0"),
        (-1, 8, r"cpu_per_trial must be a positive finite number, got -1"),
        (math.nan, 8, r"cpu_per_trial must be a positive finite number, got nan"),
        ("2", 8, r"cpu_per_trial must be a number, got '2'"),
        (True, 8, r"cpu_per_trial must be a number, got True"),
        (1, 0, r"cpu_per_node must be a positive finite number, got 0"),
        (1, math.inf, r"cpu_per_node must be a positive finite number, got inf"),
    ],
)
def test_next_cpu_per_trial_rejects_bad_values(current, cap, message) -> None:
    with pytest.raises(RadasValueError, match=message):
        next_cpu_per_trial(current, cap)


@pytest.mark.parametrize(
    ("cpus", "gpu_per_cpu", "expected"),
    [
        (4, 0.125, 0.5),
        (1, 0, 0.0),
        (3, 1 / 3, 1.0),
        (2, 1, 2.0),
        (1, 0.33333, 0.3333),
        (3, 0.1, 0.3),  # 0.30000000000000004 unrounded
        (7, 0.1, 0.7),  # 0.7000000000000001 unrounded
        (0.5, 0.25, 0.125),
        (2, 0.00005, 0.0001),  # Ray's smallest share
    ],
)
def test_gpu_share_follows_gpu_per_cpu(cpus, gpu_per_cpu, expected) -> None:
    share = gpu_share(cpus, gpu_per_cpu)
    assert share == expected
    assert share == round(share, 4)  # a whole number of Ray's 0.0001 resource units


def test_gpu_share_doubles_with_the_cpus() -> None:
    shares = [gpu_share(cpus, 0.1) for cpus in (1, 2, 4, 8)]
    assert shares == [0.1, 0.2, 0.4, 0.8]


def test_gpu_share_below_rays_precision_is_an_error() -> None:
    with pytest.raises(RadasValueError, match=r"below Ray's smallest GPU share of 0.0001"):
        gpu_share(1, 0.00001)


def test_gpu_share_rejects_bad_values() -> None:
    with pytest.raises(RadasValueError, match=r"gpu_per_cpu must be zero or a positive.*got -1"):
        gpu_share(2, -1)
    with pytest.raises(RadasValueError, match=r"gpu_per_cpu must be a number, got None"):
        gpu_share(2, None)  # type: ignore[arg-type]
    with pytest.raises(RadasValueError, match=r"cpu_per_trial must be a positive.*got 0"):
        gpu_share(0, 1)


def test_recommendation_text_is_exact() -> None:
    assert recommendation_text(3, 1, 2) == (
        "3 trials ran out of memory at cpu_per_trial=1 and completed at 2; "
        "start future runs with cpu_per_trial=2"
    )
    assert recommendation_text(1, 2.0, 8.0) == (
        "1 trial ran out of memory at cpu_per_trial=2 and completed at 8; "
        "start future runs with cpu_per_trial=8"
    )
    assert recommendation_text(2, 0.5, 1.0) == (
        "2 trials ran out of memory at cpu_per_trial=0.5 and completed at 1; "
        "start future runs with cpu_per_trial=1"
    )
    with pytest.raises(RadasValueError, match="n_trials must be a positive integer, got 0"):
        recommendation_text(0, 1, 2)


def test_format_number_drops_trailing_zero() -> None:
    assert [format_number(v) for v in (2.0, 2, 0.25, 0.1 + 0.2, 16.0)] == [
        "2",
        "2",
        "0.25",
        "0.3",
        "16",
    ]


def test_cap_failure_text_names_trials_values_and_cap() -> None:
    text = cap_failure_text(["f_00003", "f_00007", "f_00003"], [1, 2, 4.0], 4)
    assert text.startswith("2 trials still ran out of memory at cpu_per_trial=4: f_00003, f_00007.")
    assert "cpu_per_trial tried: 1, 2, 4; doubling again to 8 would exceed the cap" in text
    assert "cpu_per_node=4" in text
    assert "more CPUs (and memory) per node" in text

    rounds = cap_failure_text(["f_00001"], [1, 2], 16, max_rounds=1)
    assert rounds.startswith("1 trial still ran out of memory at cpu_per_trial=2: f_00001.")
    assert "maximum of 1 escalation rounds (cpu_per_trial tried: 1, 2; cap cpu_per_node=16)" in (
        rounds
    )
    with pytest.raises(RadasValueError, match="at least one trial id"):
        cap_failure_text([], [1], 4)
    with pytest.raises(RadasValueError, match="cpu_per_trial values that were tried"):
        cap_failure_text(["f_00001"], [], 4)


# --- classification of texts and plain Python exceptions -----------------------------------


@pytest.mark.parametrize("text", OOM_TEXTS.values(), ids=OOM_TEXTS.keys())
def test_real_oom_texts_are_oom(text: str) -> None:
    assert classify_error(text) == "oom"


@pytest.mark.parametrize("text", NOT_OOM_TEXTS.values(), ids=NOT_OOM_TEXTS.keys())
def test_other_texts_are_errors(text: str) -> None:
    assert oom_signature(text) is None
    assert classify_error(text) == "error"


def test_killed_worker_texts_depend_on_the_switch() -> None:
    job = "Job entrypoint command failed with exit code 137, last available logs (truncated"
    assert oom_signature(job) == "process killed by SIGKILL"
    assert classify_error(job, killed_worker_is_oom=False) == "error"
    assert classify_error("Job entrypoint command failed with exit code -9. No logs") == "oom"


def test_none_is_an_error_without_signature() -> None:
    assert oom_signature(None) is None
    assert classify_error(None) == "error"


def test_python_exceptions() -> None:
    import numpy as np

    try:
        np.empty(2**62, dtype=np.uint8)
    except MemoryError as caught:
        array_error = caught
    assert classify_error(array_error) == "oom"  # numpy's _ArrayMemoryError or MemoryError
    formatted = "".join(traceback.format_exception(array_error))
    assert oom_signature(formatted) == "MemoryError"

    assert classify_error(MemoryError()) == "oom"
    assert classify_error(OSError(errno.ENOMEM, "Cannot allocate memory")) == "oom"
    assert classify_error(OSError(errno.ENOENT, "No such file: memory.csv")) == "error"
    assert classify_error(ValueError("not enough memory for this batch size")) == "error"
    assert classify_error(ExceptionGroup("trials", [ValueError("a"), MemoryError()])) == "oom"
    assert classify_error(ExceptionGroup("trials", [ValueError("a"), KeyError("b")])) == "error"

    try:
        try:
            raise MemoryError("cannot allocate")
        except MemoryError as inner:
            raise RuntimeError("training step failed") from inner
    except RuntimeError as outer:
        assert classify_error(outer) == "oom"
        assert oom_signature(outer) == "MemoryError"


def test_exceptions_with_broken_str_are_classified_by_type() -> None:
    class Opaque(MemoryError):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert classify_error(Opaque()) == "oom"
    assert classify_error(Broken()) == "error"


# --- real Ray and Tune errors ------------------------------------------------------------


def _raise_memory_error() -> None:
    raise MemoryError("cannot allocate the activations")


def _raise_value_error_about_memory() -> None:
    raise ValueError("not enough memory for this batch size")


def _raise_value_error_from_memory_error() -> None:
    try:
        _raise_memory_error()
    except MemoryError as error:
        raise ValueError("training step failed") from error


def _raise_old_torch_style_cuda_oom() -> None:
    raise RuntimeError(TORCH_CUDA_OOM_OLD)


def _kill_own_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(30)


class _Actor:
    def __init__(self, fail: bool = False) -> None:
        if fail:
            raise ValueError("bad actor config: memory_mb must be positive")

    def kill_self(self) -> None:
        _kill_own_process()

    def ping(self) -> int:
        return os.getpid()


def _error_of(ref: Any) -> BaseException:
    import ray

    try:
        ray.get(ref, timeout=120)
    except Exception as error:
        return error
    raise AssertionError("the remote call did not fail")


@pytest.fixture(scope="module")
def local_ray():
    with private_local_ray(num_cpus=2) as ray:
        yield ray


@pytest.fixture(scope="module")
def ray_errors(local_ray) -> dict[str, BaseException]:
    """Errors produced by real Ray tasks and actors, once for the module."""
    ray = local_ray

    def task(fn):
        return ray.remote(max_retries=0)(fn).remote()

    actor_cls = ray.remote(max_restarts=0)(_Actor)
    killed = actor_cls.remote()
    ray.get(killed.ping.remote())
    return {
        "task MemoryError": _error_of(task(_raise_memory_error)),
        "task ValueError about memory": _error_of(task(_raise_value_error_about_memory)),
        "task ValueError from MemoryError": _error_of(task(_raise_value_error_from_memory_error)),
        "task CUDA OOM RuntimeError": _error_of(task(_raise_old_torch_style_cuda_oom)),
        "task SIGKILL": _error_of(task(_kill_own_process)),
        "actor SIGKILL": _error_of(killed.kill_self.remote()),
        "actor init ValueError": _error_of(actor_cls.remote(fail=True).ping.remote()),
    }


def test_ray_task_memory_error(ray_errors) -> None:
    error = ray_errors["task MemoryError"]
    assert type(error).__name__ == "RayTaskError(MemoryError)"
    assert classify_error(error) == "oom"
    assert classify_error(str(error)) == "oom"


def test_ray_task_errors_that_are_not_oom(ray_errors) -> None:
    error = ray_errors["task ValueError about memory"]
    assert type(error).__name__ == "RayTaskError(ValueError)"
    assert classify_error(error) == "error"
    assert classify_error(str(error)) == "error"

    init_error = ray_errors["actor init ValueError"]
    assert type(init_error).__name__ == "ActorDiedError"
    assert "The actor died because of an error raised in its creation task" in str(init_error)
    assert classify_error(init_error) == "error"

    # A killed task gives no hint of the cause (trials are actors, which do; see below).
    crashed = ray_errors["task SIGKILL"]
    assert type(crashed).__name__ == "WorkerCrashedError"
    assert classify_error(crashed) == "error"


def test_ray_task_error_caused_by_memory_error(ray_errors) -> None:
    # The remote __cause__ survives only in the traceback text Ray carries.
    error = ray_errors["task ValueError from MemoryError"]
    assert type(error).__name__ == "RayTaskError(ValueError)"
    assert "The above exception was the direct cause" in str(error)
    assert oom_signature(error) == "MemoryError"
    assert classify_error(error) == "oom"


def test_ray_task_cuda_oom(ray_errors) -> None:
    error = ray_errors["task CUDA OOM RuntimeError"]
    assert type(error).__name__ == "RayTaskError(RuntimeError)"
    assert oom_signature(error) == "accelerator out of memory"


def test_ray_actor_killed_by_sigkill(ray_errors) -> None:
    error = ray_errors["actor SIGKILL"]
    assert type(error).__name__ == "ActorDiedError"
    assert "Worker exit type: SYSTEM_ERROR" in str(error)
    assert "the process was killed by the OOM killer" in str(error)
    assert classify_error(error) == "oom"
    assert classify_error(error, killed_worker_is_oom=False) == "error"


def test_ray_exception_types_built_with_real_texts() -> None:
    from ray.exceptions import (
        NodeDiedError,
        ObjectStoreFullError,
        OutOfDiskError,
        OutOfMemoryError,
        RayTaskError,
    )

    monitor = OutOfMemoryError(RAY_MEMORY_MONITOR)
    assert oom_signature(monitor) == "ray.exceptions.OutOfMemoryError"
    # How Tune's actor manager re-raises it (ray/air/execution/_internal/actor_manager.py).
    try:
        raise RuntimeError(f"Caught unexpected exception: {monitor}") from monitor
    except RuntimeError as tune_error:
        assert classify_error(tune_error) == "oom"
        assert classify_error(str(tune_error)) == "oom"

    assert classify_error(ObjectStoreFullError("Failed to put object")) == "oom"
    assert classify_error(OutOfDiskError("ffff", None, "call site")) == "error"
    assert classify_error(NodeDiedError("The node with node id: abc was marked dead")) == "error"

    wrapped = RayTaskError("train", "Traceback ...\nMemoryError\n", MemoryError())
    assert classify_error(wrapped) == "oom"
    assert classify_error(wrapped.as_instanceof_cause()) == "oom"


def test_tune_stored_errors_keep_the_latest_failure(local_ray, tmp_path: Path) -> None:
    import pyarrow.fs
    from ray import tune

    count_file = tmp_path / "executions.jsonl"
    space = {
        "x": tune.grid_search([1, 2]),
        "errors": tune.sample_from(
            lambda config: (
                ["ValueError", "MemoryError"] if config["x"] == 1 else ["MemoryError", "ValueError"]
            )
        ),
        "count_file": str(count_file),
    }
    tuner = tune.Tuner(
        tune.with_resources(failing_in_turn, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path),
            name="failing",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    )
    results = {r.config["x"]: r for r in tuner.fit()}
    assert sorted(e["config"]["x"] for e in read_executions(count_file)) == [1, 1, 2, 2]

    # x=1: ValueError, then MemoryError. x=2: MemoryError, then a ValueError about memory.
    for x, kind, last_line in ((1, "oom", "MemoryError: cannot allocate"), (2, "error", "Value")):
        result = results[x]
        raw = (Path(result.path) / "error.txt").read_text()
        assert raw.count("Failure # ") == 2, raw
        latest = read_trial_error(result.path)
        assert latest is not None
        assert not latest.startswith("Failure # ")
        assert latest.splitlines()[-1].startswith(last_line)
        assert classify_error(latest) == kind
        assert classify_error(result.error) == kind
        via_fs = read_trial_error(result.path, filesystem=pyarrow.fs.LocalFileSystem())
        assert via_fs == latest
    # The whole file of x=2 still names its first MemoryError: only the latest failure counts.
    assert classify_error((Path(results[2].path) / "error.txt").read_text()) == "oom"


def test_read_trial_error_without_error_file(tmp_path: Path) -> None:
    import pyarrow.fs

    assert read_trial_error(tmp_path) is None
    assert read_trial_error(tmp_path / "missing") is None
    assert read_trial_error(str(tmp_path), filesystem=pyarrow.fs.LocalFileSystem()) is None
    (tmp_path / "error.txt").write_text("MemoryError\n")  # no "Failure #" line: taken whole
    assert read_trial_error(tmp_path) == "MemoryError"


def test_module_imports_no_ray() -> None:
    import subprocess

    code = (
        "import sys, radas_flows.oom, radas_flows.escalation, radas_flows.tuner; "
        "print(sorted(m for m in ('ray', 'torch', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
