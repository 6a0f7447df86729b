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
    from radas_flows.inputs.spec import ExperimentSpec

__all__ = [
    "ClusterUnavailableError",
    "DriverFailedError",
    "Progress",
    "RunHandle",
    "Target",
    "TargetCheck",
    "target_for",
]


def target_for(spec: ExperimentSpec) -> Target:
    """The target that runs ``spec``: its ``run_with`` (``"local"``, ``"cluster:<name>"``)."""
    if spec.target.kind == "local":
        from radas_flows.targets.local import LocalTarget

        return LocalTarget()
    from radas_flows.targets.cluster import ClusterTarget

    assert spec.target.cluster is not None  # parse_run_with sets it for every cluster target
    return ClusterTarget(spec.target.cluster)
