"""One run of an experiment at a time: a Prefect concurrency limit per user and experiment."""

from __future__ import annotations

import contextvars
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

from radas_flows._artifacts import run_logger
from radas_flows.errors import RadasError, RadasValueError
from radas_flows.lock_holder import (
    HOLDER_STALE_S,
    clear_expired,
    delete_record,
    describe,
    gone_reason,
    mark_crashed,
    read_record,
    this_holder,
    write_record,
)

#: Environment variable: how long a run waits for another run of its experiment to end.
LOCK_WAIT_ENV = "RADAS_EXPERIMENT_LOCK_WAIT_S"

#: Seconds a run's Prefect lease on its experiment's slot lasts without renewal.
LOCK_LEASE_S = 60.0

#: Seconds after which a takeover marker left by a run that died taking over is removed.
TAKEOVER_STALE_S = 30.0


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
        f"environment of the run. Prefect concurrency limit: {lock!r}. A holder that is gone "
        "is released by the next run: at once when its process on this machine has exited or "
        f"its flow run has ended, otherwise once it has not renewed its hold for "
        f"{HOLDER_STALE_S:g} s."
    )


def _read_limit(name: str) -> Any:
    """The limit called ``name``, or ``None``."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return None


def _ensure_limit(name: str) -> Any:
    """The experiment's limit (one slot), created if it is missing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    limit = _read_limit(name)
    if limit is not None:
        return limit
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    return _read_limit(name)


def _holder_text(record: dict[str, Any] | None) -> list[str]:
    """The holder for the busy message: its flow run's name and id, process and host."""
    if record is None:
        return []
    run_id = record.get("flow_run_id")
    if not run_id:
        return []
    where = f"process {record.get('pid')} on {record.get('host')}"
    name = None
    with suppress(Exception):
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            name = client.read_flow_run(UUID(str(run_id))).name
    return [f"{name!r} (id {run_id}), {where}" if name else f"(id {run_id}), {where}"]


def _is_locked(error: BaseException) -> bool:
    """Whether a refused acquisition was Prefect's 423 (the slot is taken)."""
    response = getattr(error.__cause__, "response", None)
    return getattr(response, "status_code", None) == 423


def _age(timestamp: Any) -> float:
    return max(time.time() - timestamp.timestamp(), 0.0) if timestamp is not None else 0.0


def _free_slot(client: Any, name: str, lease_id: str | None, held_s: float) -> None:
    """Release a gone holder's slot: through its lease when the server still has it."""
    from httpx import HTTPStatusError

    if lease_id:
        try:
            client.renew_concurrency_lease(UUID(lease_id), LOCK_LEASE_S)
        except HTTPStatusError as e:
            if e.response.status_code not in (404, 410):
                raise
        else:  # the lease lives on (a real server): end it, so it never expires later
            client.release_concurrency_slots_with_lease(UUID(lease_id))
            return
    client.release_concurrency_slots(names=[name], slots=1, occupancy_seconds=max(held_s, 0.001))


