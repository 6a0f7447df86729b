"""Stage 2, submit: start the driver on a local Ray (in this process) or as a Ray job."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows._artifacts import run_logger
from radas_flows.core import experiment_path, local_cpus, local_gpus, results_root
from radas_flows.driver import DriverSpec
from radas_flows.errors import RadasError
from radas_flows.inputs.runtime_env import local_runtime_env
from radas_flows.inputs.spec import ExperimentSpec

_ray_env_lock = threading.RLock()
_our_ray_runtime_env: dict[str, Any] | None = None


@dataclass
class RunHandle:
    """A running experiment: a driver thread here, or a Ray job on a cluster."""

    run_id: str
    kind: Literal["local", "cluster"]
    experiment_path: str
    driver_spec: DriverSpec
    started_at: float = field(default_factory=time.time)
    thread: threading.Thread | None = None
    outcome: dict[str, Any] = field(default_factory=dict)  # local: "results" or "error"
    job_id: str | None = None
    cluster: str | None = None


def ensure_local_ray(runtime_env: dict[str, Any]) -> None:
    """Start a private local Ray (never attaching to another cluster), reusing ours if it fits.

    A Ray started by the caller is used as it is.
    """
    import ray

    wanted = local_runtime_env(runtime_env)
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
            if _our_ray_runtime_env == wanted and not _held_with_no_run_of_ours():
                return
            ray.shutdown()  # ours, with another runtime_env or holding lost resources: restart
        _in_ray_owner_thread(lambda: _init_local_ray(wanted))


#: How long a local Ray may take to release the resources of the runs that ended before it.
RELEASE_WAIT_S = 30.0

_local_threads: list[threading.Thread] = []


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


def _init_local_ray(wanted: dict[str, Any]) -> None:
    global _our_ray_runtime_env
    import ray

    gpus = local_gpus()
    ray.init(
        address="local",
        num_cpus=local_cpus(),
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


def driver_spec_for(
    spec: ExperimentSpec,
    mode: Literal["run", "restore"],
    *,
    cpu_per_trial: float,
    gpu_per_cpu: float = 0.0,
    root: str | None = None,
) -> DriverSpec:
    """The driver's view of an experiment spec, with its trial resources."""
    base = (root or results_root()).rstrip("/")
    resources: dict[str, float] = {"cpu": cpu_per_trial}
    if gpu_per_cpu:
        resources["gpu"] = cpu_per_trial * gpu_per_cpu
    return DriverSpec(
        trainable=spec.trainable_ref if not spec.target.is_local else spec.trainable,
        param_space=spec.param_space,
        tuner_init_kwargs=spec.tuner_init_kwargs,
        storage_path=f"{base}/{spec.user_name}",
        name=spec.full_name,
        resources=resources,
        mode=mode,
        secrets=spec.secrets,
        run_id=uuid.uuid4().hex[:12],
    )


def start_local(spec: ExperimentSpec, driver_spec: DriverSpec) -> RunHandle:
    """Run the driver in a thread of this process on a local Ray."""
    from radas_flows.driver import run_driver

    handle = RunHandle(
        run_id=driver_spec.run_id,
        kind="local",
        experiment_path=experiment_path(spec.user_name, spec.full_name),
        driver_spec=driver_spec,
    )

    def target() -> None:
        try:
            handle.outcome["results"] = run_driver(driver_spec)
        except BaseException as e:  # handed to the monitor, which raises it in the flow
            handle.outcome["error"] = e

    handle.thread = threading.Thread(
        target=target, name=f"radas-driver-{handle.run_id}", daemon=True
    )
    with _ray_env_lock:  # another run's check must see this one
        ensure_local_ray(spec.runtime_env)
        handle.thread.start()
        _local_threads.append(handle.thread)
    return handle


#: Prefect retries of the submit stage when the cluster's API is unreachable for a moment.
SUBMIT_RETRIES = 3
SUBMIT_RETRY_DELAYS_S = [2.0, 8.0, 30.0]


def retry_when_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only connection problems with a cluster's API.

    A bad request, missing credentials or a running job of the same experiment fail at once.
    """
    from radas_flows.clusters.jobs import is_transient_error

    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as e:
            error = e
    seen: set[int] = set()
    while error is not None and id(error) not in seen:  # the error or what caused it
        if is_transient_error(error):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


@task(
    name="experiment_submit",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=SUBMIT_RETRIES,
    retry_delay_seconds=SUBMIT_RETRY_DELAYS_S,
    retry_condition_fn=retry_when_transient,
)
def experiment_submit(
    spec: ExperimentSpec,
    mode: Literal["run", "restore"],
    cpu_per_trial: float,
    gpu_per_cpu: float = 0.0,
    results_root_override: str | None = None,
) -> RunHandle:
    """Start the experiment (a fresh run or a restore) with the given trial resources.

    On a cluster, an unreachable Jobs API is retried by Prefect with growing delays
    (:data:`SUBMIT_RETRY_DELAYS_S`); the job carries this task run's id, so a retry after
    a lost answer follows the job already created instead of submitting a second one.
    """
    logger = get_run_logger()
    driver_spec = driver_spec_for(
        spec, mode, cpu_per_trial=cpu_per_trial, gpu_per_cpu=gpu_per_cpu, root=results_root_override
    )
    if spec.target.is_local:
        handle = start_local(spec, driver_spec)
        logger.info(
            "Started %s of %r on local Ray (pid %d) with %s per trial; results: %s",
            mode,
            spec.experiment_name,
            os.getpid(),
            driver_spec.resources,
            handle.experiment_path,
        )
        return handle
    from prefect.runtime import task_run

    from radas_flows.clusters.submit import submit_cluster_run

    return submit_cluster_run(spec, driver_spec, submit_key=task_run.id or None)
