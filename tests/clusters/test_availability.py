"""Availability: the spec's text, probes of online, offline and hung clusters, local GPUs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from radas_flows.clusters import (
    ClusterStatus,
    availability_rows,
    format_availability,
    get_cluster_availability,
    probe_clusters,
)
from radas_flows.clusters.availability import parse_cluster_status
from radas_flows.clusters.registry import RegistryError
from radas_flows.core import local_gpus
from tests.clusters.loopback_ray import RayHead

HEADER = (
    "All available clusters are listed below, with status and suggestions of when to use "
    "which cluster:"
)


def test_format_matches_the_spec() -> None:
    text = format_availability(
        [
            ClusterStatus("atol-gpu-5090", True, "32G GRAM per GPU, choose as the default choice"),
            ClusterStatus("atol-gpu-pro6000", False, "96G GRAM, availability is limited"),
        ]
    )
    assert text == (
        f"{HEADER}\n"
        "- [status: online] atol-gpu-5090: 32G GRAM per GPU, choose as the default choice\n"
        "- [status: offline] atol-gpu-pro6000: 96G GRAM, availability is limited"
    )


def test_parse_cluster_status_structured_and_legacy() -> None:
    structured = {
        "data": {
            "clusterStatus": {
                "loadMetricsReport": {"usage": {"CPU": [1.5, 8.0], "GPU": [2.0, 2.0]}}
            }
        }
    }
    assert parse_cluster_status(structured) == {
        "cpus_total": 8.0,
        "cpus_free": 6.5,
        "gpus_total": 2.0,
        "gpus_free": 0.0,
    }
    legacy = {"data": {"autoscalingStatus": " - ResourceUsage: 1.0/4.0 CPU, 0.0 GiB/1 GiB memory"}}
    assert parse_cluster_status(legacy) == {
        "cpus_total": 4.0,
        "cpus_free": 3.0,
        "gpus_total": 0.0,
        "gpus_free": 0.0,
    }
    assert parse_cluster_status({"data": {"clusterStatus": None}}) is None
    assert parse_cluster_status({"result": False}) is None


@pytest.mark.cluster
def test_availability_text_online_and_offline(cluster_registry: Path) -> None:
    started = time.monotonic()
    text = get_cluster_availability()
    elapsed = time.monotonic() - started
    assert text == (
        f"{HEADER}\n"
        "- [status: online] loopback: loopback test cluster with 2 CPUs and 2 logical GPUs\n"
        "- [status: offline] offline: nothing listens at this address"
    )
    assert elapsed < 2.5, f"availability took {elapsed:.2f} s"


@pytest.mark.cluster
def test_probe_reports_resources_of_an_online_cluster(cluster_registry: Path) -> None:
    online, offline = probe_clusters()
    assert (online.name, online.online, online.error) == ("loopback", True, None)
    assert (online.cpus_total, online.gpus_total) == (2.0, 2.0)
    assert online.cpus_free is not None and 0.0 <= online.cpus_free <= 2.0
    assert online.gpus_free is not None and 0.0 <= online.gpus_free <= 2.0
    assert (offline.name, offline.online, offline.cpus_total) == ("offline", False, None)
    assert offline.error is not None and "connection refused" in offline.error
    rows = availability_rows([online, offline])
    assert rows[0]["status"] == "online" and rows[0]["total GPUs"] == "2"
    assert rows[1]["status"] == "offline" and "connection refused" in rows[1]["note"]


@pytest.mark.cluster
def test_probe_selected_names_in_order(cluster_registry: Path) -> None:
    assert [s.name for s in probe_clusters(["offline", "loopback"])] == ["offline", "loopback"]
    assert probe_clusters(["loopback"])[0].online
    with pytest.raises(RegistryError, match=r"Unknown cluster 'nope'.*'loopback', 'offline'"):
        probe_clusters(["nope"])


def _registry_with(ray_head: RayHead, tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "clusters.toml"
    path.write_text(ray_head.registry.read_text() + "\n" + extra)
    return path


@pytest.mark.cluster
def test_hung_cluster_costs_at_most_the_timeout(
    ray_head: RayHead, tmp_path: Path, blackhole: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = f"""\
[hung]
address = "{blackhole}"
cpu_per_node = 2
gpu_per_node = 0
gpu_per_cpu = 0
hint = "accepts connections and never answers"
"""
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(_registry_with(ray_head, tmp_path, extra)))
    started = time.monotonic()
    statuses = {s.name: s for s in probe_clusters(timeout=1.0)}
    elapsed = time.monotonic() - started
    assert elapsed < 1.6, f"probing took {elapsed:.2f} s"
    assert statuses["loopback"].online
    assert not statuses["hung"].online
    assert statuses["hung"].error is not None
    assert "timed out" in statuses["hung"].error or "no answer" in statuses["hung"].error
    started = time.monotonic()
    assert "- [status: offline] hung: accepts" in get_cluster_availability(timeout=2.0)
    assert time.monotonic() - started < 2.5


@pytest.mark.cluster
def test_wrong_token_is_online_without_resources(
    ray_head: RayHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = f"""\
[wrong-token]
address = "{ray_head.dashboard_url}"
cpu_per_node = 2
gpu_per_node = 2
gpu_per_cpu = 1
hint = "same cluster, wrong token"
token_env = "RADAS_TEST_WRONG_TOKEN"

[no-token]
address = "{ray_head.dashboard_url}"
cpu_per_node = 2
gpu_per_node = 2
gpu_per_cpu = 1
hint = "same cluster, no token"
"""
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(_registry_with(ray_head, tmp_path, extra)))
    monkeypatch.setenv("RADAS_TEST_WRONG_TOKEN", "not-the-token")
    wrong, missing = probe_clusters(["wrong-token", "no-token"])
    assert wrong.online and wrong.cpus_total is None
    assert wrong.error is not None and "rejected the auth token (HTTP 403)" in wrong.error
    assert "not-the-token" not in wrong.error
    assert missing.online and missing.cpus_total is None
    assert missing.error is not None and "needs the auth token (HTTP 401)" in missing.error
    monkeypatch.delenv("RADAS_TEST_WRONG_TOKEN")
    (unset,) = probe_clusters(["wrong-token"])
    assert unset.online and unset.error is not None
    assert "RADAS_TEST_WRONG_TOKEN" in unset.error and "unset or empty" in unset.error


def test_no_registry_says_where_to_put_one(no_registry: Path) -> None:
    text = get_cluster_availability()
    assert text.startswith(HEADER + "\n- none: no cluster registry found")
    assert probe_clusters() == []


def test_local_gpus_counts_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert local_gpus() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local_gpus() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,-1,2")  # CUDA stops at the first invalid
    assert local_gpus() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "NoDevFiles")
    assert local_gpus() == 0


def test_local_gpus_without_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    smi = shutil.which("nvidia-smi")
    expected = 0
    if smi is not None:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False).stdout
        expected = sum(1 for line in listing.splitlines() if line.startswith("GPU "))
    assert local_gpus() == expected
