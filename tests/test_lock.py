"""The experiment lock on a real Prefect API: gone holders are released, live ones are not."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from ray import tune

from radas_flows.concurrency import ExperimentBusyError, experiment_lock, experiment_lock_name
from radas_flows.lock_holder import (
    local_death,
    process_start,
    read_record,
    this_holder,
    write_record,
)

ROOT = Path(__file__).resolve().parents[1]


def _lock(name: str) -> dict[str, Any]:
    return dict(user_name="u", full_name=f"_p_{name}", experiment_name=name, tags=[])


def _limit_names() -> list[str]:
    from prefect.client.orchestration import get_client

    names: list[str] = []
    with get_client(sync_client=True) as client:
        while page := client.read_global_concurrency_limits(limit=200, offset=len(names)):
            names += [limit.name for limit in page]
    return sorted(names)


def _hold_elsewhere(name: str, record: dict[str, Any]) -> UUID:
    """Take the slot through Prefect's API as a run on another machine would; its lease id."""
    from prefect.concurrency._sync import acquire_concurrency_slots_with_lease

    from radas_flows.concurrency import _ensure_limit

    _ensure_limit(name)
    lease = acquire_concurrency_slots_with_lease([name], 1, max_retries=0, lease_duration=60)
    write_record(name, {**record, "lease_id": str(lease.lease_id)})
    return lease.lease_id


class _Lines(logging.Handler):
    """The lock's log lines (Prefect's logging setup may stop them reaching caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def lock_log() -> Iterator[_Lines]:
    handler = _Lines()
    logger = logging.getLogger("radas_flows.concurrency")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


@pytest.mark.usefixtures("prefect_api")
def test_a_killed_holder_is_released_at_once_and_its_lease_ended(
    lock_log: _Lines,
) -> None:
    lock = _lock("killedholder")
    name = experiment_lock_name("u", "_p_killedholder", "killedholder")
    before = _limit_names()
    script = textwrap.dedent(f"""
        import time
        from radas_flows.concurrency import experiment_lock
        with experiment_lock(**{lock!r}):
            print("HELD", flush=True)
            time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": _api_url()}
    holder = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"HELD"
        record, _ = read_record(name)
        assert record is not None and record["pid"] == holder.pid
        with (
            pytest.raises(ExperimentBusyError, match="is already running"),
            experiment_lock(**lock),
        ):
            pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    started = time.monotonic()
    with experiment_lock(**lock, wait_s=0):
        assert time.monotonic() - started < 30  # at once, not after the 60 s lease
        mine, _ = read_record(name)
        assert mine is not None and mine["pid"] == os.getpid()
    assert f"process {holder.pid} on" in lock_log.text and "has exited" in lock_log.text
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    # The killed run's lease was ended, so it never expires on a later holder.
    gone = pytest.raises(PrefectHTTPStatusError, match="410")
    with get_client(sync_client=True) as client, gone:
        client.renew_concurrency_lease(UUID(record["lease_id"]), 60)
    assert _limit_names() == before  # and the limit went with the last holder


@pytest.mark.usefixtures("prefect_api")
def test_a_live_holder_elsewhere_blocks_and_one_whose_flow_run_crashed_does_not(
    lock_log: _Lines,
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed, Running

    lock = _lock("elsewhere")
    name = experiment_lock_name("u", "_p_elsewhere", "elsewhere")

    @flow(name="lock-holder-elsewhere")
    def placeholder() -> None:
        pass

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(placeholder, name="elsewhere", state=Running())
    record = {**this_holder(run.id), "host": "another-machine", "pid": 1}
    _hold_elsewhere(name, record)
    busy = pytest.raises(ExperimentBusyError, match=rf"in flow run 'elsewhere' \(id {run.id}\)")
    with busy, experiment_lock(**lock, wait_s=1.5):
        pass
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Crashed(message="killed"), force=True)
    with experiment_lock(**lock, wait_s=0):
        pass
    assert "its flow run 'elsewhere'" in lock_log.text and "is Crashed" in lock_log.text