def _take_over(name: str, stale: dict[str, Any] | None, reason: str, experiment: str) -> bool:
    """Release the slot of a holder that is gone; ``False`` if another run is doing it.

    One run at a time takes over (it creates the ``<lock>-takeover`` limit, which only one
    creator can), and only if the holder is still the one found gone: a run that lost the
    race finds the winner's record instead.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    marker = f"{name}-takeover"
    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=marker, limit=1, active=False)
            )
        except ObjectAlreadyExists:
            held = _read_limit(marker)
            if held is not None and _age(held.created) > TAKEOVER_STALE_S:
                with suppress(ObjectNotFound):  # left by a run that died taking over
                    client.delete_global_concurrency_limit_by_name(marker)
            return False
        try:
            current, _ = read_record(name)
            limit = _read_limit(name)
            if limit is None or limit.active_slots < 1:
                return True  # freed meanwhile
            if (current or {}).get("token") != (stale or {}).get("token"):
                return True  # another run took over first
            if stale is None and _age(limit.updated) <= HOLDER_STALE_S:
                return True  # a run acquired it just now
            if stale is not None:
                delete_record(name, stale.get("token"))
            _free_slot(client, name, (stale or {}).get("lease_id"), _age(limit.updated))
            who = describe(stale) if stale else "a run that recorded no holder"
            crashed = stale is not None and mark_crashed(stale, reason)
            run_logger(__name__).warning(
                f"Released the lock of experiment {experiment!r} ({name!r}) held by {who}: "
                f"{reason}{'; its flow run is now marked Crashed' if crashed else ''}."
            )
            return True
        finally:
            with suppress(ObjectNotFound):
                client.delete_global_concurrency_limit_by_name(marker)


def _try_acquire(
    name: str, record: dict[str, Any], experiment: str, flow_run_id: UUID | None
) -> tuple[Any, dict[str, Any] | None]:
    """One attempt: ``(lease_id, None)``, or ``(None, the live holder's record or None)``.

    A holder found gone is released first, and the slot tried again.
    """
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency._sync import (
        acquire_concurrency_slots_with_lease,
        release_concurrency_slots_with_lease,
    )

    holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run_id) if flow_run_id else None
    blocker: dict[str, Any] | None = None
    for _ in range(4):
        limit = _ensure_limit(name)
        if limit is not None and limit.active_slots < limit.limit:
            try:
                response = acquire_concurrency_slots_with_lease(
                    [name],
                    1,
                    max_retries=0,
                    lease_duration=LOCK_LEASE_S,
                    strict=True,
                    holder=holder,
                    suppress_warnings=True,
                )
                previous = clear_expired(name, experiment)
                if previous is not None:  # its holder lives on: give the slot back
                    release_concurrency_slots_with_lease(response.lease_id)
                    return None, previous
                return response.lease_id, None
            except ConcurrencySlotAcquisitionError as e:
                if not _is_locked(e) and _read_limit(name) is not None:
                    raise
                if not _is_locked(e):
                    continue  # the holder deleted the limit as it ended: create it again
        if limit is None:
            continue
        blocker, age = read_record(name)
        if blocker is None:
            idle = _age(limit.updated)
            if idle <= HOLDER_STALE_S:
                return None, None  # a run is taking it right now
            reason = f"the slot has been held for {idle:.0f} s with no holder recorded"
        else:
            reason = gone_reason(blocker, age) or ""
            if not reason:
                return None, blocker
        if not _take_over(name, blocker, reason, experiment):
            blocker = None  # gone: another run is taking over from it, and will run
            time.sleep(0.2)
    return None, blocker


def _heartbeat(name: str, record: dict[str, Any], stop: threading.Event) -> None:
    """Renew the holder record until ``stop``; say so once if another run took it over."""
    warned = False
    while not stop.wait(HOLDER_STALE_S / 4):
        with suppress(Exception):
            current, _ = read_record(name)
            if current is None or current.get("token") == record["token"]:
                write_record(name, record)
            elif not warned:
                warned = True
                logging.getLogger(__name__).error(
                    f"The lock {name!r} was taken over by {describe(current)} after this run "
                    f"could not renew it for {HOLDER_STALE_S:g} s; both may now write results."
                )


def _release(name: str, lease_id: Any, token: str) -> None:
    """End the hold: delete the record and the limit while still holding, then the lease.

    Deleting the limit while its one slot is held means no other run got it in between;
    a run waiting for it creates it again. So finished experiments leave no limit behind.
    """
    from prefect.client.orchestration import get_client
    from prefect.concurrency._sync import release_concurrency_slots_with_lease
    from prefect.exceptions import ObjectNotFound

    from radas_flows._api_outage import api_unreachable

    try:
        try:
            delete_record(name, token)
            with get_client(sync_client=True) as client, suppress(ObjectNotFound):
                client.delete_global_concurrency_limit_by_name(name)
        finally:
            release_concurrency_slots_with_lease(lease_id)
    except Exception as e:
        if not api_unreachable(e):
            raise
        # The run's work is done; an unreachable API must not turn it into a failure.
        run_logger(__name__).warning(
            f"Could not release the lock {name!r}: Prefect's API did not answer "
            f"({type(e).__name__}: {e}). The "
            "next run of this experiment releases the lock once this process has exited "
            f"(at once on this machine, within {HOLDER_STALE_S:g} s elsewhere)."
        )


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

    The limit is created on first use and deleted when the holder ends. The holder (flow
    run, host, pid and process start time, lease) is recorded in a Prefect Variable of the
    limit's name and renewed while it runs. A holder that is gone is released with a warning:
    at once when its process on this machine has exited (pid and start time, so a reused pid
    is not mistaken for it) or its flow run has ended, otherwise once it has not renewed its
    record for ``HOLDER_STALE_S`` seconds. A run that cannot get the slot within ``wait_s``
    seconds (``0``: at once; ``None``: no limit) raises ``ExperimentBusyError`` naming the run
    that holds it.

    Args:
        user_name: The experiment's user.
        full_name: The experiment's full (directory-prefixed) name.
        experiment_name: The name as given, for messages.
        tags: The flow-run tags of the experiment (kept for callers; the holder is recorded).
        flow_run_id: This run, recorded as the holder of the slot.
        wait_s: How long to wait for the slot.

    Yields:
        The concurrency limit's name.

    Raises:
        ExperimentBusyError: The slot is held by another live run.

    Example:
        >>> with experiment_lock(user_name="u", full_name="_p_x", experiment_name="x",
        ...                      tags=["user:u", "experiment:x"]):  # doctest: +SKIP
        ...     pass
    """
    from prefect.concurrency._leases import maintain_concurrency_lease

    del tags
    name = experiment_lock_name(user_name, full_name, experiment_name)
    record = this_holder(flow_run_id)
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while True:
        lease_id, blocker = _try_acquire(name, record, experiment_name, flow_run_id)
        if lease_id is not None:
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise ExperimentBusyError(
                busy_message(experiment_name, user_name, name, _holder_text(blocker), wait_s)
            )
        time.sleep(1.0 if left is None else min(1.0, left))
    record["lease_id"] = str(lease_id)
    stop = threading.Event()
    try:
        write_record(name, record)
        # The thread sees this run's Prefect settings (API URL, test harness) too.
        context = contextvars.copy_context()
        beat = threading.Thread(
            target=context.run, args=(_heartbeat, name, record, stop), daemon=True
        )
        beat.start()
        with maintain_concurrency_lease(lease_id, LOCK_LEASE_S, suppress_warnings=True):
            yield name
    finally:
        stop.set()
        _release(name, lease_id, record["token"])
