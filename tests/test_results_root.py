"""A results root that cannot be written (read-only, full, a file) stops a run before it starts."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer
from ray import tune

from radas_flows import run_experiment
from radas_flows.errors import ResultsRootError, ResultsWriteError
from tests.prefect_reads import flow_run_named, task_runs_of
from tests.trainables_for_tests import marked


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of our own (mounting needs root; skipped where that is not allowed)."""
    point = tmp_path / "mnt"
    point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _full(point: Path) -> Path:
    try:
        with (point / "filler").open("wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    except OSError:
        pass
    return point


def _read_only(point: Path) -> Path:
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
    return point


def _a_file(point: Path) -> Path:
    (point / "root").write_text("a file, not a folder\n")
    return point / "root"


@pytest.mark.usefixtures("radas_env")
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_read_only, "Read-only file system"),
        (_full, "No space left on device"),
        (_a_file, "NotADirectoryError: Not a directory"),
    ],
)
def test_an_unwritable_results_root_stops_the_run_before_anything_runs(
    make: object, reason: str, mounted: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make(mounted)  # type: ignore[operator]
    monkeypatch.setenv("RADAS_RESULTS_ROOT", str(root))
    marks = workdir / "marks"
    marks.mkdir()
    name = f"root-{make.__name__.strip('_')}"  # type: ignore[attr-defined]
    with pytest.raises(ResultsRootError) as error:
        asyncio.run(
            run_experiment(
                user_name="tester",
                trainable=marked,
                experiment_name=name,
                param_space={"a": tune.grid_search([1, 2]), "sleep": 0.0, "marks": str(marks)},
                run_choice="run",
            )
        )
    text = str(error.value)
    print(f"\nthe user sees: {text}")
    assert text.startswith(f"The results folder {root}/tester cannot be written (")
    assert reason in text and "so nothing was started" in text
    assert "RADAS_RESULTS_ROOT for local runs" in text
    assert not list(marks.iterdir())  # no trial ran
    runs = task_runs_of(flow_run_named(name).id)
    assert [r.name.rsplit("-", 1)[0] for r in runs if r.name.startswith("experiment_")] == []


def _s3_env(workdir: Path, monkeypatch: pytest.MonkeyPatch, port: int) -> str:
    """Test credentials and the endpoint of a moto server on 127.0.0.1:``port``."""
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing-key-id",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key-51f0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
    }.items():
        monkeypatch.setenv(key, value)
    return endpoint


def _s3_up(port: int, endpoint: str) -> ThreadedMotoServer:
    """A moto S3 server on 127.0.0.1:``port`` with the bucket ``results``; the caller stops it."""
    import boto3

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="results")
    except BaseException:
        server.stop()
        raise
    return server


