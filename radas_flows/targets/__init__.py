"""Run targets: where an experiment runs, chosen once from its spec (see :mod:`.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from radas_flows.targets.base import (
    ClusterUnavailableError,
    DriverFailedError,
    Progress,
    RunHandle,
    Target,
    TargetCheck,
)

if TYPE_CHECKING:
    from radas_flows.inputs.rules import RunTarget

__all__ = [
    "ClusterUnavailableError",
    "DriverFailedError",
    "Progress",
    "RunHandle",
    "Target",
    "TargetCheck",
    "target_for",
]


def target_for(run_target: RunTarget) -> Target:
    """The target of a parsed ``run_with`` (``"local"``, ``"cluster:<name>"``, ``"auto"``)."""
    if run_target.kind == "auto":
        from radas_flows.targets.auto import AutoTarget

        return AutoTarget(run_target.candidates)
    if run_target.cluster is None:
        from radas_flows.targets.local import LocalTarget

        return LocalTarget()
    from radas_flows.targets.cluster import ClusterTarget

    return ClusterTarget(run_target.cluster)
