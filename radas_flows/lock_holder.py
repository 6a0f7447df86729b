"""Who holds an experiment's lock, recorded in a Prefect Variable, and whether it is gone."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Mapping
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

#: Seconds after which a holder that stopped renewing its record counts as gone.
HOLDER_STALE_S = 60.0


def _machine() -> dict[str, str | None]:
    """Where this process lives: host name, boot id and pid namespace (Linux; else None).

    Process ids are only comparable within one boot of one kernel and one pid namespace, so
    a holder is checked by pid only when all three match (two containers may share a name).
    """
    boot = None
    with suppress(OSError), open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip() or None
    namespace = None
    with suppress(OSError):
        namespace = os.readlink("/proc/self/ns/pid")
    return {"host": socket.gethostname(), "boot_id": boot, "pid_ns": namespace}


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), ``None`` if it does not exist.

    Together with the pid it names one process: a pid reused by another program has
    another start time.

    Example:
        >>> process_start(os.getpid()) is not None
        True
    """
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with Ray
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0.0
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return round(process.create_time(), 2)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return 0.0


def this_holder(flow_run_id: UUID | None) -> dict[str, Any]:
    """The record a new holder writes: a token, its flow run, machine, pid and start time.

    Example:
        >>> record = this_holder(None)
        >>> record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        True
    """
    pid = os.getpid()
    return {
        "token": uuid.uuid4().hex,
        "flow_run_id": str(flow_run_id) if flow_run_id else None,
        **_machine(),
        "pid": pid,
        "process_start": process_start(pid),
        "lease_id": None,
        "acquired_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def describe(record: Mapping[str, Any]) -> str:
    """The holder in words, for messages.

    Example:
        >>> describe({"pid": 7, "host": "h", "flow_run_id": "f", "acquired_at": "t"})
        'flow run f (process 7 on h, since t)'
    """
    where = (
        f"process {record.get('pid')} on {record.get('host')}, since {record.get('acquired_at')}"
    )
    run = record.get("flow_run_id")
    return f"flow run {run} ({where})" if run else where


def local_death(record: Mapping[str, Any]) -> str | None:
    """Why the holder is provably dead on this machine, or ``None`` (alive, or elsewhere).

    Example:
        >>> local_death(this_holder(None)) is None
        True
        >>> local_death({**this_holder(None), "process_start": 1.0}).endswith("another program)")
        True
    """
    here = _machine()
    if any(record.get(key) != value for key, value in here.items()):
        return None  # another machine, a reboot, or another pid namespace: no pid to check
    pid = record.get("pid")
    if not isinstance(pid, int):
        return None
    started = process_start(pid)
    if started is None:
        return f"its process {pid} on {record['host']} has exited"
    recorded = record.get("process_start")
    if started and recorded and abs(started - float(recorded)) > 1.0:
        return f"its process {pid} on {record['host']} exited (the pid now runs another program)"
    return None


def flow_run_end(record: Mapping[str, Any]) -> str | None:
    """Why the holder's flow run is over (final state, or deleted), or ``None``."""
    run_id = record.get("flow_run_id")
    if not run_id:
        return None
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(str(run_id)))
    except ObjectNotFound:
        return f"its flow run {run_id} no longer exists"
    except Exception:
        return None
    state = run.state
    if state is not None and state.is_final():
        return f"its flow run {run.name!r} (id {run_id}) is {state.name}"
    return None


def gone_reason(record: Mapping[str, Any], age_s: float) -> str | None:
    """Why the holder recorded in ``record`` no longer holds its experiment, or ``None``.

    Provable at once: its process has exited on this machine (pid and start time), or its
    flow run is over. Otherwise a holder that has not renewed its record for
    ``HOLDER_STALE_S`` seconds (``age_s``) counts as gone.
    """
    reason = local_death(record) or flow_run_end(record)
    if reason:
        return reason
    if age_s > HOLDER_STALE_S:
        return f"it has not renewed its hold for {age_s:.0f} s (more than {HOLDER_STALE_S:g} s)"
    return None


def read_record(name: str) -> tuple[dict[str, Any] | None, float]:
    """The holder record of lock ``name`` and its age in seconds since its last renewal."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        variable = client.read_variable_by_name(name)
    if variable is None or not isinstance(variable.value, dict):
        return None, 0.0
    updated = variable.updated or variable.created
    age = time.time() - updated.timestamp() if updated else 0.0
    return dict(variable.value), max(age, 0.0)


def write_record(name: str, record: Mapping[str, Any]) -> None:
    """Create or overwrite the holder record of lock ``name`` (renews its age)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate
    from prefect.exceptions import ObjectAlreadyExists

    value = {**record, "renewed_at": datetime.now(UTC).isoformat(timespec="seconds")}
    with get_client(sync_client=True) as client:
        try:
            client.create_variable(VariableCreate(name=name, value=value, tags=["radas-lock"]))
        except ObjectAlreadyExists:
            client.update_variable(VariableUpdate(name=name, value=value))


def delete_record(name: str, token: str | None = None) -> None:
    """Delete the holder record of lock ``name`` (only if it is ``token``'s, when given)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    if token is not None:
        record, _ = read_record(name)
        if record is None or record.get("token") != token:
            return
    with get_client(sync_client=True) as client, suppress(ObjectNotFound):
        client.delete_variable_by_name(name)


def mark_crashed(record: Mapping[str, Any], reason: str) -> bool:
    """Mark the dead holder's flow run Crashed when its death is proven; whether it was.

    A flow run whose process was killed together with its ephemeral Prefect server (or
    without a worker watching it) stays Running in the database; once its process is proven
    gone on this machine, say so in the UI too. Nothing is changed on mere silence.
    """
    run_id = record.get("flow_run_id")
    if not run_id or local_death(record) is None:
        return False
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(str(run_id)))
            if run.state is not None and run.state.is_final():
                return False
            message = f"Found gone by the next run of its experiment: {reason}."
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        return True
    except Exception:
        return False


def clear_expired(name: str, experiment: str) -> dict[str, Any] | None:
    """After taking lock ``name``'s free slot: the previous holder, if it lives on; else ``None``.

    The server frees a slot whose lease nobody renews, but the holder's record stays. A
    holder that is gone is cleared, with a warning (its flow run marked Crashed when its
    death is proven); one that still renews its record is returned: it keeps the experiment.
    """
    from radas_flows._artifacts import run_logger

    previous, age = read_record(name)
    if previous is None:
        return None
    reason = gone_reason(previous, age)
    if not reason:
        return previous
    delete_record(name, previous.get("token"))
    crashed = mark_crashed(previous, reason)
    run_logger("radas_flows.concurrency").warning(  # where the lock's other messages go
        f"The lock of experiment {experiment!r} ({name!r}) held by {describe(previous)} had "
        f"expired: {reason}{'; its flow run is now marked Crashed' if crashed else ''}."
    )
    return None
