"""The cluster registry: a TOML file naming each Ray cluster, its Jobs API address and resources.

A registry found in the working directory (``./radas_clusters.toml``, for example one that came
with a cloned repository) chooses addresses, so it may not pair them with the user's tokens: its
entries read a ``token_file`` only inside that directory, and no ``token_env``, unless the user's
own registry (``~/.config/radas/clusters.toml``) pairs the same token with the same address, or
``RADAS_CLUSTERS_FILE`` names the file. Otherwise the entry carries the reason in
``token_refused`` and :meth:`ClusterConfig.read_token` raises it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from radas_flows.clusters.config import ClusterAuthError, ClusterConfig, RegistryError
from radas_flows.inputs.rules import is_cluster_name

__all__ = [
    "ENV_VAR",
    "PROJECT_FILE",
    "USER_FILE",
    "ClusterAuthError",
    "ClusterConfig",
    "RegistryError",
    "get_cluster",
    "load_registry",
    "registry_path",
]

ENV_VAR = "RADAS_CLUSTERS_FILE"
"""Environment variable holding the path of the registry file (checked first)."""

PROJECT_FILE = "radas_clusters.toml"
"""Project-level registry, looked up in the current working directory (checked second)."""

USER_FILE = Path("~/.config/radas/clusters.toml")
"""User-level registry (checked last)."""

_EXAMPLE = """\
[atol-gpu-5090]
address = "http://10.0.0.5:8265"      # Ray dashboard / Jobs API
cpu_per_node = 64
gpu_per_node = 8
gpu_per_cpu = 0.125
hint = "32G GRAM per GPU, the default choice"
token_file = "~/.ray/atol_token"      # optional; or token_env = "VAR"
results_root = "/mnt/data/nfs/ray-results"   # optional; shared folder or s3://bucket/prefix
gpu_memory_gb = 32                    # optional; matched by run_with="auto"
default = true                        # optional; at most one cluster"""

_RESERVED_NAMES = frozenset({"local"})


def registry_path() -> Path | None:
    """Find the registry file.

    The first that applies wins: the file named by ``RADAS_CLUSTERS_FILE`` (which must
    exist when the variable is set), ``./radas_clusters.toml`` in the current working
    directory (whose entries may not read the user's tokens: see the module's docstring),
    then ``~/.config/radas/clusters.toml``.

    Returns:
        The registry's path, or ``None`` when there is none.

    Raises:
        RegistryError: ``RADAS_CLUSTERS_FILE`` names a file that does not exist.

    Example:
        >>> from radas_flows.clusters.registry import registry_path
        >>> registry_path()  # doctest: +SKIP
        PosixPath('/home/me/project/radas_clusters.toml')
    """
    env_value = os.environ.get(ENV_VAR, "").strip()
    if env_value:
        path = Path(env_value).expanduser()
        if not path.is_file():
            raise RegistryError(
                f"{ENV_VAR}={env_value!r} does not name an existing file. Point it at your "
                f"cluster registry (TOML), or unset it to use ./{PROJECT_FILE} or {USER_FILE}."
            )
        return path
    project = Path.cwd() / PROJECT_FILE
    if project.is_file():
        return project
    user = USER_FILE.expanduser()
    if user.is_file():
        return user
    return None


def _where() -> str:
    return f"${ENV_VAR}, ./{PROJECT_FILE} or {USER_FILE}"


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


def _check_address(address: str) -> str | None:
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


def _validate_entry(name: str, table: Any, source: Path) -> tuple[ClusterConfig | None, list[str]]:
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
    address_problem = _check_address(address)
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
    if problems:
        return None, problems

    token_file = table.get("token_file")
    if token_file is not None:
        token_path = Path(token_file.strip()).expanduser()
        if not token_path.is_absolute():
            token_path = source.parent / token_path
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


def load_registry(path: str | os.PathLike[str] | None = None) -> dict[str, ClusterConfig]:
    """Read and validate the cluster registry.

    Args:
        path: The registry file; by default the one :func:`registry_path` finds.

    Returns:
        The clusters by name, in the file's order; empty when there is no registry file.

    Raises:
        RegistryError: The file cannot be read, is not valid TOML, or an entry is
            invalid. The message lists every problem with the cluster, key and file.

    Example:
        >>> from radas_flows.clusters.registry import load_registry
        >>> sorted(load_registry())  # doctest: +SKIP
        ['atol-gpu-5090', 'gcp-cpu']
    """
    source = Path(path).expanduser() if path is not None else registry_path()
    if source is None:
        return {}
    try:
        with source.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as e:
        raise RegistryError(f"Cluster registry {source} does not exist.") from e
    except OSError as e:
        raise RegistryError(f"Cannot read the cluster registry {source}: {e}.") from e
    except tomllib.TOMLDecodeError as e:
        raise RegistryError(
            f"Cluster registry {source} is not valid TOML ({e}). Each cluster is a table:\n"
            f"{_EXAMPLE}"
        ) from e
    clusters: dict[str, ClusterConfig] = {}
    problems: list[str] = []
    for name, table in data.items():
        config, entry_problems = _validate_entry(name, table, source)
        problems.extend(entry_problems)
        if config is not None:
            clusters[name] = config
    if len(defaults := [name for name, config in clusters.items() if config.default]) > 1:
        problems.append(f"{source}: {defaults} all say default = true; keep it on one of them.")
    if problems:
        raise RegistryError(
            f"Cluster registry {source} has {len(problems)} problem(s):\n- " + "\n- ".join(problems)
        )
    if clusters and _found_in_working_directory(source):
        clusters = _refuse_foreign_tokens(clusters, source)
    return clusters


