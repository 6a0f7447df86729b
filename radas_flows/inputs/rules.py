"""Input rules every entry point shares: run_with, cluster names, CPU caps, plot formats, users."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from radas_flows.data import validate_user_name
from radas_flows.errors import RadasValueError

__all__ = [
    "CLUSTER_NAME_PATTERN",
    "LOCAL_CPU_CAP",
    "RUN_WITH_PATTERN",
    "ParameterError",
    "RunTarget",
    "check_cpu_per_trial",
    "check_user_name",
    "current_user_name",
    "is_cluster_name",
    "parse_run_with",
    "plot_format_key",
    "supported_plot_formats",
]


class ParameterError(RadasValueError):
    """An experiment parameter is malformed; the message names the field and the fix."""


# ---------------------------------------------------------------------------------------------
# run_with and cluster names
# ---------------------------------------------------------------------------------------------

#: A cluster's name, in the registry and in ``run_with="cluster:<name>"``.
CLUSTER_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
#: What ``run_with`` accepts, as the UI and the server check it.
RUN_WITH_PATTERN = (
    rf"^(local|cluster:{CLUSTER_NAME_PATTERN}|auto"
    rf"|auto:{CLUSTER_NAME_PATTERN}(,{CLUSTER_NAME_PATTERN})*)$"
)

_CLUSTER_NAME_RE = re.compile(CLUSTER_NAME_PATTERN)


def is_cluster_name(name: object) -> bool:
    """True when ``name`` may name a cluster (letters, digits, ``.``, ``_``, ``-``).

    Example:
        >>> is_cluster_name("atol-gpu-5090"), is_cluster_name("-x")
        (True, False)
    """
    return isinstance(name, str) and _CLUSTER_NAME_RE.fullmatch(name) is not None


@dataclass(frozen=True)
class RunTarget:
    """Where an experiment runs: this machine, a named Ray cluster, or chosen (``auto``).

    ``candidates`` of ``auto``: the names it may choose from (empty: every registered cluster).
    """

    kind: Literal["local", "cluster", "auto"]
    cluster: str | None = None
    candidates: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind == "auto":
            return "auto" + (f":{','.join(self.candidates)}" if self.candidates else "")
        return f"cluster:{self.cluster}" if self.cluster else self.kind


def parse_run_with(run_with: object) -> RunTarget:
    """Parse ``run_with``: ``"local"``, ``"cluster:<name>"``, ``"auto"`` or ``"auto:<a>,<b>"``.

    ``auto`` chooses among the registry's clusters when the run is checked; ``auto:<a>,<b>``
    only among those named (``local`` is a candidate only when named).

    Args:
        run_with: The value given by the user.

    Returns:
        The run target.

    Raises:
        RadasValueError: ``run_with`` is neither form.

    Example:
        >>> parse_run_with("cluster:atol-gpu-5090")
        RunTarget(kind='cluster', cluster='atol-gpu-5090', candidates=())
        >>> str(parse_run_with("auto:gpu-a,local"))
        'auto:gpu-a,local'
    """
    if run_with == "local":
        return RunTarget("local")
    if run_with == "auto":
        return RunTarget("auto")
    if isinstance(run_with, str) and run_with.startswith("auto:"):
        names = tuple(run_with[len("auto:") :].split(","))
        bad = [n for n in names if not is_cluster_name(n)]
        if bad or len(set(names)) != len(names):
            raise RadasValueError(
                f"run_with={run_with!r} is not valid: after 'auto:' list cluster names of the "
                "registry (or 'local') separated by commas, each once, for example "
                "'auto:gpu-a,gpu-b'" + (f"; {bad!r} are not cluster names." if bad else ".")
            )
        return RunTarget("auto", candidates=names)
    if isinstance(run_with, str) and run_with.startswith("cluster:"):
        name = run_with[len("cluster:") :]
        if is_cluster_name(name):
            return RunTarget("cluster", name)
    raise RadasValueError(
        f"run_with={run_with!r} is not valid: use 'local' or 'cluster:<name>' with a cluster "
        "name from the registry (see `radas clusters` or get_cluster_availability()), or "
        "'auto' (the cluster that fits best now) or 'auto:<name>,<name>' (chosen among those)."
    )


# ---------------------------------------------------------------------------------------------
# CPUs per trial
# ---------------------------------------------------------------------------------------------

#: How errors name the CPU cap of a local run.
LOCAL_CPU_CAP = "the local CPUs"


def check_cpu_per_trial(cpu_per_trial: object, cap: float | None, cap_name: str) -> float:
    """Validate ``cpu_per_trial``: a positive number no larger than ``cap``.

    Args:
        cpu_per_trial: The value given by the user.
        cap: The most CPUs one trial may ask for, or ``None`` when not known yet.
        cap_name: How the message names the cap (the run target says it).

    Returns:
        ``cpu_per_trial`` as a float.

    Raises:
        RadasValueError: Not a number, not positive, or above the cap.

    Example:
        >>> check_cpu_per_trial(2, 8.0, LOCAL_CPU_CAP)
        2.0
    """
    if isinstance(cpu_per_trial, bool) or not isinstance(cpu_per_trial, int | float):
        raise RadasValueError(
            f"cpu_per_trial={cpu_per_trial!r} is not a number: give a positive number such as 1."
        )
    if not cpu_per_trial > 0:
        raise RadasValueError(
            f"cpu_per_trial={cpu_per_trial!r} must be greater than 0 (for example 1, 2 or 0.5)."
        )
    if cap is not None and cpu_per_trial > cap:
        raise RadasValueError(
            f"cpu_per_trial={cpu_per_trial!r} is more than {cap_name} ({cap:g}): a trial could "
            f"never be scheduled. Use cpu_per_trial <= {cap:g}."
        )
    return float(cpu_per_trial)


# ---------------------------------------------------------------------------------------------
# Plot formats
# ---------------------------------------------------------------------------------------------


def supported_plot_formats() -> dict[str, str]:
    """Return the file formats matplotlib can save figures in, by extension.

    Example:
        >>> "png" in supported_plot_formats()
        True
    """
    from matplotlib.backend_bases import FigureCanvasBase

    formats: dict[str, str] = FigureCanvasBase.get_supported_filetypes()
    return dict(formats)


def plot_format_key(plot_format: object) -> str | None:
    """Return ``plot_format`` as matplotlib names it (``".SVG"`` -> ``"svg"``), None if unsupported.

    Example:
        >>> plot_format_key(".PNG"), plot_format_key("docx")
        ('png', None)
    """
    if not isinstance(plot_format, str):
        return None
    key = plot_format.strip().lower().lstrip(".")
    return key if key in supported_plot_formats() else None


# ---------------------------------------------------------------------------------------------
# User names
# ---------------------------------------------------------------------------------------------


def check_user_name(user_name: object) -> str:
    """Return ``user_name`` when it is safe as one path component, else raise RadasValueError.

    Example:
        >>> check_user_name("yuhang")
        'yuhang'
    """
    try:
        return validate_user_name(user_name)
    except (TypeError, ValueError) as e:
        raise RadasValueError(str(e)) from e


def current_user_name() -> str:
    """Return the login name of the user running this process, as radas uses it by default.

    Returns:
        The login name (``getpass.getuser()``: ``LOGNAME``, ``USER``, ... then the password
        database).

    Raises:
        RuntimeError: No user name can be determined (e.g. a container without a passwd entry).

    Example:
        >>> isinstance(current_user_name(), str)
        True
    """
    import getpass

    try:
        name = getpass.getuser()
    except (KeyError, OSError) as e:
        raise RuntimeError(
            "Cannot determine the current user name; set the USER environment variable or pass "
            "user_name='<your name>' explicitly."
        ) from e
    if not name:
        raise RuntimeError(
            "The current user name is empty; set USER or pass user_name='<your name>' explicitly."
        )
    return name
