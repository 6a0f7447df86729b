"""Fixtures for cluster tests: a loopback Ray head for the session and registries naming it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clusters.loopback_ray import RayHead, start_head, stop_head


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """A loopback `ray start --head` cluster for the whole session, stopped at the end."""
    head = start_head()
    print(f"\nloopback Ray head ready in {head.start_seconds:.1f} s at {head.dashboard_url}")
    try:
        yield head
    finally:
        print(f"\nloopback Ray head stopped in {stop_head(head):.1f} s")


@pytest.fixture
def cluster_registry(ray_head: RayHead, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point RADAS_CLUSTERS_FILE at the session's registry for one test."""
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(ray_head.registry))
    return ray_head.registry


@pytest.fixture
def no_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No registry anywhere: no RADAS_CLUSTERS_FILE, an empty cwd and an empty HOME."""
    monkeypatch.delenv("RADAS_CLUSTERS_FILE", raising=False)
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return tmp_path


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An address that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
