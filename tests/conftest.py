"""Session-wide setup: a Prefect test API, a private results root, a 2-CPU local Ray, a Ray head."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# A real SMTP server (aiosmtpd on 127.0.0.1) for every test that needs one.
from tests.clusters.loopback_ray import RayHead, start_head, stop_head
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
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh experiment directory, made the working directory (as radas users `cd` there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave with the session's result once pytest has reported it, skipping native teardown.

    This one process starts and stops Ray dozens of times, connects to loopback clusters and
    uses pyarrow's S3 client. Native threads of those sessions outlive them (gRPC timers and
    event engines, a Ray GCS-client IO thread, the AWS event loop), and C++ static destructors
    racing them at interpreter exit crashed the process once (SIGSEGV) after every test had
    passed. Nothing is left to do at that point: every fixture has stopped what it started and
    the report is written, so the exit code is the session's. ``RADAS_TESTS_NORMAL_EXIT=1``
    keeps the normal exit (with ``PYTHONFAULTHANDLER=1``, set by scripts/test.sh, a crash there
    prints every thread's stack).
    """
    status = config.stash.get(_EXIT_STATUS, None)
    if status is None or os.environ.get("RADAS_TESTS_NORMAL_EXIT") == "1":
        return
    import logging
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
