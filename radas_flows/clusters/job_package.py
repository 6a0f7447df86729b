"""What a cluster job carries: its entry package, runtime_env, stop settings and metadata keys."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radas_flows.clusters.jobs import merge_runtime_env

if TYPE_CHECKING:
    from radas_flows.driver import DriverSpec

__all__ = [
    "FORWARDED_ENV",
    "JOB_STOP_ENV",
    "METADATA_EXPERIMENT_PATH",
    "METADATA_MODE",
    "METADATA_RUN_ID",
    "METADATA_SUBMIT_KEY",
    "build_job_runtime_env",
    "job_settings",
    "write_job_package",
]

JOB_STOP_ENV: dict[str, str] = {
    "RAY_JOB_STOP_SIGNAL": "SIGINT",
    "RAY_JOB_STOP_WAIT_TIME_S": "30",
}
"""Set on every job (unless the user sets them): a stop request interrupts Tune with SIGINT,
which stops the trials and saves the experiment state, and it gets 30 s to do so before
Ray kills it."""

FORWARDED_ENV: tuple[str, ...] = (
    "RADAS_DATA_ROOT",
    "RADAS_COLD_DATA_ROOT",
    "RADAS_S3_BUCKET",
    "RADAS_S3_PREFIX",
    "RADAS_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)
"""Settings of this machine that a job gets as they are set here: data-dir roots and where S3
is. None is a secret; credentials (AWS keys, profiles) are never sent: the job reads them from
the cluster's own environment, or from variables the run names (``{"env": "VAR"}``)."""

METADATA_RUN_ID = "radas_run_id"
METADATA_MODE = "radas_mode"
METADATA_EXPERIMENT_PATH = "radas_experiment_path"
METADATA_SUBMIT_KEY = "radas_submit_key"
"""Job metadata key holding the submitting task run's id: a retry of that task run finds the
job an earlier attempt created (its answer lost on the way back) instead of submitting twice."""

_PACKAGE_INIT = '''\
"""The driver spec of one radas_flows cluster job (generated at submission)."""

SPEC = {spec!r}
'''

_PACKAGE_MAIN = """\
\"\"\"Entrypoint of one radas_flows cluster job: run the shared driver on this job's spec.\"\"\"

from radas_flows.driver import main

from {package} import SPEC

raise SystemExit(main(["--spec", SPEC]))
"""


def write_job_package(driver_spec: DriverSpec, directory: str | Path) -> Path:
    """Write the job's entry package ``radas_job_<run id>`` (the encoded spec) into a directory.

    The package travels to the cluster as a ``py_modules`` entry, so the spec (which may hold
    secrets) never appears in the job's entrypoint command line.

    Returns:
        The package directory; the job runs ``python -u -m <its name>``.
    """
    from radas_flows.driver import encode_spec

    package = f"radas_job_{driver_spec.run_id}"
    path = Path(directory) / package
    path.mkdir(parents=True)
    (path / "__init__.py").write_text(_PACKAGE_INIT.format(spec=encode_spec(driver_spec)))
    (path / "__main__.py").write_text(_PACKAGE_MAIN.format(package=package))
    return path


def job_settings(results_root: str) -> dict[str, str]:
    """What the job's environment says about paths: the cluster's results root, and
    :data:`FORWARDED_ENV` as set here.

    So inside the job ``get_ray_results_dir()`` names the cluster's results root, and
    ``get_data_dir``, ``get_cold_data_dir`` and ``cloud_artifact`` use this machine's settings.

    Example:
        >>> job_settings("/mnt/nfs/ray-results")["RADAS_RESULTS_ROOT"]
        '/mnt/nfs/ray-results'
    """
    settings = {
        name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name, "").strip()
    }
    settings["RADAS_RESULTS_ROOT"] = results_root
    return settings


def build_job_runtime_env(
    user_runtime_env: dict[str, Any],
    working_dir: str,
    *,
    extra_modules: list[str],
    settings: dict[str, str] | None = None,
    excludes: Sequence[str] = (),
) -> dict[str, Any]:
    """The job's runtime_env: the user's, the working dir, our modules, stop and path settings.

    The user's ``env_vars`` win over ``settings`` (see :func:`job_settings`). ``excludes`` (see
    :func:`~radas_flows.clusters.upload.upload_plan`) go before the user's own ``excludes``, so a
    user's ``"!path"`` pattern still sends a file. With
    ``image_uri`` the runtime_env holds only that (the image must contain the code).

    Example:
        >>> env = build_job_runtime_env({}, ".", extra_modules=["/pkg/radas_flows"])
        >>> env["py_modules"], env["env_vars"]["RAY_JOB_STOP_SIGNAL"]
        (['/pkg/radas_flows'], 'SIGINT')
    """
    env = merge_runtime_env(user_runtime_env, working_dir)
    if "image_uri" in env:
        return env
    env["py_modules"] = [*env.get("py_modules", []), *extra_modules]
    if excludes:
        env["excludes"] = [*excludes, *env.get("excludes", [])]
    env["env_vars"] = {**JOB_STOP_ENV, **(settings or {}), **env.get("env_vars", {})}
    return env
