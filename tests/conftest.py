"""Session-wide test setup: a real Prefect test API, private results folders, a 2-CPU local Ray."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# A real SMTP server (aiosmtpd on 127.0.0.1) for every test that needs one.
from tests.smtp_server import smtp_env, smtp_server, smtp_server_factory  # noqa: F401

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RADAS_LOCAL_NUM_CPUS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private results root for the whole session."""
    root = tmp_path_factory.mktemp("radas-results")
    old = os.environ.get("RADAS_RESULTS_ROOT")
    os.environ["RADAS_RESULTS_ROOT"] = str(root)
    yield root
    if old is None:
        os.environ.pop("RADAS_RESULTS_ROOT", None)
    else:
        os.environ["RADAS_RESULTS_ROOT"] = old


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real temporary Prefect API server (SQLite) for the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def radas_env(prefect_api: None, results_root: Path) -> Iterator[Path]:
    """Everything a local run needs: Prefect API and results root; Ray starts on first use."""
    yield results_root
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh experiment directory, made the working directory (as radas users `cd` there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
