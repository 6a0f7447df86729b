"""Tune trainables that genuinely run out of memory, sized by the CPUs Ray assigned them."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MIB = 2**20

#: Defaults: a trial needs 768 MiB and may use 512 MiB per assigned CPU, so it runs out of
#: memory at 1 CPU (512 MiB) and completes at 2 CPUs (1 GiB, leaving 256 MiB of headroom).
DEFAULT_NEED_MIB = 768
DEFAULT_MIB_PER_CPU = 512


def ship_by_value(module_name: str) -> None:
    """Make Ray pickle a test module's functions by value.

    Ray workers import neither ``tests/`` modules nor pytest's ``sys.path`` additions, so a
    trainable defined there must travel with its code.
    """
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[module_name])


@contextlib.contextmanager
def private_local_ray(num_cpus: int, **init_kwargs: Any) -> Iterator[Any]:
    """A private local Ray for one test scope; a Ray left running by earlier tests is stopped.

    The flow code starts its local Ray again on first use, so stopping it here is safe.
    """
    import ray

    if ray.is_initialized():
        ray.shutdown()
    from radas_flows.targets.local import _loopback_only

    with _loopback_only():  # on 127.0.0.1 only, as the product's local Ray
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            **init_kwargs,
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def memory_used_and_total() -> tuple[int, int]:
    """Bytes of memory in use on this machine (total minus available) and its total."""
    fields = {}
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            key, value = line.split(":", 1)
            fields[key] = int(value.split()[0]) * 1024
    return fields["MemTotal"] - fields["MemAvailable"], fields["MemTotal"]


def assigned_cpus() -> float:
    """CPUs Ray assigned to the running task or actor (a Tune trial sees its bundle as "CPU")."""
    import ray

    return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0))


def vm_size_bytes() -> int:
    """The current virtual address space of this process (VmSize), which RLIMIT_AS limits."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmSize is missing from /proc/self/status; RLIMIT_AS needs Linux")


def record_execution(config: dict[str, Any], cpus: float, **extra: Any) -> None:
    """Append one JSON line for this execution to ``config["count_file"]``, if it is set.

    One ``os.write`` on an ``O_APPEND`` descriptor, so lines from concurrent trials never mix.
    """
    count_file = config.get("count_file")
    if not count_file:
        return
    params = {key: value for key, value in config.items() if key != "count_file"}
    line = json.dumps({"config": params, "cpus": cpus, "pid": os.getpid(), **extra}) + "\n"
    fd = os.open(count_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_executions(count_file: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every execution recorded by :func:`record_execution`, oldest first."""
    path = Path(count_file)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _budget_bytes(config: dict[str, Any], cpus: float) -> tuple[int, int]:
    need = int(config.get("need_mib", DEFAULT_NEED_MIB) * MIB)
    budget = int(cpus * config.get("mib_per_cpu", DEFAULT_MIB_PER_CPU) * MIB)
    return need, budget


def memory_hungry(config: dict[str, Any]) -> dict[str, Any]:
    """Allocate ``need_mib`` under an address-space limit of ``mib_per_cpu`` per assigned CPU.

    The limit is this worker's current VmSize plus the budget (a Ray worker already maps
    several GB of address space), so the allocation raises a real ``MemoryError`` when the
    budget is smaller than the need. The limit is restored in ``finally``: Tune reuses actors.

    Config keys: ``need_mib``, ``mib_per_cpu``, ``count_file`` (executions are appended
    there), anything else is passed through (for example ``x``, reported as ``score``).
    """
    cpus = assigned_cpus()
    record_execution(config, cpus)
    need, budget = _budget_bytes(config, cpus)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm_size_bytes() + budget
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        block = bytearray(need)  # zero-filled: the pages are really touched
        allocated = len(block)
        del block
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return {"score": float(config.get("x", 0)), "cpus": cpus, "allocated_mib": allocated / MIB}


def memory_grabber(config: dict[str, Any]) -> dict[str, Any]:
    """Touch ``grab_mib`` of memory quickly, hold it ``hold_s`` seconds, then return.

    Used to trip Ray's memory monitor, which kills the worker while it holds the memory.
    """
    cpus = assigned_cpus()
    record_execution(config, cpus)
    chunks = [bytearray(64 * MIB) for _ in range(int(config.get("grab_mib", 0)) // 64)]
    time.sleep(float(config.get("hold_s", 5.0)))
    return {"held_mib": 64 * len(chunks), "cpus": cpus}


def own_memory_cgroup_v1() -> Path | None:
    """This process's cgroup-v1 memory directory when it can create child cgroups, else None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            directory = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            limit_file = directory / "memory.limit_in_bytes"
            if limit_file.exists() and os.access(directory, os.W_OK):
                return directory
    return None


def victim_cgroup_name(pid: int) -> str:
    """Name of the child memory cgroup :func:`kernel_oom_victim` creates for a worker."""
    return f"radas_oom_{pid}"


def kernel_oom_victim(config: dict[str, Any]) -> dict[str, Any]:
    """Allocate ``need_mib`` inside a memory cgroup limited to ``mib_per_cpu`` per assigned CPU.

    The worker moves itself into a child cgroup-v1 memory cgroup, so when the need exceeds
    the budget the kernel's OOM killer kills it with SIGKILL, as on a node out of memory.
    Memory already used before the move stays charged to the parent cgroup. When the
    allocation fits, the worker moves back and removes the child cgroup; after a kill the
    caller removes it (its name comes from :func:`victim_cgroup_name` and the recorded pid).
    """
    parent = own_memory_cgroup_v1()
    if parent is None:
        raise RuntimeError("no writable cgroup-v1 memory controller for this process")
    cpus = assigned_cpus()
    record_execution(config, cpus, cgroup=victim_cgroup_name(os.getpid()))
    need, budget = _budget_bytes(config, cpus)
    child = parent / victim_cgroup_name(os.getpid())
    child.mkdir(exist_ok=True)
    (child / "memory.limit_in_bytes").write_text(str(budget))
    (child / "cgroup.procs").write_text(str(os.getpid()))
    try:
        block = bytearray(need)
        allocated = len(block)
        del block
    finally:
        (parent / "cgroup.procs").write_text(str(os.getpid()))
    child.rmdir()
    return {"score": float(config.get("x", 0)), "cpus": cpus, "allocated_mib": allocated / MIB}


def failing_in_turn(config: dict[str, Any]) -> dict[str, Any]:
    """Raise ``config["errors"][n]`` on the n-th execution of this config (``"none"``: return).

    Error names: ``"MemoryError"``, or ``"ValueError"`` with a message that mentions memory
    without being an out-of-memory error. Executions are counted in ``config["count_file"]``.
    """
    cpus = assigned_cpus()
    done = [e for e in read_executions(config["count_file"]) if e["config"]["x"] == config["x"]]
    record_execution(config, cpus)
    name = config["errors"][min(len(done), len(config["errors"]) - 1)]
    if name == "MemoryError":
        raise MemoryError(f"cannot allocate the buffers of config x={config['x']}")
    if name == "ValueError":
        raise ValueError("not enough memory left for the cache: lower cache_mb in the config")
    return {"score": float(config["x"]), "cpus": cpus}


ship_by_value(__name__)
