"""rwandb / rswanlab: no-ops when disabled, clear errors, real offline runs when installed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import radas_flows.rswanlab as rswanlab
import radas_flows.rwandb as rwandb
from radas_flows.secrets import REDACTED, registered_secrets

WANDB_KEY = "0123456789abcdef0123456789abcdef0badc0de"
SWANLAB_KEY = "swanlab-key-1f2e3d4c5b6a79880"
DB_PASSWORD = "db-pw-7e8f9a0b"

TRACKERS: list[tuple[str, Callable[..., Any], Callable[..., Any], Callable[..., Any]]] = [
    ("wandb", rwandb.rwandb_init, rwandb.rwandb_log, rwandb.rwandb_finish),
    ("swanlab", rswanlab.rswanlab_init, rswanlab.rswanlab_log, rswanlab.rswanlab_finish),
]
IDS = [t[0] for t in TRACKERS]


def _files_containing(root: Path, needle: str) -> list[Path]:
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


@pytest.mark.parametrize(("name", "init", "log", "finish"), TRACKERS, ids=IDS)
@pytest.mark.parametrize(
    "config",
    [
        {"a": 1},
        {"a": 1, "wandb": {"enable": False, "api_key": "k"}, "swanlab": {"enable": False}},
        {"a": 1, "wandb": {"api_key": "k"}, "swanlab": {"api_key": "k"}},
    ],
    ids=["missing", "disabled", "enable-absent"],
)
def test_disabled_or_missing_section_is_a_no_op(
    name: str,
    init: Callable[..., Any],
    log: Callable[..., Any],
    finish: Callable[..., Any],
    config: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # would fail any import of the package
    assert init(config) is None
    assert log({"score": 1.0}) is None
    assert finish() is None


@pytest.mark.parametrize(("name", "init", "log", "finish"), TRACKERS, ids=IDS)
def test_enabled_without_package_names_the_extra(
    name: str,
    init: Callable[..., Any],
    log: Callable[..., Any],
    finish: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # makes `import <name>` raise ImportError
    with pytest.raises(ImportError, match=rf"pip install 'radas-flows\[{name}\]'"):
        init({name: {"enable": True, "api_key": "k"}})


@pytest.mark.parametrize(("name", "init", "log", "finish"), TRACKERS, ids=IDS)
def test_redacted_api_key_is_refused(
    name: str,
    init: Callable[..., Any],
    log: Callable[..., Any],
    finish: Callable[..., Any],
) -> None:
    pytest.importorskip(name)
    with pytest.raises(ValueError, match=r"redaction placeholder '\*\*\*'.*restore_secrets"):
        init({name: {"enable": True, "api_key": REDACTED}})


@pytest.mark.parametrize(("name", "init", "log", "finish"), TRACKERS, ids=IDS)
def test_section_must_be_a_dict(
    name: str,
    init: Callable[..., Any],
    log: Callable[..., Any],
    finish: Callable[..., Any],
) -> None:
    with pytest.raises(TypeError, match=rf"config\['{name}'\] must be a dict"):
        init({name: True})


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
        (tmp_path / var.lower()).mkdir()
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # a ~/.netrc would land here
    yield tmp_path
    rwandb.rwandb_finish()
    wandb.teardown()


def test_wandb_offline_run_records_metrics_and_redacted_config(
    wandb_offline: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = {
        "lr": 0.1,
        "db_password": DB_PASSWORD,
        "wandb": {"enable": True, "api_key": WANDB_KEY, "init_kwargs": {"project": "radas-test"}},
    }

    run = rwandb.rwandb_init(config)

    assert run is not None
    assert run.config["lr"] == 0.1
    assert run.config["db_password"] == REDACTED
    assert "wandb" not in run.config
    assert WANDB_KEY in registered_secrets()
    rwandb.rwandb_log({"radas_score": 0.93})
    rwandb.rwandb_log({"radas_score": 0.95}, step=5)
    rwandb.rwandb_finish()
    assert rwandb.rwandb_log({"radas_score": 1.0}) is None  # finished: no-op

    # wandb's service process writes the run file; shutting it down flushes what it holds
    # (under load, finish() can return before the records reach the file).
    pytest.importorskip("wandb").teardown()
    run_files = list((wandb_offline / "wandb_dir").rglob("*.wandb"))
    assert len(run_files) == 1
    deadline = time.monotonic() + 30
    while b"radas_score" not in run_files[0].read_bytes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert b"radas_score" in run_files[0].read_bytes()
    assert _files_containing(wandb_offline, WANDB_KEY) == []
    assert _files_containing(wandb_offline, DB_PASSWORD) == []
    out, err = capfd.readouterr()
    assert WANDB_KEY not in out + err


def test_wandb_init_finishes_a_run_left_open(wandb_offline: Path) -> None:
    section = {"enable": True, "init_kwargs": {"project": "radas-test"}}
    first = rwandb.rwandb_init({"trial": 1, "wandb": section})
    second = rwandb.rwandb_init({"trial": 2, "wandb": section})
    assert first is not second
    assert first.id != second.id
    assert second.config["trial"] == 2
    rwandb.rwandb_finish()
    assert len(list((wandb_offline / "wandb_dir").rglob("*.wandb"))) == 2


@pytest.fixture
def swanlab_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    pytest.importorskip("swanlab")
    monkeypatch.delenv("SWANLAB_API_KEY", raising=False)
    monkeypatch.delenv("SWANLAB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    rswanlab.rswanlab_finish()


def test_swanlab_offline_run_records_metrics_and_redacted_config(
    swanlab_offline: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log_dir = swanlab_offline / "swanlog"
    config = {
        "lr": 0.1,
        "db_password": DB_PASSWORD,
        "swanlab": {
            "enable": True,
            "api_key": SWANLAB_KEY,
            # offline: no login (a login would need the network, which this test does not have)
            "init_kwargs": {"project": "radas-test", "mode": "offline", "log_dir": str(log_dir)},
        },
    }

    run = rswanlab.rswanlab_init(config)

    assert run is not None
    assert SWANLAB_KEY in registered_secrets()
    rswanlab.rswanlab_log({"radas_score": 0.93})
    rswanlab.rswanlab_log({"radas_score": 0.95}, step=5)
    rswanlab.rswanlab_finish()

    config_files = list(log_dir.rglob("config.yaml"))
    assert len(config_files) == 1
    recorded = config_files[0].read_text()
    assert "lr" in recorded and REDACTED in recorded and "swanlab" not in recorded
    assert _files_containing(log_dir, "radas_score") != []
    assert _files_containing(swanlab_offline, SWANLAB_KEY) == []
    assert _files_containing(swanlab_offline, DB_PASSWORD) == []
    out, err = capfd.readouterr()
    assert SWANLAB_KEY not in out + err
