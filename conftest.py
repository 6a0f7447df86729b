"""Setup for every test run: loopback-only Ray, and the docstring examples' environment."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem

# Loaded before any test module: every Ray the tests start (the local Ray of local runs, a
# job's driver) binds 127.0.0.1 only. Unset, a local Ray listens on all interfaces; Ray reads
# the variable when `ray` is first imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long files first: a file with a ``longest`` test, then one with a ``slow`` test.

    A parallel run (pytest-xdist ``--dist loadfile --no-loadscope-reorder``, as
    ``scripts/test.sh`` runs it) hands files to its workers in this order, so the soak does
    not start last on one worker while the other has finished. Without that option, xdist
    hands out the files with the most tests first instead.
    The order within a file, and among files of one kind, is unchanged.
    """
    rank: dict[Path, int] = {}
    for item in items:
        mine = (
            0 if item.get_closest_marker("longest") else 1 if item.get_closest_marker("slow") else 2
        )
        rank[item.path] = min(mine, rank.get(item.path, mine))
    items.sort(key=lambda item: rank[item.path])


@pytest.fixture(autouse=True)
def _doctest_environment(request: pytest.FixtureRequest) -> Iterator[None]:
    """Give each docstring example no SMTP settings and private temporary folders.

    The examples set environment variables (``RADAS_SMTP_HOST``, ``RADAS_DATA_ROOT``...) as a
    user would; the environment and ``tempfile.tempdir`` are put back afterwards, so nothing
    leaks into later tests.
    """
    if not isinstance(request.node, DoctestItem):
        yield
        return
    tmp_path: Path = request.getfixturevalue("tmp_path")
    saved_env, saved_tempdir = dict(os.environ), tempfile.tempdir
    for name in [n for n in os.environ if n.startswith("RADAS_SMTP_")]:
        del os.environ[name]
    os.environ["RADAS_DATA_ROOT"] = os.environ["RADAS_COLD_DATA_ROOT"] = "/unused"
    tempfile.tempdir = str(tmp_path)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        for name in set(os.environ) - set(saved_env):
            del os.environ[name]
        os.environ.update(saved_env)
