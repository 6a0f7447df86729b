"""One run of an experiment at a time: a Prefect concurrency limit per user and experiment."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from typing import Any
from uuid import UUID

from radas_flows.errors import RadasError, RadasValueError

#: Environment variable: how long a run waits for another run of its experiment to end.
LOCK_WAIT_ENV = "RADAS_EXPERIMENT_LOCK_WAIT_S"

#: Seconds a run's hold on its experiment lasts without renewal (a crashed run frees it then).
LOCK_LEASE_S = 60.0


class ExperimentBusyError(RadasError):
    """Another run of the same experiment (same user, same experiment name) is in progress."""


def experiment_lock_name(user_name: str, full_name: str, experiment_name: str) -> str:
    """The name of the concurrency limit that guards one experiment.

    ``full_name`` (the experiment name prefixed with the working directory) identifies the
    experiment; the readable ``experiment_name`` goes into the name for the UI's Concurrency
    page.

    Example:
        >>> experiment_lock_name("yuhang", "_home_yuhang_proj_lr_sweep", "lr sweep")
        'radas-yuhang-lr-sweep-baf3318e66'
    """
    from radas_flows._artifacts import experiment_slug, short_digest

    slug = experiment_slug(user_name, experiment_name, 80)
    return f"radas-{slug}-{short_digest(f'{user_name}/{full_name}', 10)}"


def lock_wait_seconds(environ: Mapping[str, str] | None = None) -> float | None:
    """How long a second run of an experiment waits for the first (``LOCK_WAIT_ENV``).

    Unset or ``0``: fail at once. A positive number: wait up to that many seconds.
    ``inf``: wait as long as it takes (returns ``None``, Prefect's "no timeout").

    Raises:
        RadasValueError: The variable is not a number >= 0 or ``inf``.

    Example:
        >>> lock_wait_seconds({"RADAS_EXPERIMENT_LOCK_WAIT_S": "90"})
        90.0
        >>> lock_wait_seconds({}) == 0
        True
    """
    raw = (environ if environ is not None else os.environ).get(LOCK_WAIT_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError as e:
        raise RadasValueError(
            f"{LOCK_WAIT_ENV}={raw!r} is not a number: use 0 (fail at once), a number of "
            "seconds to wait, or inf (wait until the other run ends)."
        ) from e
    if math.isnan(value) or value < 0:
        raise RadasValueError(
            f"{LOCK_WAIT_ENV}={raw!r} must be >= 0: use 0 (fail at once), a number of "
            "seconds to wait, or inf (wait until the other run ends)."
        )
    return None if math.isinf(value) else value


def busy_message(
    experiment_name: str, user_name: str, lock: str, holders: list[str], waited: float | None
) -> str:
    """The error a second run of an experiment reports.

    Example:
        >>> text = busy_message("lr", "u", "radas-u-lr-1", ["'lr' (id 1)"], 0.0)
        >>> "is already running in flow run 'lr' (id 1):" in text
        True
    """
    where = f" in flow run {', '.join(holders)}" if holders else ""
    waited_text = f" (waited {waited:g} s)" if waited else ""
    return (
        f"Experiment {experiment_name!r} of user {user_name!r} is already running{where}"
        f"{waited_text}: two runs of one experiment would overwrite each other's results. "
        "Wait for it to finish or cancel it, or use another experiment_name. "
        f"To wait instead of failing, set {LOCK_WAIT_ENV} (seconds, or inf) in the "
        f"environment of the run. Prefect concurrency limit: {lock!r}; a crashed run "
        f"releases it within {LOCK_LEASE_S:g} s."
    )


def _ensure_limit(name: str) -> int:
    """Create the experiment's limit (one slot) if it is missing; return its active slots."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return int(client.read_global_concurrency_limit_by_name(name).active_slots)
        except ObjectNotFound:
            pass
        with suppress(ObjectAlreadyExists):  # another run created it first
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        return 0


def _running_holders(tags: list[str], exclude: UUID | None) -> list[str]:
    """Running flow runs carrying ``tags``, for the error message (best effort)."""
    if not tags:
        return []
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType

        flow_filter = FlowRunFilter(
            tags=FlowRunFilterTags(all_=tags),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
        )
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=flow_filter, limit=5)
        return [f"{run.name!r} (id {run.id})" for run in runs if run.id != exclude]
    except Exception:
        return []


def _is_locked(error: BaseException) -> bool:
    cause = error.__cause__
    response = getattr(cause, "response", None)
    return getattr(response, "status_code", None) == 423


@contextmanager
def experiment_lock(
    *,
    user_name: str,
    full_name: str,
    experiment_name: str,
    tags: list[str],
    flow_run_id: UUID | None = None,
    wait_s: float | None = 0.0,
) -> Iterator[str]:
    """Hold the experiment's concurrency slot (limit 1) for the duration of the block.

    The limit is created on first use. A run that cannot get the slot within ``wait_s``
    seconds (``0``: at once; ``None``: no limit) raises ``ExperimentBusyError`` naming the
    running flow run. The slot is a lease renewed in the background, so a run that dies
    without releasing it frees it after ``LOCK_LEASE_S`` seconds.

    Args:
        user_name: The experiment's user.
        full_name: The experiment's full (directory-prefixed) name.
        experiment_name: The name as given, for messages.
        tags: The flow-run tags of the experiment, used to name the run holding the slot.
        flow_run_id: This run, recorded as the holder of the slot.
        wait_s: How long to wait for the slot.

    Yields:
        The concurrency limit's name.

    Raises:
        ExperimentBusyError: The slot is held by another run.

    Example:
        >>> with experiment_lock(user_name="u", full_name="_p_x", experiment_name="x",
        ...                      tags=["user:u", "experiment:x"]):  # doctest: +SKIP
        ...     pass
    """
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency._asyncio import (
        AcquireConcurrencySlotTimeoutError,
        ConcurrencySlotAcquisitionError,
    )
    from prefect.concurrency.sync import concurrency

    name = experiment_lock_name(user_name, full_name, experiment_name)
    if _ensure_limit(name) and wait_s == 0:  # held: say so without a refused request
        holders = _running_holders(tags, flow_run_id)
        raise ExperimentBusyError(busy_message(experiment_name, user_name, name, holders, 0))
    holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run_id) if flow_run_id else None
    options: dict[str, Any] = {"max_retries": 0} if wait_s == 0 else {"timeout_seconds": wait_s}
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    lease_duration=LOCK_LEASE_S,
                    strict=True,
                    holder=holder,
                    raise_on_lease_renewal_failure=False,
                    **options,
                )
            )
        except AcquireConcurrencySlotTimeoutError as e:
            holders = _running_holders(tags, flow_run_id)
            raise ExperimentBusyError(
                busy_message(experiment_name, user_name, name, holders, wait_s)
            ) from e
        except ConcurrencySlotAcquisitionError as e:
            if not _is_locked(e):
                raise
            holders = _running_holders(tags, flow_run_id)
            raise ExperimentBusyError(
                busy_message(experiment_name, user_name, name, holders, wait_s)
            ) from e
        yield name
