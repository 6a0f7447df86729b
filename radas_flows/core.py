"""Where experiment results live: the results root, per user and experiment."""

from __future__ import annotations

import math
import os
from pathlib import Path

from radas_flows.errors import RadasValueError
from radas_flows.inputs.rules import check_user_name, current_user_name, parse_run_with
from radas_flows.storage import is_uri, normalize_root

RESULTS_ROOT_ENV = "RADAS_RESULTS_ROOT"
LOCAL_CPUS_ENV = "RADAS_LOCAL_NUM_CPUS"
LOCAL_GPUS_ENV = "RADAS_LOCAL_NUM_GPUS"
LOCAL_GPU_PER_CPU_ENV = "RADAS_LOCAL_GPU_PER_CPU"


def results_root() -> str:
    """The results root: ``$RADAS_RESULTS_ROOT``, else ``~/radas-results``.

    Raises:
        RadasValueError: The variable holds a relative path or a control character.
    """
    raw = os.environ.get(RESULTS_ROOT_ENV, "").strip()
    if not raw:
        return normalize_root(str(Path.home() / "radas-results"))
    bad = next((c for c in raw if not c.isprintable()), None)
    if bad is not None:
        raise RadasValueError(
            f"{RESULTS_ROOT_ENV}={raw!r} contains the control character {bad!r}: set it to an "
            "absolute folder such as /mnt/shared/radas-results, or a URI such as s3://bucket/runs."
        )
    if not is_uri(raw) and not Path(raw).expanduser().is_absolute():
        raise RadasValueError(
            f"{RESULTS_ROOT_ENV}={raw!r} is a relative path: it would name another folder from "
            "each working directory. Set it to an absolute folder such as "
            "/mnt/shared/radas-results (or ~/radas-results), or a URI such as s3://bucket/runs."
        )
    return normalize_root(raw)


def get_ray_results_dir(user_name: str | None = None, run_with: str | None = None) -> str:
    """Return the folder where this user's experiment results are stored.

    Args:
        user_name: whose folder; defaults to the current login name.
        run_with: where the experiments run, as ``run_experiment`` takes it: with
            ``"cluster:<name>"`` the folder is under that cluster's ``results_root`` (from the
            registry; the cluster is not contacted), otherwise under this machine's root
            (``RADAS_RESULTS_ROOT``, which a cluster job sets to its cluster's root).

    Returns:
        ``<results root>/<user_name>/`` (with a trailing slash, as radas returns it).

    Raises:
        RadasValueError: ``run_with`` is malformed, or names no cluster of the registry.

    Example:
        >>> import os
        >>> os.environ["RADAS_RESULTS_ROOT"] = "/tmp/radas-doc"
        >>> get_ray_results_dir("yuhang")
        '/tmp/radas-doc/yuhang/'
    """
    root = None
    if run_with is not None:
        cluster = parse_run_with(run_with).cluster
        root = cluster_results_root(cluster) if cluster else None
    user = user_name if user_name is not None else current_user_name()
    return user_results_path(user, root) + "/"


def cluster_results_root(name: str) -> str:
    """A registry cluster's ``results_root`` (this machine's root when it names none).

    Raises:
        RegistryError: No registry, or it names no cluster ``name`` (a RadasValueError).
    """
    from radas_flows.clusters.registry import get_cluster

    cluster = get_cluster(name)
    return (cluster.results_root or results_root()).rstrip("/")


def user_results_path(user_name: str, root: str | None = None) -> str:
    """The folder (or URI) of one user's experiments: ``<root>/<user>``."""
    return f"{(root or results_root()).rstrip('/')}/{check_user_name(user_name)}"


def experiment_path(user_name: str, full_experiment_name: str, root: str | None = None) -> str:
    """The folder (or URI) of one experiment's Tune results: ``<root>/<user>/<full name>``."""
    return f"{user_results_path(user_name, root)}/{full_experiment_name}"


