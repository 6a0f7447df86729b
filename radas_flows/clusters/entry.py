"""Validation of one cluster entry, from a TOML table or a ``RayCluster`` block."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from radas_flows.clusters.config import ClusterConfig
from radas_flows.inputs.rules import is_cluster_name
from radas_flows.storage import is_uri

__all__ = ["check_address", "validate_entry"]

_RESERVED_NAMES = frozenset({"local"})


_REQUIRED: dict[str, tuple[type, ...]] = {
    "address": (str,),
    "cpu_per_node": (int,),
    "gpu_per_node": (int,),
    "gpu_per_cpu": (int, float),
    "hint": (str,),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "token_file": (str,),
    "token_env": (str,),
    "results_root": (str,),
    "gpu_memory_gb": (int, float),
    "default": (bool,),
}
_TYPE_NAMES = {
    "address": 'a string such as "http://10.0.0.5:8265"',
    "cpu_per_node": "an integer such as 64",
    "gpu_per_node": "an integer such as 8 (0 for a CPU cluster)",
    "gpu_per_cpu": "a number such as 0.125 (0 for a CPU cluster)",
    "hint": "a string",
    "token_file": 'a string such as "~/.ray/my_token"',
    "token_env": 'a string such as "MY_CLUSTER_TOKEN"',
    "results_root": 'a string such as "/mnt/nfs/ray-results" or "s3://bucket/prefix"',
    "gpu_memory_gb": "a number such as 32 (GB of memory of one GPU)",
    "default": "true or false",
}


def check_address(address: str) -> str | None:
    """Return a problem with a Jobs API address, or None when it is well formed."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host"
    if port is None:
        return "has no port (the dashboard listens on 8265 by default)"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "must be only scheme, host and port (no path, query or fragment)"
    return None


def validate_entry(
    name: str, table: Any, source: Path | str
) -> tuple[ClusterConfig | None, list[str]]:
    """Validate one cluster table; return the config (when valid) and the problems found."""
    where = f"cluster {name!r} in {source}"
    problems: list[str] = []
    if not isinstance(table, dict):
        return None, [
            f"{name!r} in {source} is not a table: write each cluster as a [{name}] table "
            f"with the keys {', '.join(_REQUIRED)}."
        ]
    if name in _RESERVED_NAMES:
        problems.append(
            f"{where}: the name {name!r} is reserved for this machine (run_with='local'); "
            f"rename the table."
        )
    elif not is_cluster_name(name):
        problems.append(
            f"{where}: the name may use only letters, digits, '.', '_' and '-' and must "
            f"start with a letter or digit; rename the table."
        )
    known = set(_REQUIRED) | set(_OPTIONAL)
    for key in sorted(set(table) - known):
        problems.append(
            f"{where}: unknown key {key!r}; allowed keys are {', '.join(sorted(known))}. "
            f"Remove it or fix its spelling."
        )
    for key in _REQUIRED:
        if key not in table:
            problems.append(f"{where}: missing key {key!r}; add {key} = {_TYPE_NAMES[key]}.")
    for key, types in (_REQUIRED | _OPTIONAL).items():
        if key not in table:
            continue
        value = table[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            problems.append(
                f"{where}: key {key!r} is {value!r} ({type(value).__name__}); it must be "
                f"{_TYPE_NAMES[key]}."
            )
    if problems:
        return None, problems

    address: str = table["address"].strip()
    address_problem = check_address(address)
    if address_problem:
        problems.append(
            f"{where}: key 'address' = {address!r} {address_problem}; write it as "
            f'"http://host:port", the Ray dashboard / Jobs API address.'
        )
    cpu_per_node: int = table["cpu_per_node"]
    gpu_per_node: int = table["gpu_per_node"]
    gpu_per_cpu = float(table["gpu_per_cpu"])
    if cpu_per_node < 1:
        problems.append(f"{where}: key 'cpu_per_node' = {cpu_per_node} must be at least 1.")
    if gpu_per_node < 0:
        problems.append(f"{where}: key 'gpu_per_node' = {gpu_per_node} must be 0 or more.")
    if not math.isfinite(gpu_per_cpu) or gpu_per_cpu < 0:
        problems.append(f"{where}: key 'gpu_per_cpu' = {gpu_per_cpu} must be 0 or more.")
    elif gpu_per_cpu * cpu_per_node > gpu_per_node + 1e-9:
        problems.append(
            f"{where}: gpu_per_cpu * cpu_per_node = {gpu_per_cpu} * {cpu_per_node} = "
            f"{gpu_per_cpu * cpu_per_node:g} is more than gpu_per_node = {gpu_per_node}; "
            f"lower gpu_per_cpu to at most {gpu_per_node / max(cpu_per_node, 1):g}."
        )
    if "token_file" in table and "token_env" in table:
        problems.append(
            f"{where}: set only one of 'token_file' and 'token_env', not both; remove one."
        )
    memory = table.get("gpu_memory_gb")
    if memory is not None and not (math.isfinite(memory) and memory > 0):
        problems.append(f"{where}: key 'gpu_memory_gb' = {memory} must be greater than 0.")
    if table.get("token_env", "x").strip() == "":
        problems.append(f"{where}: key 'token_env' is empty; name an environment variable.")
    if table.get("token_file", "x").strip() == "":
        problems.append(f"{where}: key 'token_file' is empty; name the token file.")
    results_root = table.get("results_root", "/").strip()
    if not is_uri(results_root) and not Path(results_root).expanduser().is_absolute():
        problems.append(
            f"{where}: key 'results_root' = {results_root!r} is a relative path; write the "
            'absolute folder every node mounts, such as "/mnt/nfs/ray-results", or a URI such '
            'as "s3://bucket/prefix".'
        )
    if problems:
        return None, problems

    token_file = table.get("token_file")
    if token_file is not None:
        token_path = Path(token_file.strip()).expanduser()
        if not token_path.is_absolute():
            token_path = Path(source).parent / token_path
        token_file = str(token_path)
    results_root = table.get("results_root")
    if results_root is not None and results_root.startswith("~"):
        results_root = str(Path(results_root).expanduser())
    return (
        ClusterConfig(
            name=name,
            address=address.rstrip("/"),
            cpu_per_node=cpu_per_node,
            gpu_per_node=gpu_per_node,
            gpu_per_cpu=gpu_per_cpu,
            hint=table["hint"].strip(),
            token_file=token_file,
            token_env=table.get("token_env", "").strip() or None,
            results_root=results_root,
            source=source,
            gpu_memory_gb=float(memory) if memory is not None else None,
            default=bool(table.get("default", False)),
        ),
        [],
    )
