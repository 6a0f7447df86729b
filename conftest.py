"""Setup for the docstring examples of radas_flows, which pytest runs with --doctest-modules."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem


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
