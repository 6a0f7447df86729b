"""A cluster job stops when the flow that submitted it is gone: a heartbeat and its watch.

A flow that is cancelled or crashes stops its job itself; a flow process killed with SIGKILL
(or whose machine is lost) cannot. So the submitting flow writes a heartbeat file beside the
results while it follows the job, and the job's driver watches it: when the heartbeat has not
changed for ``RADAS_FOLLOWER_TIMEOUT_S`` seconds (default 60), the driver interrupts Tune as a
stop request does (the trials stop, the experiment is saved) and the job ends FAILED with a
line saying why. Only changes of the file count, read on the job's own clock, so the two
machines' clocks need not agree. With ``RADAS_KEEP_JOB_ON_EXIT=1`` nothing is watched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from typing import Any

from radas_flows.errors import RadasValueError
from radas_flows.storage import Storage

__all__ = [
    "DEFAULT_FOLLOWER_TIMEOUT_S",
    "FOLLOWER_TIMEOUT_ENV",
    "Heartbeat",
    "Watch",
    "follower_timeout",
    "heartbeat_path",
]

FOLLOWER_TIMEOUT_ENV = "RADAS_FOLLOWER_TIMEOUT_S"
DEFAULT_FOLLOWER_TIMEOUT_S = 60.0
_FOLDER = ".radas-followers"


def follower_timeout() -> float:
    """Seconds without a heartbeat after which a job stops (``RADAS_FOLLOWER_TIMEOUT_S``).

    Example:
        >>> follower_timeout()  # doctest: +SKIP
        60.0
    """
    raw = os.environ.get(FOLLOWER_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_FOLLOWER_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 5:  # also NaN
        raise RadasValueError(
            f"{FOLLOWER_TIMEOUT_ENV}={raw!r} must be a number of seconds of at least 5 (how "
            f"long a cluster job runs on after its flow is gone); unset it for "
            f"{DEFAULT_FOLLOWER_TIMEOUT_S:g}."
        )
    return value


def heartbeat_path(storage_path: str, run_id: str) -> str:
    """Where the heartbeat of run ``run_id`` lives: ``<results root>/<user>/.radas-followers/``.

    Example:
        >>> heartbeat_path("/results/erin", "abc123")
        '/results/erin/.radas-followers/abc123'
    """
    return f"{storage_path.rstrip('/')}/{_FOLDER}/{run_id}"


_lock = threading.Lock()
_unclaimed: dict[str, Heartbeat] = {}  # started at submission, not yet followed


def _interval(timeout: float) -> float:
    return min(10.0, max(1.0, timeout / 6))


class Heartbeat:
    """The submitting flow's side: rewrite the heartbeat file every few seconds while it follows."""

    def __init__(
        self, path: str, timeout: float, logger: Any = None, *, until: float | None = None
    ) -> None:
        self.path = path
        self.interval = _interval(timeout)
        self.logger = logger
        self.until = until  # time.monotonic() at which an unclaimed heartbeat gives up
        self._beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    def beat(self) -> None:
        """Write one heartbeat (a new value each time); a failure is logged once, not raised."""
        self._beats += 1
        try:
            Storage(self.path).write_text(
                json.dumps({"beat": self._beats, "pid": os.getpid(), "at": time.time()})
            )
            self._failed = False
        except Exception as e:
            if not self._failed and self.logger is not None:
                self.logger.warning(
                    "Could not write the heartbeat %s that keeps the cluster job running (%s: "
                    "%s); the job stops itself if this lasts %s s.",
                    self.path,
                    type(e).__name__,
                    e,
                    f"{self.interval * 6:g}",
                )
            self._failed = True

    def start(self) -> Heartbeat:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="radas-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.until is not None and time.monotonic() > self.until:
                with _lock:  # nobody followed the job: let it stop on its own
                    _unclaimed.pop(self.path, None)
                return
            self.beat()

    @classmethod
    def submitted(cls, path: str, timeout: float, logger: Any = None) -> Heartbeat:
        """Start beating for a job just submitted, until :meth:`claim` takes it over.

        Unclaimed (the flow never got to follow the job), it stops after ``10 * timeout`` s
        (at least 5 minutes), and the job stops within its timeout after that.
        """
        heartbeat = cls(path, timeout, logger, until=time.monotonic() + max(300.0, 10 * timeout))
        with _lock:
            _unclaimed[path] = heartbeat
        return heartbeat.start()

    @classmethod
    def claim(cls, path: str, timeout: float, logger: Any = None) -> Heartbeat:
        """The heartbeat of a job this process submitted (beating on), or a new one started."""
        with _lock:
            heartbeat = _unclaimed.pop(path, None)
        if heartbeat is not None and heartbeat._thread is not None and heartbeat._thread.is_alive():
            heartbeat.until = None
            heartbeat.logger = logger or heartbeat.logger
            return heartbeat
        return cls(path, timeout, logger).start()

    def stop(self, *, remove: bool = False) -> None:
        """Stop beating; ``remove`` deletes the file (the job then stops within its timeout)."""
        with _lock:
            if _unclaimed.get(self.path) is self:
                del _unclaimed[self.path]
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if remove:
            with contextlib.suppress(Exception):  # the job is over, or stops on its own
                Storage(self.path).remove()


class Watch:
    """The job's side: interrupt Tune once the heartbeat has not changed for ``timeout`` s."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="radas-watch", daemon=True)

    def _read(self) -> str | None:
        try:
            return Storage(self.path).read_text()
        except Exception:
            return None

    def start(self) -> Watch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        last, changed = self._read(), time.monotonic()
        while not self._stop.wait(_interval(self.timeout) / 2):
            now = self._read()
            if now is not None and now != last:
                last, changed = now, time.monotonic()
                continue
            if time.monotonic() - changed > self.timeout:
                self.fired = True
                print(self.message(), flush=True)
                os.kill(os.getpid(), signal.SIGINT)  # as a stop request: Tune saves and stops
                return

    def message(self) -> str:
        return (
            f"[radas] The flow that submitted this job has not been heard from for "
            f"{self.timeout:g} s (its process was killed or its machine is gone; heartbeat "
            f"{self.path}): stopping the trials so that the job does not run unattended. What "
            "finished is saved: analyze it with run_choice='attach' or continue it with "
            "run_choice='restore'. Set RADAS_KEEP_JOB_ON_EXIT=1 before running to keep jobs "
            "running without their flow."
        )
