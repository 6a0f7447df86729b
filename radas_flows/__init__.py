"""radas_flows: Ray Tune hyperparameter sweeps as Prefect flows, with the radas API."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module; imported on first use so `import radas_flows` stays cheap
# (Prefect imports every registered collection when a worker starts).
_LAZY: dict[str, str] = {
    "run_experiment": "radas_flows.experiment",
    "run_experiment_sync": "radas_flows.experiment",
    "Tuner": "radas_flows.tuner",
    "RayCluster": "radas_flows.clusters.blocks",
    "radas": "radas_flows.flows",
    "get_ray_results_dir": "radas_flows.core",
    "get_client": "radas_flows.management",
    "get_data_dir": "radas_flows.data",
    "get_cold_data_dir": "radas_flows.data",
    "explode": "radas_flows.tidy",
    "explode_tensor": "radas_flows.tidy",
    "explode_dict_of_tensors": "radas_flows.tidy",
}

#: Submodules reachable as attributes, as in radas (``radas.cloud_artifact``, ``radas.utils``,
#: ``radas.clusters.addresses``...): each is imported on first use.
_SUBMODULES: tuple[str, ...] = (
    "accounting",
    "analysis",
    "artifact_formats",
    "aws_blocks",
    "cli",
    "cloud_artifact",
    "clusters",
    "concurrency",
    "core",
    "data",
    "driver",
    "email",
    "errors",
    "escalation",
    "events",
    "experiment",
    "flows",
    "inputs",
    "lock_holder",
    "management",
    "oom",
    "origin",
    "pipeline",
    "report",
    "rescue",
    "rswanlab",
    "run_choice",
    "rwandb",
    "secret_plan",
    "secret_refs",
    "secrets",
    "smtp_settings",
    "stages",
    "storage",
    "targets",
    "tidy",
    "tuner",
    "utils",
)

__all__ = [*sorted(_LAZY), "__version__"]

if TYPE_CHECKING:
    from radas_flows.clusters.blocks import RayCluster as RayCluster
    from radas_flows.core import get_ray_results_dir as get_ray_results_dir
    from radas_flows.data import get_cold_data_dir as get_cold_data_dir
    from radas_flows.data import get_data_dir as get_data_dir
    from radas_flows.experiment import run_experiment as run_experiment
    from radas_flows.experiment import run_experiment_sync as run_experiment_sync
    from radas_flows.flows import radas as radas
    from radas_flows.management import get_client as get_client
    from radas_flows.tidy import explode as explode
    from radas_flows.tidy import explode_dict_of_tensors as explode_dict_of_tensors
    from radas_flows.tidy import explode_tensor as explode_tensor
    from radas_flows.tuner import Tuner as Tuner


def __getattr__(name: str) -> Any:
    """Load a public name or a submodule on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'radas_flows' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
