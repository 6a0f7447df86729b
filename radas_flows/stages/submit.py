"""Stage 2, submit: start the driver on the run target (or attach to its running job)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows._redaction import scrub_errors
from radas_flows.core import user_results_path
from radas_flows.driver import DriverSpec
from radas_flows.errors import causes
from radas_flows.inputs.spec import ExperimentSpec
from radas_flows.oom.policy import gpu_share
from radas_flows.origin import origin_record
from radas_flows.targets import RunHandle, Target, TargetCheck, target_for

__all__ = [
    "SUBMIT_RETRIES",
    "SUBMIT_RETRY_DELAYS_S",
    "driver_spec_for",
    "experiment_attach",
    "experiment_submit",
    "retry_when_transient",
    "submit_run",
]

#: Prefect retries of the submit stage when the cluster's API is unreachable for a moment.
SUBMIT_RETRIES = 3
SUBMIT_RETRY_DELAYS_S = [2.0, 8.0, 30.0]


def driver_spec_for(
    spec: ExperimentSpec,
    mode: Literal["run", "restore"],
    *,
    cpu_per_trial: float,
    check: TargetCheck,
    target: Target | None = None,
) -> DriverSpec:
    """The driver's view of an experiment spec, with its trial resources on ``check``'s target."""
    resources: dict[str, float] = {"cpu": cpu_per_trial}
    gpus = gpu_share(cpu_per_trial, check.gpu_per_cpu)
    if gpus:
        resources["gpu"] = gpus
    target = target or target_for(spec.target)
    return DriverSpec(
        trainable=target.driver_trainable(spec),
        param_space=spec.param_space,
        tuner_init_kwargs=spec.tuner_init_kwargs,
        storage_path=user_results_path(spec.user_name, check.results_root),
        name=spec.full_name,
        resources=resources,
        mode=mode,
        secrets=spec.secrets,
        run_id=uuid.uuid4().hex[:12],
        origin=origin_record(spec.cwd, spec.experiment_name),
        placement=target.name,
    )


def submit_run(
    spec: ExperimentSpec,
    mode: Literal["run", "restore"],
    check: TargetCheck,
    cpu_per_trial: float,
) -> RunHandle:
    """Start ``spec`` on its target with ``cpu_per_trial``; the task run's id keys the job."""
    from prefect.runtime import task_run

    target = target_for(spec.target)
    driver_spec = driver_spec_for(
        spec, mode, cpu_per_trial=cpu_per_trial, check=check, target=target
    )
    return target.submit(spec, driver_spec, submit_key=task_run.id or None)


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
    return error is not None and any(is_transient_error(e) for e in causes(error))


@task(
    name="experiment_submit",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=SUBMIT_RETRIES,
    retry_delay_seconds=SUBMIT_RETRY_DELAYS_S,
    retry_condition_fn=retry_when_transient,
)
@scrub_errors
def experiment_submit(
    spec: ExperimentSpec, mode: Literal["run", "restore"], check: TargetCheck
) -> RunHandle:
    """Start the experiment (a fresh run or a restore) with the spec's ``cpu_per_trial``.

    On a cluster, an unreachable Jobs API is retried by Prefect with growing delays
    (:data:`SUBMIT_RETRY_DELAYS_S`); the job carries this task run's id, so a retry after
    a lost answer follows the job already created instead of submitting a second one.
    """
    return submit_run(spec, mode, check, spec.cpu_per_trial)


@task(name="experiment_attach", cache_policy=NO_CACHE, persist_result=False)
@scrub_errors
def experiment_attach(spec: ExperimentSpec, check: TargetCheck) -> RunHandle | None:
    """Find the running job for ``run_choice="attach"`` / ``"stop_attach"``, stopping it for the latter.

    Returns None when no job runs and stored results exist (the flow analyzes those).
    """  # noqa: E501
    return target_for(spec.target).attach(spec, check, get_run_logger())
