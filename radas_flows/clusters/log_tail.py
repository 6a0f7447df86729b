"""A Ray job's log followed incrementally: Ray's log tail stream, read in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

__all__ = ["LogTail"]

log = logging.getLogger(__name__)


class LogTail:
    """Follows one job's log with ``JobSubmissionClient.tail_job_logs`` (a websocket).

    Each chunk of the log crosses the network once, where downloading the whole log on every
    poll moves bytes that grow with the square of the run's length. The stream starts again
    after a dropped connection (Ray then replays the log from its start, so what was already
    received is skipped). :meth:`read` returns the text received since the last call;
    ``received`` counts the characters handed out. ``failed`` turns true when the stream
    cannot be (re)opened ``max_failures`` times in a row: the caller then reads the whole
    log instead, as before.

    Example:
        >>> tail = LogTail(client, "raysubmit_abc")  # doctest: +SKIP
        >>> tail.read()  # doctest: +SKIP
        'line 1\\nline 2\\n'
    """

    def __init__(self, client: Any, job_id: str, *, max_failures: int = 5) -> None:
        self._client, self._job_id, self._max_failures = client, job_id, max_failures
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._streamed = 0  # characters of the log taken from the stream (all connections)
        self.received = 0  # characters handed out by read()
        self.failed = False
        self.connected = False  # the stream delivers now (a chunk came since it last failed)
        self.ended = threading.Event()  # the stream closed normally: the job's log is complete
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._serve, name=f"radas-log-{job_id}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._follow())
            loop.run_until_complete(self._task)
        except (asyncio.CancelledError, Exception):
            pass
        finally:
            loop.close()

    async def _follow(self) -> None:
        failures = 0
        while failures < self._max_failures:
            skip = self._streamed  # a new connection replays the log from its start
            try:
                async for chunk in self._client.tail_job_logs(self._job_id):
                    failures, self.connected = 0, True
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    if chunk:
                        with self._lock:
                            self._pending.append(chunk)
                            self._streamed += len(chunk)
                self.ended.set()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a dropped or refused connection: open it again
                failures, self.connected = failures + 1, False
                log.debug("log stream of %s failed (%d): %r", self._job_id, failures, e)
                await asyncio.sleep(min(2.0**failures, 10.0))
        self.failed = True

    def read(self) -> str:
        """The log text received since the last call (may be empty)."""
        with self._lock:
            text, self._pending = "".join(self._pending), []
        self.received += len(text)
        return text

    def wait_ended(self, timeout: float) -> bool:
        """Wait until the stream has delivered the whole log (only while it delivers)."""
        return self.ended.is_set() or (self.connected and self.ended.wait(timeout))

    def close(self) -> None:
        """Stop following (the background thread ends)."""
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join(timeout=5)
