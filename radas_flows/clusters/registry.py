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
import os
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from radas_flows._artifacts import run_logger
from radas_flows.clusters.config import ClusterAuthError, ClusterConfig, RegistryError
from radas_flows.clusters.entry import validate_entry

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
    "with_blocks",
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


def load_registry(path: str | os.PathLike[str] | None = None) -> dict[str, ClusterConfig]:
    """Read and validate the cluster registry.

    Args:
        path: The registry file; by default the one :func:`registry_path` finds.

    Without ``path``, the clusters saved as ``RayCluster`` Prefect blocks are included
    (after the file's; a name in both is the file's entry, with a warning), when a Prefect API
    is configured or this runs inside a flow run.

    Returns:
        The clusters by name, in the file's order; empty when there is no registry file
        and no block.

    Raises:
        RegistryError: The file cannot be read, is not valid TOML, or an entry or block is
            invalid. The message lists every problem with the cluster, key and file.

    Example:
        >>> from radas_flows.clusters.registry import load_registry
        >>> sorted(load_registry())  # doctest: +SKIP
        ['atol-gpu-5090', 'gcp-cpu']
    """
    source = Path(path).expanduser() if path is not None else registry_path()
    clusters = _load_file(source) if source is not None else {}
    return clusters if path is not None else with_blocks(clusters, source)


def _load_file(source: Path) -> dict[str, ClusterConfig]:
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
        config, entry_problems = validate_entry(name, table, source)
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
    clusters = load_registry(path)
    if name in clusters:
        return clusters[name]
    blocks = "" if path is not None else f" {_blocks_note()}"
    if source is None:
        raise RegistryError(
            f"Unknown cluster {name!r}: no cluster registry found (looked in {_where()}).{blocks} "
            f"Save a RayCluster block named {name!r}, or create a registry with a table per "
            f"cluster, for example:\n{_EXAMPLE}"
        )
    known = ", ".join(repr(n) for n in clusters) or "none"
    raise RegistryError(
        f"Unknown cluster {name!r}. Clusters in {source}"
        f"{'' if path is not None else ' and RayCluster blocks'}: {known}.{blocks} Use one of "
        f"these names, or add a [{name}] table to that file"
        f"{'' if path is not None else ' or save a RayCluster block of that name'}."
    )


_shadowed: set[str] = set()


def _blocks_note() -> str:
    from radas_flows.clusters.blocks import block_clusters

    try:
        reason = block_clusters()[1]
    except RegistryError as e:
        return f"RayCluster blocks were not used: {e}"
    return f"RayCluster blocks were not read: {reason}." if reason else ""


def with_blocks(
    clusters: dict[str, ClusterConfig], source: Path | None
) -> dict[str, ClusterConfig]:
    """Add the ``RayCluster`` blocks to the file's clusters; the file's entry wins a name."""
    from radas_flows.clusters.blocks import block_clusters

    merged = dict(clusters)
    for name, cluster in block_clusters()[0].items():
        if name not in merged:
            merged[name] = cluster
        elif name not in _shadowed:
            _shadowed.add(name)
            run_logger(__name__).warning(
                f"Cluster {name!r} is both in {source} and a RayCluster block; using the "
                f"entry of {source}. Rename or delete one of them."
            )
    return merged
