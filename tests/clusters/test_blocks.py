"""``RayCluster`` blocks: Prefect's block standard tests, registration, lookup and a cluster run."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from ray import tune

from radas_flows import run_experiment
from radas_flows.cli import main
from radas_flows.clusters import addresses
from radas_flows.clusters.blocks import RayCluster
from radas_flows.clusters.jobs import job_client
from radas_flows.clusters.registry import RegistryError, get_cluster, load_registry
from tests.clusters.helpers import import_source
from tests.clusters.loopback_ray import RayHead
from tests.prefect_reads import flow_run_named, logs_of

ROOT = Path(__file__).resolve().parents[2]
LOGO = ROOT / "docs" / "img" / "ray-cluster-block.png"
BLOCK = "loop-block"


class TestRayClusterIsAStandardBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return RayCluster

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # The suite downloads the logo; nothing outside this machine can be reached here, so
        # the same checks run on the file the URL serves from this repository.
        from PIL import Image

        assert str(block._logo_url).endswith("/main/docs/img/ray-cluster-block.png")
        img = Image.open(LOGO)
        assert img.width == img.height and 1000 > img.width > 45


def test_an_invalid_block_is_refused_without_showing_its_token() -> None:
    with pytest.raises(ValueError, match="must start with http:// or https://") as info:
        RayCluster(address="ftp://x", token="tok-123456789", cpu_per_node=2)
    assert "tok-123456789" not in str(info.value)
    with pytest.raises(ValueError, match="is more than gpu_per_node = 0"):
        RayCluster(address="http://h:8265", cpu_per_node=2, gpu_per_cpu=1)


@pytest.fixture
def block_env(prefect_api: None, radas_env: Path, ray_head: RayHead) -> Iterator[RayHead]:
    """Register the block type through the CLI, save a block naming the loopback head, and
    delete it afterwards (other tests list every cluster)."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PYTHONPATH=str(ROOT), PREFECT_API_URL=str(PREFECT_API_URL.value()))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "block", "register", "-m", "radas_flows"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ray Cluster" in done.stdout
    RayCluster(
        address=ray_head.dashboard_url,
        token=ray_head.token,
        cpu_per_node=2,
        gpu_per_node=2,
        gpu_per_cpu=1,
        hint="the loopback head, as a block",
        results_root=str(ray_head.temp_dir / "results"),
    ).save(BLOCK, overwrite=True)
    try:
        yield ray_head
    finally:
        asyncio.run(_delete(BLOCK))


async def _delete(name: str) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        document = await client.read_block_document_by_name(name, block_type_slug="ray-cluster")
        await client.delete_block_document(document.id)
    from radas_flows.clusters import blocks

    blocks._cache.clear()


@pytest.mark.cluster
def test_a_block_is_a_cluster_everywhere_the_registry_is(
    block_env: RayHead,
    cluster_registry: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = block_env.token
    caplog.set_level(logging.DEBUG)
    clusters = load_registry()
    assert list(clusters)[-1] == BLOCK  # after the TOML entries
    cluster = get_cluster(BLOCK)
    assert cluster.from_block and cluster.address == block_env.dashboard_url
    assert token not in repr(cluster)  # the token is read from the block when needed
    assert addresses.gpu_per_cpu[BLOCK] == 1.0 and addresses.cpu_per_node[BLOCK] == 2
    # The cluster accepts the block's token: the Jobs API answers.
    assert isinstance(job_client(cluster).list_jobs(), list)
    assert main(["clusters"]) == 0
    out = capsys.readouterr().out
    assert f"- [status: online] {BLOCK}: the loopback head, as a block\n" in out
    assert "- [status: online] loopback:" in out
    assert token not in out and token not in caplog.text


@pytest.mark.cluster
def test_the_toml_entry_wins_a_shared_name(
    block_env: RayHead,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = tmp_path / "clusters.toml"
    registry.write_text(
        f'[{BLOCK}]\naddress = "http://127.0.0.1:9"\ncpu_per_node = 4\ngpu_per_node = 0\n'
        'gpu_per_cpu = 0\nhint = "the TOML entry"\n'
    )
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(registry))
    with caplog.at_level(logging.WARNING, logger="radas_flows.clusters.registry"):
        assert get_cluster(BLOCK).address == "http://127.0.0.1:9"
    assert not get_cluster(BLOCK).from_block
    assert f"Cluster {BLOCK!r} is both in {registry} and a RayCluster block" in caplog.text
    with pytest.raises(RegistryError, match=r"Unknown cluster 'nope'.*RayCluster block"):
        get_cluster("nope")


TRAINABLE = """\
def score(config):
    return {"score": config["a"] * 10}
"""


@pytest.mark.cluster
@pytest.mark.slow
def test_run_with_a_block_cluster(
    block_env: RayHead, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RADAS_CLUSTERS_FILE", raising=False)  # the block alone names it
    monkeypatch.setenv("HOME", str(workdir / "home"))
    mod = import_source(workdir, TRAINABLE, "block_trainables")
    results = asyncio.run(
        run_experiment(
            user_name="bea",
            experiment_name="block-run",
            trainable=mod.score,
            param_space={"a": tune.grid_search([1, 2])},
            run_with=f"cluster:{BLOCK}",
            run_choice="run",
        )
    )
    assert sorted(results["df"]["score"]) == [10, 20]
    assert Path(results["tuner"].experiment_path).parent == block_env.temp_dir / "results" / "bea"
    run = flow_run_named("block-run")
    token = block_env.token
    assert token not in repr(run.parameters)
    assert all(token not in line for line in logs_of(run.id))