def _found_in_working_directory(source: Path) -> bool:
    """Whether ``source`` is ``./radas_clusters.toml`` that neither the user's registry is, nor
    ``RADAS_CLUSTERS_FILE`` names."""
    try:
        resolved = source.resolve()
        if resolved != (Path.cwd() / PROJECT_FILE).resolve():
            return False
        chosen = [USER_FILE.expanduser()]
        env_value = os.environ.get(ENV_VAR, "").strip()
        if env_value:
            chosen.append(Path(env_value).expanduser())
        return all(path.resolve() != resolved for path in chosen)
    except OSError:  # no working directory any more: nothing was found there
        return False


def _origin(address: str) -> tuple[str, str, int | None]:
    parts = urlsplit(address)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _token_key(cluster: ClusterConfig) -> tuple[str, str]:
    if cluster.token_file is not None:
        return "file", str(Path(cluster.token_file).resolve())
    return "env", str(cluster.token_env)


def _refuse_foreign_tokens(
    clusters: dict[str, ClusterConfig], source: Path
) -> dict[str, ClusterConfig]:
    """Mark the entries of a working-directory registry that may not read their token."""
    directory = source.resolve().parent
    paired: dict[tuple[str, str], list[str]] = {}  # token -> addresses the user gave it
    user = USER_FILE.expanduser()
    if user.is_file():
        try:
            for own in load_registry(user).values():
                if own.token_file is not None or own.token_env is not None:
                    paired.setdefault(_token_key(own), []).append(own.address)
        except RegistryError:
            pass  # a broken user registry allows nothing; using it reports its problems
    checked: dict[str, ClusterConfig] = {}
    for name, cluster in clusters.items():
        checked[name] = cluster
        if cluster.token_file is None and cluster.token_env is None:
            continue
        kind, token = _token_key(cluster)
        if kind == "file" and Path(token).is_relative_to(directory):
            continue
        addresses = paired.get((kind, token), [])
        if any(_origin(a) == _origin(cluster.address) for a in addresses):
            continue
        checked[name] = dataclasses.replace(
            cluster, token_refused=_refusal(cluster, directory, addresses)
        )
    return checked


def _refusal(cluster: ClusterConfig, directory: Path, addresses: list[str]) -> str:
    if cluster.token_file is not None:
        what = f"token_file {cluster.token_file!r}, which lies outside {str(directory)!r}"
        line = f'token_file = "{cluster.token_file}"'
        inside = f", or keep the token in a file inside {str(directory)!r}"
    else:
        what = f"token_env {cluster.token_env}, an environment variable of yours"
        line, inside = f'token_env = "{cluster.token_env}"', ""
    elsewhere = (
        f" Your registry {USER_FILE} pairs this token with {', '.join(addresses)}, not with "
        f"{cluster.address}."
        if addresses
        else ""
    )
    return (
        f"Cluster {cluster.name!r}: {cluster.source} was found in the working directory and "
        f"names {what}. A registry that comes with a project (such as a cloned repository) may "
        f"not send your token to an address it chooses ({cluster.address}), so the token was "
        f"not read.{elsewhere} To allow it, add this cluster with the same address and token to "
        f'your own registry {USER_FILE} ([{cluster.name}] address = "{cluster.address}", '
        f"{line}, ...), or set {ENV_VAR}={cluster.source} to use this file as your "
        f"registry{inside}."
    )


def get_cluster(name: str, *, path: str | os.PathLike[str] | None = None) -> ClusterConfig:
    """Look up one cluster of the registry by name.

    Args:
        name: The cluster's name (the ``<name>`` of ``run_with="cluster:<name>"``).
        path: The registry file; by default the one :func:`registry_path` finds.

    Returns:
        The cluster's configuration.

    Raises:
        RegistryError: There is no registry, or it does not name this cluster (the
            message lists the known names and the registry's path).

    Example:
        >>> from radas_flows.clusters.registry import get_cluster
        >>> get_cluster("atol-gpu-5090").address  # doctest: +SKIP
        'http://10.0.0.5:8265'
    """
    source = Path(path).expanduser() if path is not None else registry_path()
    if source is None:
        raise RegistryError(
            f"Unknown cluster {name!r}: no cluster registry found (looked in {_where()}). "
            f"Create one with a table per cluster, for example:\n{_EXAMPLE}"
        )
    clusters = load_registry(source)
    if name not in clusters:
        known = ", ".join(repr(n) for n in clusters) or "none"
        raise RegistryError(
            f"Unknown cluster {name!r}. Clusters in {source}: {known}. Use one of these "
            f"names, or add a [{name}] table to that file."
        )
    return clusters[name]
