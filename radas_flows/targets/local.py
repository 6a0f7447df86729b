"""The local target: the driver in a thread of this process, on a private local Ray."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from radas_flows._artifacts import run_logger
from radas_flows.core import LOCAL_GPU_PER_CPU_ENV, local_cpus, local_gpu_per_cpu, local_gpus
from radas_flows.errors import RadasError, RadasValueError
from radas_flows.inputs.rules import LOCAL_CPU_CAP, check_cpu_per_trial
from radas_flows.inputs.runtime_env import check_runtime_env, local_runtime_env
from radas_flows.oom.policy import gpu_share
from radas_flows.targets.base import (
    DriverFailedError,
    Progress,
    RunHandle,
    TargetCheck,
)

if TYPE_CHECKING:
    from radas_flows.driver import DriverSpec
    from radas_flows.inputs.spec import ExperimentSpec
    from radas_flows.secret_plan import FoundSecrets, TrialSecrets
    from radas_flows.tuner import Tuner

__all__ = ["RELEASE_WAIT_S", "LocalRun", "LocalTarget", "ensure_local_ray", "held_resources"]

POLL_SECONDS = 1.0

#: How long a local Ray may take to release the resources of the runs that ended before it.
RELEASE_WAIT_S = 30.0
#: Ray's switch of its multi-node mode; where set, the local Ray listens as Ray decides.
ENABLE_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

_ray_env_lock = threading.RLock()
_our_ray_runtime_env: dict[str, Any] | None = None
_our_ray_resources: tuple[int, int] | None = None  # (CPUs, GPUs) our local Ray was started with
_local_threads: list[threading.Thread] = []


@dataclass
class LocalRun(RunHandle):
    """A driver running in a thread of this process."""

    thread: threading.Thread | None = None
    results: Any = None  # Tune's ResultGrid, once the driver returned
    error: BaseException | None = None  # what the driver raised


class LocalTarget:
    """This machine: an embedded, private local Ray (see :func:`ensure_local_ray`)."""

    name = "local"

    def check_run_choice(self, run_choice: str | None) -> str | None:
        if run_choice in ("attach", "stop_attach"):
            raise RadasValueError(
                f"run_choice={run_choice!r} only applies to cluster runs "
                "(run_with='cluster:<name>'): a local run lives in this process, so there is no "
                "job to attach to or stop. Use run_choice='run' or 'restore' locally."
            )
        return run_choice

    def check_runtime_env(self, runtime_env: dict[str, Any]) -> dict[str, Any]:
        return check_runtime_env(runtime_env, local=True)

    def trial_secrets(self, found: FoundSecrets) -> TrialSecrets:
        """Resolved in this process: the trials run on this machine's private Ray."""
        return found.resolve_here()

    def check_cpu_per_trial(self, cpu_per_trial: object, cpu_cap: float | None) -> float:
        cap = float(local_cpus()) if cpu_cap is None else cpu_cap
        return check_cpu_per_trial(cpu_per_trial, cap, LOCAL_CPU_CAP)

    def check(self, spec: ExperimentSpec) -> TargetCheck:
        """This machine's CPUs and GPUs; a trial gets ``cpu_per_trial * gpu_per_cpu`` GPUs.

        Raises:
            RadasValueError: The GPU share of ``cpu_per_trial`` is more than the GPUs here.
        """
        cpus, gpus = local_cpus(), local_gpus()
        gpu_per_cpu = local_gpu_per_cpu(cpus, gpus)
        cap = float(cpus)
        if gpu_per_cpu:
            # More CPUs than this would ask for more GPUs than the machine has.
            cap = min(cap, gpus / gpu_per_cpu)
            share = gpu_share(spec.cpu_per_trial, gpu_per_cpu)
            if share > gpus + 1e-9:
                raise RadasValueError(
                    f"cpu_per_trial={spec.cpu_per_trial:g} gives each trial {share:g} GPUs "
                    f"({LOCAL_GPU_PER_CPU_ENV}={gpu_per_cpu:g}), more than the {gpus} GPUs of "
                    f"this machine: no trial could be scheduled. Use cpu_per_trial <= {cap:g} "
                    f"or a smaller {LOCAL_GPU_PER_CPU_ENV}."
                )
        row = {
            "cluster": "local",
            "status": "online",
            "cpus_total": cpus,
            "gpus_total": gpus,
            "gpu_per_cpu": f"{gpu_per_cpu:g}",
            "gpus_per_trial": f"{gpu_share(spec.cpu_per_trial, gpu_per_cpu):g}",
            "hint": "this machine (embedded local Ray)",
        }
        return TargetCheck("local", True, cpus, gpus, cap, gpu_per_cpu, None, [row])

    def driver_trainable(self, spec: ExperimentSpec) -> Any:
        return spec.trainable

    def prepare(self, spec: ExperimentSpec) -> None:
        """Start the local Ray (and import Tune) in the background while the flow starts.

        Only for runs that will run trials with the default runtime_env, in a process
        without a Ray yet: ``submit`` decides (and logs in the run) whether a running Ray is
        reused or restarted. ``submit`` waits for this start (it holds the same lock), and
        starts Ray itself if this one failed.
        """
        initialized = getattr(sys.modules.get("ray"), "is_initialized", None)
        if "run" not in spec.dos or spec.runtime_env or (initialized and initialized()):
            return
        threading.Thread(target=_warm_local_ray, name="radas-ray-warmup", daemon=True).start()

    def submit(
        self, spec: ExperimentSpec, driver_spec: DriverSpec, *, submit_key: str | None
    ) -> LocalRun:
        from radas_flows._tune_registry import make_registry_thread_safe
        from radas_flows.driver import run_driver

        make_registry_thread_safe()  # another local run in this process may be starting too
        handle = LocalRun(
            run_id=driver_spec.run_id,
            experiment_path=driver_spec.experiment_path,
            driver_spec=driver_spec,
        )

        def target() -> None:
            try:
                handle.results = run_driver(driver_spec)
            except BaseException as e:  # handed to follow(), which raises it in the flow
                handle.error = e

        handle.thread = threading.Thread(
            target=target, name=f"radas-driver-{handle.run_id}", daemon=True
        )
        with _ray_env_lock:  # another run's check must see this one
            ensure_local_ray(spec.runtime_env)
            handle.thread.start()
            _local_threads.append(handle.thread)
        run_logger(__name__).info(
            "Started %s of %r on local Ray (pid %d) with %s per trial; results: %s",
            driver_spec.mode,
            spec.experiment_name,
            os.getpid(),
            driver_spec.resources,
            handle.experiment_path,
        )
        return handle

    def running_jobs(self, spec: ExperimentSpec) -> list[str]:
        """None: a local run lives in the process that started it, no job outlives it."""
        return []

    def attach(self, spec: ExperimentSpec, check: TargetCheck, logger: Any) -> RunHandle | None:
        self.check_run_choice(spec.run_choice)  # refused when the spec was built
        return None

    def follow(self, spec: ExperimentSpec, handle: RunHandle, progress: Progress) -> Tuner:
        """Wait for the driver thread, updating progress as trials end."""
        from radas_flows._tune_callbacks import PROGRESS
        from radas_flows.tuner import Tuner

        assert isinstance(handle, LocalRun) and handle.thread is not None
        while handle.thread.is_alive():
            handle.thread.join(timeout=POLL_SECONDS)
            update = PROGRESS.get(handle.run_id)
            if update:
                progress.update(update)
        PROGRESS.pop(handle.run_id, None)
        if handle.error is not None:
            error = handle.error
            from radas_flows.rescue import rescue_staging

            rescued = rescue_staging(spec.user_name, handle.experiment_path, error)
            if rescued is not None:  # remote storage failed; Ray's copy here is complete
                progress.done()
                return rescued
            raise DriverFailedError(
                f"Ray Tune could not run the experiment: {type(error).__name__}: {error}. "
                f"{_space_note(handle.experiment_path, error)}"
                f"Whatever finished is stored in {handle.experiment_path}; after fixing the "
                "cause, continue with run_choice='restore'."
            ) from error
        progress.done()
        return Tuner(handle.results, experiment_path=handle.experiment_path)

    def stop(self, handle: RunHandle, logger: Any, reason: BaseException) -> None:
        """Nothing to stop: the driver thread ends with this process (Tune saves as it goes)."""


