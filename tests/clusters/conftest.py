"""Fixtures for cluster tests: no registry at all, and a server that never answers.

The session's loopback head (`ray_head`) and its registry (`cluster_registry`) are in
tests/conftest.py, shared with the placement-parametrized flow tests.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest


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
