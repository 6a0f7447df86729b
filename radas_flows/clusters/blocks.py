"""The ``RayCluster`` Prefect block: a registry cluster kept on the Prefect server."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

from radas_flows.clusters.config import BLOCK_TYPE_SLUG, ClusterConfig, RegistryError
from radas_flows.clusters.entry import validate_entry

__all__ = ["RayCluster", "block_clusters", "blocks_readable"]

_REPO_FILES = "https://raw.githubusercontent.com/radas-flows/radas_flows/main"
_REPO_DOCS = "https://github.com/radas-flows/radas_flows/blob/main/docs"
_TTL_S = 5.0
_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, dict[str, ClusterConfig]]] = {}


class RayCluster(Block):
    """A Ray cluster that radas runs experiments on, reached through its Jobs API.

    Save one under a name and run on it with ``run_with="cluster:<name>"``; it is listed by
    ``radas clusters`` and the flow's availability check beside the TOML registry's clusters.
    The token is a secret field: it is sent only to ``address`` and never logged.

    Example:
        ```python
        from radas_flows.clusters.blocks import RayCluster

        RayCluster(
            address="http://10.0.0.5:8265",
            token="...",
            cpu_per_node=64,
            gpu_per_node=8,
            gpu_per_cpu=0.125,
            hint="32G GRAM per GPU, the default choice",
        ).save("atol-gpu-5090")
        ```
    """

    # A validation error shows no input: the input holds the token.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "Ray Cluster"
    _block_type_slug = BLOCK_TYPE_SLUG
    _logo_url = _REPO_FILES + "/docs/img/ray-cluster-block.png"  # type: ignore[assignment]
    _documentation_url = _REPO_DOCS + "/clusters.md#raycluster-blocks"  # type: ignore[assignment]
    _code_example = """
    ```python
    from radas_flows.clusters.blocks import RayCluster

    ray_cluster_block = RayCluster.load("BLOCK_NAME")
    ```
    """

    address: str = Field(
        description="The Ray dashboard / Jobs API address, http(s)://host:port.",
        examples=["http://10.0.0.5:8265"],
    )
    token: SecretStr | None = Field(
        default=None,
        description="The cluster's Ray auth token (`ray get-auth-token` on the head), if any.",
    )
    cpu_per_node: int = Field(
        ge=1, description="CPUs of one node; the most CPUs one trial may ask for."
    )
    gpu_per_node: int = Field(default=0, ge=0, description="GPUs of one node (0: CPU only).")
    gpu_per_cpu: float = Field(
        default=0.0, ge=0, description="GPUs a trial gets per CPU it asks for."
    )
    hint: str = Field(default="", description="A one-line suggestion of when to use it.")
    results_root: str | None = Field(
        default=None,
        description="Where Tune results are stored: a shared folder or s3://bucket/prefix.",
    )

    gpu_memory_gb: float | None = Field(
        default=None,
        gt=0,
        description="Memory of one GPU in GB (run_with='auto' matches min_gpu_memory_gb).",
    )
    default: bool = Field(
        default=False, description="The declared default cluster (run_with='auto' on a tie)."
    )

    @model_validator(mode="after")
    def _check(self) -> RayCluster:
        problems = [
            p.replace("cluster 'block' in a RayCluster block: ", "")
            for p in validate_entry("block", self._table(), "a RayCluster block")[1]
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _table(self) -> dict[str, Any]:
        table: dict[str, Any] = {
            "address": self.address,
            "cpu_per_node": self.cpu_per_node,
            "gpu_per_node": self.gpu_per_node,
            "gpu_per_cpu": self.gpu_per_cpu,
            "hint": self.hint,
        }
        if self.results_root is not None:
            table["results_root"] = self.results_root
        if self.gpu_memory_gb is not None:
            table["gpu_memory_gb"] = self.gpu_memory_gb
        if self.default:
            table["default"] = True
        return table


def blocks_readable() -> bool:
    """Whether a Prefect API can be asked for blocks without starting a temporary server.

    True when ``PREFECT_API_URL`` is set, or inside a flow or task run (whose API is up).
    """
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value()) or bool(FlowRunContext.get() or TaskRunContext.get())


def block_clusters() -> tuple[dict[str, ClusterConfig], str | None]:
    """The clusters saved as ``RayCluster`` blocks, and why they could not be read (or None).

    Nothing is read (``({}, reason)``) when :func:`blocks_readable` is false. The answer is
    kept for a few seconds. Tokens are not read here: a cluster's token is read from its block
    when a request needs it.

    Raises:
        RegistryError: A saved block is invalid (every problem is named).
    """
    if not blocks_readable():
        return {}, "no Prefect API configured (PREFECT_API_URL), so no blocks were read"
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        key = str(client.api_url)
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < _TTL_S:
            return dict(hit[1]), None
        try:
            documents = client.read_block_documents_by_type(
                BLOCK_TYPE_SLUG, limit=200, include_secrets=False
            )
        except ObjectNotFound:  # the block type was never registered: no blocks
            documents = []
        except Exception as e:
            return {}, f"the Prefect API at {key} did not answer ({type(e).__name__}: {e})"
    clusters: dict[str, ClusterConfig] = {}
    problems: list[str] = []
    for document in documents:
        name = document.name or ""
        data = document.data or {}
        table = {
            k: data[k]
            for k in (
                "address",
                "cpu_per_node",
                "gpu_per_node",
                "gpu_per_cpu",
                "hint",
                "results_root",
                "gpu_memory_gb",
                "default",
            )
            if data.get(k) is not None
        }
        source = f"Prefect block {BLOCK_TYPE_SLUG}/{name}"
        config, found = validate_entry(name, table, source)
        problems.extend(found)
        if config is not None:
            clusters[name] = dataclasses.replace(config, from_block=True)
    if problems:
        raise RegistryError(
            f"{len(problems)} problem(s) in RayCluster blocks:\n- "
            + "\n- ".join(problems)
            + "\nFix the blocks (Prefect UI, Blocks page), or delete them."
        )
    with _cache_lock:
        _cache[key] = (time.monotonic(), clusters)
    return dict(clusters), None
