"""Prefect events of an experiment: started, its outcome, and each out-of-memory re-run round.

Every event's resource is the experiment (``radas.experiment.<user>.<full name>``) and its
related resource is the flow run, so an automation can react to "sweep finished", "trials ran
out of memory" or "sweep failed" (see ``docs/events.md``). Payloads hold names, counts and
numbers only: no configs, no parameters, and error texts cleaned of registered secrets.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from radas_flows.secrets import redact_registered

if TYPE_CHECKING:
    from radas_flows.inputs.spec import ExperimentSpec
    from radas_flows.report import RunReport

__all__ = [
    "COMPLETED",
    "FAILED",
    "OOM_RERUN",
    "PARTIAL",
    "STARTED",
    "STOPPED",
    "emit_experiment_event",
    "experiment_resource_id",
]

STARTED = "radas.experiment.started"
COMPLETED = "radas.experiment.completed"
PARTIAL = "radas.experiment.partial"  # some trials errored (or the out-of-memory cap was hit)
FAILED = "radas.experiment.failed"
STOPPED = "radas.experiment.stopped"
OOM_RERUN = "radas.experiment.oom-rerun"

_MAX_ERROR = 2000
log = logging.getLogger(__name__)


def experiment_resource_id(user_name: str, full_name: str) -> str:
    """The Prefect resource id of an experiment.

    Example:
        >>> experiment_resource_id("alice", "proj_lr_sweep")
        'radas.experiment.alice.proj_lr_sweep'
    """
    return f"radas.experiment.{user_name}.{full_name}"


def _related() -> list[dict[str, str]]:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return []
    run = context.flow_run
    return [
        {
            "prefect.resource.id": f"prefect.flow-run.{run.id}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": str(run.name),
        }
    ]


def emit_experiment_event(
    event: str, spec: ExperimentSpec, payload: dict[str, Any] | None = None
) -> None:
    """Emit one event about ``spec``'s experiment; a failure to emit is logged, not raised.

    Example:
        >>> emit_experiment_event(STARTED, spec, {"run_choice": "run"})  # doctest: +SKIP
    """
    from prefect.events import emit_event

    resource = {
        "prefect.resource.id": experiment_resource_id(spec.user_name, spec.full_name),
        "prefect.resource.name": spec.experiment_name,
        "radas.user": spec.user_name,
        "radas.run-with": str(spec.target),
    }
    try:
        emit_event(event, resource=resource, related=_related(), payload=payload or {})
    except Exception as e:  # an event too large, or no events client: the run goes on
        log.warning("Could not emit the event %s: %s: %s", event, type(e).__name__, e)


def started_payload(spec: ExperimentSpec) -> dict[str, Any]:
    """What the ``started`` event says: how the experiment is run."""
    return {
        "run_choice": spec.run_choice,
        "dos": list(spec.dos),
        "cpu_per_trial": spec.cpu_per_trial,
    }


def outcome_event(report: RunReport) -> tuple[str, dict[str, Any]]:
    """The outcome event of a run report (by its state) and its payload."""
    name = {"completed": COMPLETED, "partial": PARTIAL, "stopped": STOPPED}.get(
        report.state, FAILED
    )
    payload: dict[str, Any] = {
        "state": report.state,
        "trials": dict(report.counts),
        "duration_s": round(report.duration_s or 0.0, 3),
        "results_path": report.results_path,
    }
    best = report.best or {}
    value = best.get("value")
    if best.get("metric") and isinstance(value, int | float) and not isinstance(value, bool):
        payload["best"] = {"metric": best["metric"], "value": value}
    if report.error:
        payload["error"] = redact_registered(report.error)[:_MAX_ERROR]
    return name, payload