def ensure_local_ray(runtime_env: dict[str, Any]) -> None:
    """Start a private local Ray (never attaching to another cluster), reusing ours if it fits.

    A Ray started by the caller is used as it is.
    """
    import ray

    wanted = local_runtime_env(runtime_env)
    resources = (local_cpus(), local_gpus())
    with _ray_env_lock:
        if ray.is_initialized():
            if _our_ray_runtime_env is None:
                return
            if _our_ray_runtime_env != wanted and _live_local_threads():
                raise RadasError(  # values are not shown: env_vars may hold secrets
                    "Another local run in this process uses the local Ray with a different "
                    "runtime_env (a local Ray has one). Wait for the other run to finish, give "
                    "both the same runtime_env, or run one of them on a cluster."
                )
            same = _our_ray_resources == resources or bool(_live_local_threads())
            if _our_ray_runtime_env == wanted and same and not _held_with_no_run_of_ours():
                return
            # Ours, with another runtime_env, other CPU/GPU counts, or lost resources: restart.
            ray.shutdown()
        _in_ray_owner_thread(lambda: _init_local_ray(wanted, resources))


def _warm_local_ray() -> None:
    try:
        import ray.tune  # noqa: F401 - the driver needs it; imported beside the other starts

        ensure_local_ray({})
    except Exception as e:  # submit starts Ray again and raises the reason there
        logging.getLogger(__name__).debug("starting the local Ray ahead failed: %r", e)


