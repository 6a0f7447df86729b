"""Parameters a deployment run inherited from a deployment set up for another trainable.

A deployment's parameters fill in, key by key, whatever a run leaves out (Prefect's rule). The
``radas/sweep`` deployment's defaults are the two-moons sweep, so a run that names another
trainable but no ``tuner`` or ``plot`` gets the two-moons metric, scheduler and figure. Each such
parameter is named in a warning, with the fix.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TRAINABLE_SPECIFIC", "deployment_notes", "inherited_notes"]

#: The parameters that belong to one trainable (its metrics, its search space, its figure).
TRAINABLE_SPECIFIC = ("param_space", "tuner", "plot")


def inherited_notes(given: dict[str, Any], defaults: dict[str, Any], deployment: str) -> list[str]:
    """Warnings for trainable-specific parameters equal to a deployment's defaults set for
    another trainable (``given``: the run's parameters as the flow run received them).

    Example:
        >>> defaults = {"trainable": "demo:f", "tuner": {"metric": "accuracy"}}
        >>> given = {"trainable": "mine:g", "tuner": {"metric": "accuracy"}}
        >>> print(inherited_notes(given, defaults, "radas/sweep")[0])  # doctest: +ELLIPSIS
        tuner is the deployment 'radas/sweep''s default, set for its trainable 'demo:f', ...
    """
    trainable = given.get("trainable")
    if "trainable" not in defaults or trainable == defaults["trainable"]:
        return []
    fixes = {"param_space": "the space of your trainable", "tuner": "{}", "plot": "null"}
    return [
        f"{key} is the deployment {deployment!r}'s default, set for its trainable "
        f"{defaults['trainable']!r}, not for trainable={trainable!r}: give the run its own "
        f"{key} (for the flow's default, --param {key}={fixes[key]})."
        for key in TRAINABLE_SPECIFIC
        if key in defaults and key in given and given[key] == defaults[key]
    ]


def deployment_notes() -> list[str]:
    """:func:`inherited_notes` for the current flow run, if a deployment started it."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        run = ctx.flow_run if ctx is not None else None
        if run is None or run.deployment_id is None:
            return []
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment(run.deployment_id)
        name = f"{ctx.flow.name}/{deployment.name}" if ctx and ctx.flow else deployment.name
        return inherited_notes(dict(run.parameters or {}), dict(deployment.parameters), name)
    except Exception:  # a note only: never in the way of the run
        return []