def local_cpus() -> int:
    """CPUs a local run may use: ``$RADAS_LOCAL_NUM_CPUS``, else every CPU of this machine."""
    value = os.environ.get(LOCAL_CPUS_ENV)
    if value:
        try:
            n = int(value)
        except ValueError as e:
            raise RadasValueError(
                f"{LOCAL_CPUS_ENV}={value!r} is not an integer; set it to a whole number of CPUs."
            ) from e
        if n < 1:
            raise RadasValueError(f"{LOCAL_CPUS_ENV}={value!r} must be at least 1.")
        return n
    return os.cpu_count() or 1


def local_gpus() -> int:
    """GPUs a local run may use: ``$RADAS_LOCAL_NUM_GPUS``, else those visible to this machine.

    Visible GPUs come from ``CUDA_VISIBLE_DEVICES`` or ``nvidia-smi``. CUDA stops reading
    ``CUDA_VISIBLE_DEVICES`` at its first invalid entry (empty, negative or ``NoDevFiles``),
    so ``"1,-1,2"`` exposes one GPU.

    Example:
        >>> import os
        >>> os.environ["CUDA_VISIBLE_DEVICES"] = "0,1,-1,2"
        >>> local_gpus()
        2
        >>> del os.environ["CUDA_VISIBLE_DEVICES"]  # later runs of this process see the machine
    """
    value = os.environ.get(LOCAL_GPUS_ENV)
    if value:
        try:
            n = int(value)
        except ValueError as e:
            raise RadasValueError(
                f"{LOCAL_GPUS_ENV}={value!r} is not an integer; set it to a whole number of GPUs."
            ) from e
        if n < 0:
            raise RadasValueError(f"{LOCAL_GPUS_ENV}={value!r} must be 0 or more.")
        return n
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = 0
        for item in visible.split(","):
            item = item.strip()
            if not item or item.startswith("-") or item == "NoDevFiles":
                break
            count += 1
        return count
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(
            ["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len([line for line in out.stdout.splitlines() if line.startswith("GPU ")])


def local_gpu_per_cpu(cpus: int | None = None, gpus: int | None = None) -> float:
    """GPUs a local trial gets per CPU it asks for: ``$RADAS_LOCAL_GPU_PER_CPU``, else GPUs/CPUs.

    The same rule as a cluster's ``gpu_per_cpu``: a trial gets ``cpu_per_trial * gpu_per_cpu``
    GPUs, so trials that fill the machine's CPUs also share out its GPUs.

    Args:
        cpus: The local CPUs (default :func:`local_cpus`).
        gpus: The local GPUs (default :func:`local_gpus`).

    Raises:
        RadasValueError: ``RADAS_LOCAL_GPU_PER_CPU`` is not a number of 0 or more, or asks
            for GPUs on a machine without any.

    Example:
        >>> local_gpu_per_cpu(cpus=16, gpus=2)
        0.125
    """
    cpus = local_cpus() if cpus is None else cpus
    gpus = local_gpus() if gpus is None else gpus
    value = os.environ.get(LOCAL_GPU_PER_CPU_ENV, "").strip()
    if not value:
        return gpus / cpus if gpus else 0.0
    try:
        ratio = float(value)
    except ValueError as e:
        raise RadasValueError(
            f"{LOCAL_GPU_PER_CPU_ENV}={value!r} is not a number; set it to the GPUs a trial "
            f"gets per CPU (e.g. 0.5), or unset it to use GPUs/CPUs ({gpus}/{cpus})."
        ) from e
    if not math.isfinite(ratio) or ratio < 0:
        raise RadasValueError(f"{LOCAL_GPU_PER_CPU_ENV}={value!r} must be a number of 0 or more.")
    if ratio > 0 and not gpus:
        raise RadasValueError(
            f"{LOCAL_GPU_PER_CPU_ENV}={value!r} gives trials GPUs, but this machine has none "
            f"(CUDA_VISIBLE_DEVICES, nvidia-smi or {LOCAL_GPUS_ENV}); unset it or set it to 0."
        )
    return ratio