def held_resources() -> dict[str, float]:
    """CPUs and GPUs of the connected Ray that something holds now."""
    import ray

    total, available = ray.cluster_resources(), ray.available_resources()
    held = {k: total.get(k, 0.0) - available.get(k, 0.0) for k in ("CPU", "GPU")}
    return {k: v for k, v in held.items() if v > 1e-6}


def _live_local_threads() -> list[threading.Thread]:
    _local_threads[:] = [t for t in _local_threads if t.is_alive()]
    return _local_threads


def _held_with_no_run_of_ours() -> bool:
    """True when our local Ray keeps resources although no radas run uses it.

    A trial that dies abnormally (a worker failing under a memory limit) can leave its CPU
    reserved; the next run, or the next out-of-memory round that needs every CPU, would then
    wait forever. Only checked while no driver of ours runs in this process, so a restart
    loses nothing: finished runs are in storage.
    """
    if _live_local_threads():
        return False
    deadline = time.monotonic() + RELEASE_WAIT_S
    held = held_resources()
    while held and time.monotonic() < deadline:
        time.sleep(0.5)
        held = held_resources()
    if held:
        run_logger(__name__).warning(
            "The local Ray still holds %s although no radas run is using it; restarting it",
            ", ".join(f"{v:g} {k}" for k, v in sorted(held.items())),
        )
        return True
    return False


def _init_local_ray(wanted: dict[str, Any], resources: tuple[int, int]) -> None:
    global _our_ray_runtime_env, _our_ray_resources
    import ray

    cpus, gpus = resources
    with _loopback_only():
        ray.init(
            address="local",
            num_cpus=cpus,
            num_gpus=gpus or None,
            include_dashboard=False,
            runtime_env=wanted or None,
            logging_level=logging.WARNING,
        )
    if _our_ray_runtime_env is None:
        import atexit

        # Registered after Ray's own handler, so it runs first: the driver disconnects
        # before Ray's processes go away (otherwise exit waits for a lost GCS).
        atexit.register(_shutdown_our_ray)
    _our_ray_runtime_env = wanted
    _our_ray_resources = resources


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Start the private local Ray on 127.0.0.1 only, as Ray's single-node mode does.

    On Linux Ray replaces 127.0.0.1 by the machine's address and its servers (GCS, raylet,
    agents, workers) listen on every interface of a shared machine, although nothing outside
    this machine joins a local Ray. Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, at
    import, into a constant; that constant is switched off for the start only (a Ray without
    it starts as Ray decides; tests/test_local_ray_loopback.py notices). Where the user set
    the variable, Ray's own choice stands.
    """
    import importlib

    try:
        ray_constants: Any = importlib.import_module("ray._private.ray_constants")
    except ImportError:
        ray_constants = None
    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if ENABLE_CLUSTER_ENV in os.environ or before is None:
        yield
        return
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


_owner_calls: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
_owner_thread: threading.Thread | None = None


def _in_ray_owner_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in one thread that lives as long as the process.

    Ray's raylet and GCS get the parent-death signal when the *thread* that started them
    exits (Linux PR_SET_PDEATHSIG), so a local Ray started from a short-lived thread (a flow
    run inside ``asyncio.to_thread``) would be killed as soon as that thread ends.
    """
    global _owner_thread
    if _owner_thread is None or not _owner_thread.is_alive():

        def serve() -> None:
            while True:
                call, done = _owner_calls.get()
                try:
                    done.set_result(call())
                except BaseException as e:
                    done.set_exception(e)

        _owner_thread = threading.Thread(target=serve, name="radas-ray-owner", daemon=True)
        _owner_thread.start()
    done: Future[Any] = Future()
    _owner_calls.put((fn, done))
    return done.result()


def _shutdown_our_ray() -> None:
    import ray

    if _our_ray_runtime_env is not None and ray.is_initialized():
        ray.shutdown()


def _space_note(experiment_path: str, error: BaseException) -> str:
    """A sentence on a results folder out of space (Tune's own error may not say so)."""
    from radas_flows.rescue import free_bytes, storage_refused
    from radas_flows.storage import is_uri

    free = None if is_uri(experiment_path) else free_bytes(experiment_path)
    if free is not None and (free < 1 << 20 or storage_refused(error)):
        return f"The results folder's file system has {free} bytes free: free space there first. "
    return ""
