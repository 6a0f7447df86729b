"""One cluster of the registry (:class:`ClusterConfig`), its token, and the registry's errors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from radas_flows.errors import RadasError, RadasValueError

__all__ = ["BLOCK_TYPE_SLUG", "ClusterAuthError", "ClusterConfig", "RegistryError"]

BLOCK_TYPE_SLUG = "ray-cluster"
"""The Prefect block type slug of :class:`~radas_flows.clusters.blocks.RayCluster`."""


class RegistryError(RadasValueError):
    """The cluster registry is missing, malformed, or does not name the requested cluster."""


class ClusterAuthError(RadasError, RuntimeError):
    """A cluster's token cannot be read, or the cluster rejected it."""


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster of the registry.

    Attributes:
        name: The cluster's name, as used in ``run_with="cluster:<name>"``.
        address: The Ray dashboard / Jobs API address, ``http(s)://host:port``.
        cpu_per_node: CPUs of one node; the upper bound for ``cpu_per_trial``.
        gpu_per_node: GPUs of one node.
        gpu_per_cpu: GPUs a trial gets per CPU it asks for.
        hint: A one-line suggestion of when to use this cluster.
        token_file: File holding the cluster's Ray auth token (``~`` expanded), if any.
        token_env: Environment variable holding the cluster's Ray auth token, if any.
        results_root: Where Tune results are stored: a shared folder or ``s3://bucket/prefix``.
        source: The registry file this entry was read from, or for a cluster defined as a
            ``RayCluster`` Prefect block, ``"Prefect block ray-cluster/<name>"``.
        gpu_memory_gb: Memory of one GPU in GB, if stated (``run_with="auto"`` matches a
            sweep's ``min_gpu_memory_gb`` against it).
        default: The registry's declared default (``run_with="auto"`` prefers it on a tie).
        token_refused: Why this entry may not read its token, or ``None`` when it may: set
            for a registry found in the working directory whose ``token_file`` lies outside
            that directory (or that names a ``token_env``) without the user's own registry
            pairing that token with the same address (see :mod:`radas_flows.clusters.registry`).
        from_block: The entry is a ``RayCluster`` block (its token is read from the block
            when needed and is never held here).

    Example:
        >>> from radas_flows.clusters.registry import get_cluster
        >>> cluster = get_cluster("atol-gpu-5090")  # doctest: +SKIP
        >>> cluster.cpu_per_node * cluster.gpu_per_cpu  # doctest: +SKIP
        8.0
    """

    name: str
    address: str
    cpu_per_node: int
    gpu_per_node: int
    gpu_per_cpu: float
    hint: str
    token_file: str | None
    token_env: str | None
    results_root: str | None
    source: Path | str
    token_refused: str | None = None
    gpu_memory_gb: float | None = None
    default: bool = False
    from_block: bool = False

    @property
    def where(self) -> str:
        """Where this entry is defined, for messages: its TOML table or its block."""
        if self.from_block:
            return f"the RayCluster block {self.name!r} ({BLOCK_TYPE_SLUG}/{self.name})"
        return f"the [{self.name}] table of {self.source}"

    def read_token(self) -> str | None:
        """Read the cluster's Ray auth token from its ``token_file`` or ``token_env``.

        Returns:
            The token, or ``None`` when the registry names no token for this cluster.

        Raises:
            ClusterAuthError: The token file is missing, unreadable or empty, the
                environment variable is unset or empty, or this entry may not read its token
                (``token_refused``). The message names the file or variable, never the token.

        Example:
            >>> token = get_cluster("atol-gpu-5090").read_token()  # doctest: +SKIP
        """
        if self.token_refused is not None:
            raise ClusterAuthError(self.token_refused)
        if self.from_block:
            return _block_token(self.name)
        if self.token_file is not None:
            path = Path(self.token_file)
            try:
                token = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError as e:
                raise ClusterAuthError(
                    f"Cluster {self.name!r}: token_file {str(path)!r} does not exist. Put the "
                    f"cluster's Ray auth token in that file, or change token_file in the "
                    f"[{self.name}] table of {self.source}."
                ) from e
            except OSError as e:
                raise ClusterAuthError(
                    f"Cluster {self.name!r}: cannot read token_file {str(path)!r} "
                    f"({type(e).__name__}: {e.strerror or e}). Make it readable, or change "
                    f"token_file in the [{self.name}] table of {self.source}."
                ) from e
            if not token:
                raise ClusterAuthError(
                    f"Cluster {self.name!r}: token_file {str(path)!r} is empty. Put the "
                    f"cluster's Ray auth token in it."
                )
            return token
        if self.token_env is not None:
            token = os.environ.get(self.token_env, "").strip()
            if not token:
                raise ClusterAuthError(
                    f"Cluster {self.name!r}: the environment variable {self.token_env} "
                    f"(token_env in the [{self.name}] table of {self.source}) is unset or "
                    f"empty. Export the cluster's Ray auth token in it."
                )
            return token
        return None


def _block_token(name: str) -> str | None:
    """Read the token of the ``RayCluster`` block ``name`` from the Prefect API.

    The value is registered for redaction (logs, task errors) before it is returned.
    """
    from prefect.client.orchestration import get_client

    from radas_flows._redaction import register_secret

    try:
        with get_client(sync_client=True) as client:
            document = client.read_block_document_by_name(
                name, block_type_slug=BLOCK_TYPE_SLUG, include_secrets=True
            )
    except Exception as e:
        raise ClusterAuthError(
            f"Cluster {name!r}: cannot read the token of the RayCluster block {name!r} from "
            f"the Prefect API ({type(e).__name__}: {e}). Check that the API is reachable and "
            f"that the block exists (prefect block ls)."
        ) from e
    token = (document.data or {}).get("token")
    if not isinstance(token, str) or not token.strip():
        return None
    register_secret(token.strip())
    return token.strip()