@pytest.mark.usefixtures("prefect_api")
def test_a_holder_whose_lease_expired_is_cleared_if_gone_and_kept_if_alive(
    lock_log: _Lines,
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.concurrency._sync import release_concurrency_slots_with_lease
    from prefect.states import Running

    from radas_flows.concurrency import _read_limit

    @flow(name="lock-holder-expired")
    def placeholder() -> None:
        pass

    # A killed run whose lease the server let expire before the next run came (a loaded
    # server can take longer than the 60 s lease to answer): the slot is free, the record
    # stays and its flow run is still Running.
    dead = subprocess.Popen(["true"])
    dead.wait()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(placeholder, name="expired", state=Running())
    name = experiment_lock_name("u", "_p_expired", "expired")
    lease = _hold_elsewhere(name, {**this_holder(run.id), "pid": dead.pid})
    release_concurrency_slots_with_lease(lease)  # what the server does when a lease expires
    with experiment_lock(**_lock("expired"), wait_s=0):
        mine, _ = read_record(name)
        assert mine is not None and mine["pid"] == os.getpid()
    assert f"held by flow run {run.id} (process {dead.pid} on" in lock_log.text
    assert "had expired: its process" in lock_log.text
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state is not None and state.type.value == "CRASHED", state

    # A holder on another machine that still renews its record keeps the experiment.
    name = experiment_lock_name("u", "_p_alive", "alive")
    lease = _hold_elsewhere(name, {**this_holder(None), "host": "another-machine", "pid": 1})
    release_concurrency_slots_with_lease(lease)
    busy = pytest.raises(ExperimentBusyError, match="Experiment 'alive' of user 'u' is already")
    with busy, experiment_lock(**_lock("alive"), wait_s=0):
        pass
    limit = _read_limit(name)
    assert limit is not None and limit.active_slots == 0  # the slot was given back


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_holder_elsewhere_that_stops_renewing_is_released_after_the_bound(
    lock_log: _Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    import radas_flows.concurrency
    import radas_flows.lock_holder

    # The bound is 60 s (HOLDER_STALE_S); 15 s here tests the same path in a quarter the time.
    for module in (radas_flows.concurrency, radas_flows.lock_holder):
        monkeypatch.setattr(module, "HOLDER_STALE_S", 15.0)
    lock = _lock("silent")
    name = experiment_lock_name("u", "_p_silent", "silent")
    _hold_elsewhere(name, {**this_holder(None), "host": "another-machine", "pid": 1})
    started = time.monotonic()
    with experiment_lock(**lock, wait_s=120):
        waited = time.monotonic() - started
    assert 13 <= waited <= 60
    assert "has not renewed its hold for" in lock_log.text and "(more than 15 s)" in lock_log.text


@pytest.mark.slow
@pytest.mark.usefixtures("radas_env")
def test_twenty_experiments_in_a_row_leave_no_concurrency_limit(workdir: Path) -> None:
    from radas_flows import run_experiment
    from tests import trainables_for_tests as t

    before = _limit_names()
    for i in range(20):
        asyncio.run(
            run_experiment(
                user_name="tester",
                trainable=t.returning,
                experiment_name=f"row-{i}",
                param_space={"a": tune.grid_search([1])},
                run_choice="run",
                dos=["run"],
            )
        )
    assert _limit_names() == before


@pytest.mark.usefixtures("radas_env")
def test_two_users_run_the_same_experiment_name_at_once_without_a_clash(
    workdir: Path, results_root: Path
) -> None:
    from radas_flows import run_experiment
    from tests import trainables_for_tests as t

    marks = {user: workdir / user for user in ("ann", "ben")}

    async def both() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(
                run_experiment(
                    user_name=user,
                    trainable=t.marked,
                    experiment_name="shared name",
                    param_space={"a": tune.grid_search([0]), "sleep": 0.0, "marks": str(folder)},
                    run_choice="run",
                    dos=["run"],
                )
                for user, folder in marks.items()
            )
        )

    ours = {experiment_lock_name(user, "", "shared name").rsplit("-", 1)[0] for user in marks}
    for folder in marks.values():
        folder.mkdir()
        (folder / "hold").touch()  # no trial finishes until both runs hold their locks
    both_held = threading.Event()

    def release_when_both_hold() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            held = {name.rsplit("-", 1)[0] for name in _limit_names()}
            if ours <= held:
                both_held.set()
                break
            time.sleep(0.1)
        for folder in marks.values():
            (folder / "hold").unlink()

    # The thread sees this test's Prefect API (settings live in the context).
    releaser = threading.Thread(
        target=contextvars.copy_context().run, args=(release_when_both_hold,), daemon=True
    )
    releaser.start()
    ann, ben = asyncio.run(both())  # neither waits for the other nor is refused
    releaser.join(timeout=5)
    assert both_held.is_set()  # the two runs held their experiments' locks at the same time
    for result, user in ((ann, "ann"), (ben, "ben")):
        tuner = result["tuner"]
        assert [o["config"]["a"] for o in tuner.trial_outcomes()] == [0]
        assert {o["status"] for o in tuner.trial_outcomes()} == {"TERMINATED"}
        assert Path(tuner.experiment_path).parent == results_root / user  # its own folder
        assert {o["config"]["marks"] for o in tuner.trial_outcomes()} == {str(marks[user])}
    assert Path(ann["tuner"].experiment_path).is_dir()  # ben's run deleted nothing of ann's


@pytest.mark.usefixtures("prefect_api")
def test_a_slot_taken_just_now_with_no_holder_recorded_yet_blocks() -> None:
    from prefect.concurrency._sync import acquire_concurrency_slots_with_lease

    from radas_flows.concurrency import _ensure_limit

    name = experiment_lock_name("u", "_p_starting", "starting")
    _ensure_limit(name)  # a run between taking the slot and recording itself
    acquire_concurrency_slots_with_lease([name], 1, max_retries=0, lease_duration=60)
    busy = pytest.raises(ExperimentBusyError, match="Experiment 'starting' of user 'u' is already")
    with busy, experiment_lock(**_lock("starting"), wait_s=0):
        pass


def test_a_reused_pid_is_not_taken_for_the_holder() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        alive = {
            **this_holder(None),
            "pid": sleeper.pid,
            "process_start": process_start(sleeper.pid),
        }
        assert local_death(alive) is None
        reused = {**alive, "process_start": float(alive["process_start"]) - 3600}
        assert "now runs another program" in str(local_death(reused))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert "has exited" in str(local_death(alive))
