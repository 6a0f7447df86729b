"""The doubling policy: the next cpu_per_trial, its cap, the GPU share, what the user is told."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from radas_flows.errors import RadasValueError, TrialsFailedError

#: What to do about trials that ran out of memory (see :func:`plan_round`).
RoundAction = Literal["escalate", "cap", "max_rounds"]
#: Ray's smallest resource unit: shares are rounded to this.
GPU_SHARE_PRECISION = 0.0001


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RadasValueError(f"{name} must be a number, got {value!r}; pass for example {name}=1")
    if not math.isfinite(value) or value <= 0:
        raise RadasValueError(
            f"{name} must be a positive finite number, got {value!r}; pass for example {name}=1"
        )
    return float(value)


def next_cpu_per_trial(current: float, cap: float) -> float | None:
    """Double cpu_per_trial for the next escalation round, or None when that exceeds the cap.

    Args:
        current: The cpu_per_trial the trials ran out of memory with.
        cap: The largest cpu_per_trial allowed: the cluster's cpu_per_node (locally, the
            machine's CPU count).

    Returns:
        ``2 * current``, or None when it would exceed ``cap``.

    Raises:
        RadasValueError: When ``current`` or ``cap`` is not a positive finite number.

    Example:
        >>> next_cpu_per_trial(2, cap=8), next_cpu_per_trial(8, cap=8)
        (4.0, None)
    """
    current = _check_positive("cpu_per_trial", current)
    cap = _check_positive("cpu_per_node", cap)
    doubled = current * 2
    return doubled if doubled <= cap * (1 + 1e-9) else None


def format_number(value: float) -> str:
    """Print a CPU count without a trailing ``.0``: 2.0 -> "2", 0.5 -> "0.5".

    Example:
        >>> format_number(4.0), format_number(0.25)
        ('4', '0.25')
    """
    rounded = round(float(value), 4)
    return str(int(rounded)) if rounded.is_integer() else str(rounded)


def gpu_share(cpu_per_trial: float, gpu_per_cpu: float) -> float:
    """GPUs a trial gets for its CPUs: ``cpu_per_trial * gpu_per_cpu``, to Ray's 0.0001 precision.

    Ray counts resources in units of 0.0001 and rejects a finer fraction, so the product is
    rounded to 4 decimals; that also drops float noise (``3 * 0.1`` is ``0.3``, not
    ``0.30000000000000004``), which could otherwise ask for a hair more than a node holds.

    Args:
        cpu_per_trial: CPUs per trial.
        gpu_per_cpu: The cluster's GPUs per CPU (0 for a CPU-only cluster).

    Returns:
        The GPU share, rounded to 4 decimals; 0.0 when ``gpu_per_cpu`` is 0.

    Raises:
        RadasValueError: When ``cpu_per_trial`` is not positive, ``gpu_per_cpu`` is negative,
            or a positive share would round to no GPU at all (below 0.0001).

    Example:
        >>> gpu_share(4, 0.125), gpu_share(3, 0.1), gpu_share(2, 0)
        (0.5, 0.3, 0.0)
    """
    cpu_per_trial = _check_positive("cpu_per_trial", cpu_per_trial)
    if isinstance(gpu_per_cpu, bool) or not isinstance(gpu_per_cpu, int | float):
        raise RadasValueError(f"gpu_per_cpu must be a number, got {gpu_per_cpu!r}; use 0 for none")
    if not math.isfinite(gpu_per_cpu) or gpu_per_cpu < 0:
        raise RadasValueError(
            f"gpu_per_cpu must be zero or a positive finite number, got {gpu_per_cpu!r}; "
            "use 0 for a CPU-only cluster"
        )
    share = round(cpu_per_trial * gpu_per_cpu, 4)
    if share == 0 and gpu_per_cpu > 0:
        raise RadasValueError(
            f"cpu_per_trial * gpu_per_cpu = {format_number(cpu_per_trial)} * {gpu_per_cpu!r} is "
            f"below Ray's smallest GPU share of {GPU_SHARE_PRECISION}; raise gpu_per_cpu in the "
            "cluster registry, or set it to 0 for no GPUs"
        )
    return share


def recommendation_text(n_trials: int, from_cpu: float, to_cpu: float) -> str:
    """The advice shown after an escalation that succeeded.

    Args:
        n_trials: How many trials ran out of memory and later completed.
        from_cpu: The cpu_per_trial they first ran out of memory with.
        to_cpu: The cpu_per_trial they completed with.

    Returns:
        "N trials ran out of memory at cpu_per_trial=X and completed at Y; start future runs
        with cpu_per_trial=Y" ("1 trial ran ..." for one trial).

    Raises:
        RadasValueError: When ``n_trials`` is not a positive integer.

    Example:
        >>> recommendation_text(3, 1, 2)
        '3 trials ran out of memory at cpu_per_trial=1 and completed at 2; start future runs with cpu_per_trial=2'
    """  # noqa: E501
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise RadasValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    noun = "trial" if n_trials == 1 else "trials"
    to_text = format_number(to_cpu)
    return (
        f"{n_trials} {noun} ran out of memory at cpu_per_trial={format_number(from_cpu)} "
        f"and completed at {to_text}; start future runs with cpu_per_trial={to_text}"
    )


def cap_failure_text(
    trial_ids: Iterable[str],
    tried_values: Sequence[float],
    cap: float,
    *,
    max_rounds: int | None = None,
) -> str:
    """The failure message when trials still run out of memory and escalation must stop.

    Args:
        trial_ids: The trials that ran out of memory at the last value tried.
        tried_values: Every cpu_per_trial tried, in order.
        cap: The cpu_per_trial cap (cpu_per_node).
        max_rounds: When given, escalation stopped because this many rounds were run, not
            because doubling would exceed the cap.

    Returns:
        A message naming the trials, the values tried, the cap and what to do.

    Raises:
        RadasValueError: When no trial or no tried value is given.

    Example:
        >>> cap_failure_text(["f_00003"], [1, 2, 4], 4)[:59]
        '1 trial still ran out of memory at cpu_per_trial=4: f_00003'
    """
    ids = list(dict.fromkeys(str(trial_id) for trial_id in trial_ids))
    values = [float(value) for value in tried_values]
    if not ids:
        raise RadasValueError("cap_failure_text needs at least one trial id that ran out of memory")
    if not values:
        raise RadasValueError("cap_failure_text needs the cpu_per_trial values that were tried")
    last = format_number(values[-1])
    tried = ", ".join(format_number(value) for value in values)
    noun = "trial" if len(ids) == 1 else "trials"
    head = f"{len(ids)} {noun} still ran out of memory at cpu_per_trial={last}: {', '.join(ids)}."
    if max_rounds is not None:
        reason = (
            f"Stopped after the maximum of {max_rounds} escalation rounds "
            f"(cpu_per_trial tried: {tried}; cap cpu_per_node={format_number(cap)})."
        )
        fix = "Raise the maximum number of rounds, or start with a larger cpu_per_trial"
    else:
        reason = (
            f"cpu_per_trial tried: {tried}; doubling again to {format_number(values[-1] * 2)} "
            f"would exceed the cap cpu_per_node={format_number(cap)}."
        )
        fix = "Run on a cluster with more CPUs (and memory) per node"
    return (
        f"{head} {reason} {fix}, or reduce the memory each trial needs "
        "(for example a smaller batch size or model)."
    )


class OutOfMemoryCapError(TrialsFailedError):
    """Trials still ran out of memory at the largest cpu_per_trial allowed (or the last round).

    Raised by the ``radas`` flow after everything that completed was kept and analyzed; its
    message is :func:`cap_failure_text`. ``results`` holds what the flow would have returned,
    ``{"df": DataFrame, "tuner": radas_flows.Tuner, "fig": Figure}`` (values ``None`` where
    ``dos`` skipped analysis or no ``plot_fn`` was given).

    Example:
        >>> error = OutOfMemoryCapError("1 trial still ran out of memory ...")
        >>> error.results is None
        True
    """

    results: dict[str, Any] | None = None


def plan_round(
    current_cpu: float, cap: float, rounds_run: int, max_rounds: int
) -> tuple[RoundAction, float | None]:
    """Decide the next escalation round for trials that ran out of memory at ``current_cpu``.

    Args:
        current_cpu: The largest cpu_per_trial the trials ran out of memory with.
        cap: The largest cpu_per_trial allowed (see :func:`next_cpu_per_trial`).
        rounds_run: Rounds this flow run already started.
        max_rounds: The most rounds one flow run may start.

    Returns:
        ``("escalate", doubled cpu_per_trial)``, ``("cap", None)`` when doubling would exceed
        the cap, or ``("max_rounds", None)`` when ``max_rounds`` rounds already ran.

    Example:
        >>> plan_round(1, cap=8, rounds_run=0, max_rounds=3)
        ('escalate', 2.0)
        >>> plan_round(4, cap=4, rounds_run=1, max_rounds=3)
        ('cap', None)
    """
    if rounds_run >= max_rounds:
        return "max_rounds", None
    doubled = next_cpu_per_trial(current_cpu, cap)
    if doubled is None:
        return "cap", None
    return "escalate", doubled