@pytest.mark.usefixtures("radas_env")
def test_an_s3_results_root_that_is_down_stops_the_run_before_anything_runs(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.clusters.loopback_ray import free_port

    port = free_port()
    endpoint = _s3_env(workdir, monkeypatch, port)
    _s3_up(port, endpoint).stop()  # S3 goes away before the run
    monkeypatch.setenv("RADAS_RESULTS_ROOT", "s3://results/radas")
    marks = workdir / "marks"
    marks.mkdir()
    started = time.monotonic()
    with pytest.raises(ResultsRootError) as error:
        asyncio.run(
            run_experiment(
                user_name="tester",
                trainable=marked,
                experiment_name="root-s3-down",
                param_space={"a": tune.grid_search([1, 2]), "sleep": 0.0, "marks": str(marks)},
                run_choice="run",
            )
        )
    text = str(error.value)
    print(f"\nthe user sees, after {time.monotonic() - started:.1f} s: {text}")
    assert text.startswith("The results folder s3://results/radas/tester cannot be written (")
    assert "testing-secret-key-51f0" not in text
    assert not list(marks.iterdir())


def _fill_after(point: Path, marks: Path, finished: int) -> threading.Thread:
    """Fill the file system at ``point`` once ``finished`` trials are done (a disk filling up)."""

    def fill() -> None:
        deadline = time.monotonic() + 120
        while len(list(marks.glob("done-*"))) < finished and time.monotonic() < deadline:
            time.sleep(0.02)
        _full(point)

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    return thread


@pytest.mark.usefixtures("radas_env")
def test_a_results_root_that_fills_up_mid_run_loses_no_computed_result(
    mounted: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADAS_RESULTS_ROOT", str(mounted))
    monkeypatch.setenv("XDG_CACHE_HOME", str(workdir / "cache"))
    marks = workdir / "marks"
    marks.mkdir()
    space = {"a": tune.grid_search(list(range(8))), "sleep": 0.5, "marks": str(marks)}

    def sweep() -> dict[str, object]:
        return asyncio.run(
            run_experiment(
                user_name="tester",
                trainable=marked,
                experiment_name="fills-up",
                param_space=space,
                run_choice="run",
                yes=True,
            )
        )

    filler = _fill_after(mounted, marks, 3)
    with pytest.raises(ResultsWriteError) as error:
        sweep()
    filler.join(timeout=10)
    text = str(error.value)
    print(f"\nthe user sees: {text}")
    assert f"Could not write to the results folder {mounted}/tester" in text
    assert "No space left on device" in text and "bytes free there" in text
    assert "The analysis of all 8 rows was saved in" in text
    rescued = list((workdir / "cache" / "radas_flows" / "rescued").glob("*/radas_results.csv"))
    assert len(rescued) == 1 and str(rescued[0]) in text
    import pandas as pd

    table = pd.read_csv(rescued[0])
    assert sorted(zip(table["config/a"], table["score"], strict=True)) == [(a, a) for a in range(8)]
    assert len(error.value.results["df"]) == 8  # type: ignore[attr-defined]
    starts = sorted(p.name.split("-")[1] for p in marks.glob("start-*"))
    assert starts == [str(a) for a in range(8)]  # each trial ran once
    # What the message says to do works: free space, run again, every row is stored.
    (mounted / "filler").unlink()
    if "have no result file in" in text:
        assert "run the sweep again (run_choice='run')" in text
    else:
        assert "dos=['analyze'] writes the table there" in text
    result = sweep()
    assert len(result["df"]) == 8  # type: ignore[arg-type]
    assert list(mounted.rglob("radas_results.csv"))


@pytest.mark.slow
@pytest.mark.usefixtures("radas_env")
def test_an_s3_results_root_that_goes_down_mid_run_loses_no_computed_result(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.fs

    from tests.clusters.loopback_ray import free_port

    port = free_port()
    endpoint = _s3_env(workdir, monkeypatch, port)
    monkeypatch.setenv("XDG_CACHE_HOME", str(workdir / "cache"))
    monkeypatch.setenv("RADAS_RESULTS_ROOT", "s3://results/radas")
    server = _s3_up(port, endpoint)
    stopped = threading.Event()
    try:
        marks = workdir / "marks"
        marks.mkdir()

        def stop_after_first() -> None:
            deadline = time.monotonic() + 120
            while not list(marks.glob("done-*")) and time.monotonic() < deadline:
                time.sleep(0.02)
            server.stop()  # S3 goes away with the first trial done
            stopped.set()

        threading.Thread(target=stop_after_first, daemon=True).start()
        space = {"a": tune.grid_search(list(range(4))), "sleep": 0.5, "marks": str(marks)}
        with pytest.raises(ResultsWriteError) as error:
            asyncio.run(
                run_experiment(
                    user_name="tester",
                    trainable=marked,
                    experiment_name="s3-goes-down",
                    param_space=space,
                    run_choice="run",
                )
            )
    finally:
        if not stopped.wait(timeout=5):
            server.stop()
    text = str(error.value)
    print(f"\nthe user sees: {text}")
    assert "testing-secret-key-51f0" not in text
    assert "Could not store the results in s3://results/radas/tester/" in text
    assert "Every trial's files were kept on this machine" in text
    assert "the analysis of all 4 rows in" in text
    assert len(error.value.results["df"]) == 4  # type: ignore[attr-defined]
    copies = list((workdir / "cache" / "radas_flows" / "rescued").glob("*/*"))
    assert len(copies) == 1 and str(copies[0]) in text
    assert len(list(copies[0].glob("marked_*/result.json"))) == 4
    starts = sorted(p.name.split("-")[1] for p in marks.glob("start-*"))
    assert starts == ["0", "1", "2", "3"]  # each trial ran once
    # What the message says to do works: S3 back, the folder copied there, analyze reads it.
    server = _s3_up(port, endpoint)
    try:
        target = text.split("copy that folder's contents to ")[1].split(";")[0]
        s3 = pyarrow.fs.S3FileSystem(endpoint_override=endpoint, region="us-east-1")
        pyarrow.fs.copy_files(
            str(copies[0]),
            target.removeprefix("s3://"),
            source_filesystem=pyarrow.fs.LocalFileSystem(),
            destination_filesystem=s3,
        )
        result = asyncio.run(
            run_experiment(
                user_name="tester",
                trainable=marked,
                experiment_name="s3-goes-down",
                param_space=space,
                run_choice="run",
                dos=["analyze"],
            )
        )
    finally:
        server.stop()
    assert len(result["df"]) == 4  # type: ignore[arg-type]
