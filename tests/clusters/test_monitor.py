"""Plain decision functions of cluster runs: log relay, polling, job runtime_env and package."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from radas_flows.clusters.job_log import LogRelay, poll_interval
from radas_flows.clusters.job_package import (
    JOB_STOP_ENV,
    build_job_runtime_env,
    write_job_package,
)
from radas_flows.driver import DriverSpec, decode_spec
from radas_flows.secret_plan import TrialSecrets
from radas_flows.targets.base import PROGRESS_MARKER
from radas_flows.targets.cluster import KEEP_JOB_ENV, keep_job_on_exit


def test_progress_marker_matches_the_driver() -> None:
    from radas_flows._tune_callbacks import PROGRESS_MARKER as DRIVER_MARKER

    assert PROGRESS_MARKER == DRIVER_MARKER


def test_relay_keeps_order_and_folds_repeats() -> None:
    relay = LogRelay()
    items = relay.feed('x\ny\ny\ny\n[radas-progress] {"finished": 1, "total": 4}\nz\n')
    assert items == [
        "x",
        "y",
        "(previous line repeated 2 more times)",
        {"finished": 1, "total": 4},
        "z",
    ]
    # A line split across two polls is relayed once, whole.
    assert relay.feed("hal") == []
    assert relay.feed("f a line\nnext\n") == ["half a line", "next"]
    # Repeats that run to the end of the log are counted on flush.
    assert relay.feed("same\nsame\nsame\n") == ["same"]
    assert relay.flush() == ["(previous line repeated 2 more times)"]
    relay.feed("tail without newline")
    assert relay.flush() == ["tail without newline"]


def test_relay_truncates_long_lines_and_floods() -> None:
    relay = LogRelay(max_lines=3, max_line_chars=10)
    items = relay.feed("".join(f"line {i}\n" for i in range(10)) + "x" * 25 + "\n")
    assert items == ["line 0", "line 1", "line 2", "... 8 more lines not shown here"]
    assert LogRelay(max_line_chars=10).feed("y" * 25 + "\n") == ["yyyyyyyyyy ... (25 characters)"]


def test_relay_passes_malformed_progress_lines_through() -> None:
    relay = LogRelay()
    assert relay.feed("[radas-progress] {not json\n") == ["[radas-progress] {not json"]
    prefixed = relay.feed('(driver) [radas-progress] {"finished": 2, "total": 2}\n')
    assert prefixed == [{"finished": 2, "total": 2}]


def test_poll_interval_grows_with_the_log() -> None:
    assert poll_interval(0) == 1.0
    assert poll_interval(10_000_000) == 5.0
    assert poll_interval(10**9) == 10.0


def test_keep_job_on_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEEP_JOB_ENV, raising=False)
    assert keep_job_on_exit() is False
    monkeypatch.setenv(KEEP_JOB_ENV, "1")
    assert keep_job_on_exit() is True
    monkeypatch.setenv(KEEP_JOB_ENV, "0")
    assert keep_job_on_exit() is False


def test_job_runtime_env_adds_modules_and_stop_settings(tmp_path: Path) -> None:
    env = build_job_runtime_env(
        {"env_vars": {"A": "1", "RAY_JOB_STOP_WAIT_TIME_S": "5"}, "py_modules": ["/mine"]},
        str(tmp_path),
        extra_modules=["/site/radas_flows", "/tmp/radas_job_x"],
    )
    assert env["working_dir"] == str(tmp_path.resolve())
    assert env["py_modules"] == ["/mine", "/site/radas_flows", "/tmp/radas_job_x"]
    assert env["env_vars"] == {**JOB_STOP_ENV, "A": "1", "RAY_JOB_STOP_WAIT_TIME_S": "5"}
    assert env["env_vars"]["RAY_JOB_STOP_SIGNAL"] == "SIGINT"
    alone = build_job_runtime_env({"image_uri": "img"}, str(tmp_path), extra_modules=["/x"])
    assert alone == {"image_uri": "img"}


def test_job_package_runs_the_driver_with_its_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = DriverSpec(
        trainable="trainable:trainable",
        param_space={"a": 1},
        tuner_init_kwargs={},
        storage_path="/results/erin",
        name="exp",
        resources={"cpu": 1.0},
        secrets=TrialSecrets(config_env={"api_key": "RADAS_TEST_API_KEY"}),
        run_id="abc123",
    )
    package = write_job_package(spec, tmp_path)
    assert package.name == "radas_job_abc123"
    main_source = (package / "__main__.py").read_text()
    assert 'main(["--spec", SPEC])' in main_source
    assert "RADAS_TEST_API_KEY" not in main_source  # the spec travels only as the package's data
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module(package.name)
        decoded = decode_spec(module.SPEC)
    finally:
        sys.modules.pop(package.name, None)
    assert decoded.secrets.config_env == {"api_key": "RADAS_TEST_API_KEY"}
    assert (decoded.trainable, decoded.run_id, decoded.experiment_path) == (
        "trainable:trainable",
        "abc123",
        "/results/erin/exp",
    )
