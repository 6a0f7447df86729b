"""Trainables that report what their trial was given: GPUs, packages, environment variables."""

from __future__ import annotations

import os
import time
from typing import Any


def report_gpus(config: dict[str, Any]) -> dict[str, Any]:
    """The GPUs Ray assigned this trial, as the trial sees them."""
    import ray

    time.sleep(config.get("sleep", 0))  # trials of a grid overlap, so each holds its GPUs
    assigned = ray.get_runtime_context().get_assigned_resources()
    return {
        "gpu_ids": ",".join(str(i) for i in sorted(ray.get_gpu_ids())),
        "gpus": float(assigned.get("GPU", 0.0)),
        "cpus": float(assigned.get("CPU", 0.0)),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
    }


def report_package(config: dict[str, Any]) -> dict[str, Any]:
    """Import a package that only the trial's runtime_env installs."""
    import importlib

    module = importlib.import_module(config["module"])
    return {
        "value": module.VALUE,
        "module_file": module.__file__,
        "env_var": os.environ.get("RADAS_TEST_ENV_VAR", "<unset>"),
    }


def report_paths(config: dict[str, Any]) -> dict[str, Any]:
    """Where radas_flows' path helpers and S3 settings point inside the trial."""
    from radas_flows.core import get_ray_results_dir
    from radas_flows.data import get_cold_data_dir, get_data_dir

    user = config["user"]
    return {
        "results_dir": get_ray_results_dir(user),
        "data_dir": get_data_dir(user),
        "cold_data_dir": get_cold_data_dir(user),
        **{
            name.lower(): os.environ.get(name, "<unset>")
            for name in (
                "RADAS_S3_BUCKET",
                "RADAS_S3_PREFIX",
                "RADAS_S3_ENDPOINT_URL",
                "AWS_DEFAULT_REGION",
                "AWS_SECRET_ACCESS_KEY",
            )
        },
    }
