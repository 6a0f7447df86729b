"""A Ray job's log as it grows: relayed into the Prefect log, progress lines picked out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from radas_flows.targets.base import PROGRESS_MARKER

__all__ = ["LogRelay", "poll_interval", "tail"]


def poll_interval(log_size: int) -> float:
    """Seconds between two polls: 1 s, slower for long logs (each poll reads the whole log).

    Example:
        >>> poll_interval(10_000), poll_interval(50_000_000)
        (1.0, 10.0)
    """
    return min(10.0, max(1.0, log_size / 2_000_000))


@dataclass
class LogRelay:
    r"""Turns new job log text into log lines and progress updates, keeping floods down.

    Repeated identical lines are folded into one "repeated N times" line, each line is
    cut at ``max_line_chars``, and at most ``max_lines`` lines are relayed per call; the
    driver's progress lines become progress updates instead of log lines.

    Example:
        >>> relay = LogRelay()
        >>> relay.feed('a\na\na\n[radas-progress] {"finished": 1, "total": 2}\nb\n')
        ['a', '(previous line repeated 2 more times)', {'finished': 1, 'total': 2}, 'b']
    """

    max_lines: int = 200
    max_line_chars: int = 2000
    _partial: str = ""
    _last: str | None = None
    _repeats: int = 0
    skipped: int = field(default=0)

    def _fold(self, out: list[str | dict[str, Any]]) -> None:
        if self._repeats:
            out.append(f"(previous line repeated {self._repeats} more times)")
            self._repeats = 0

    def feed(self, text: str) -> list[str | dict[str, Any]]:
        """Take new log text; return, in order, the lines to log and the progress updates."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next call
        out: list[str | dict[str, Any]] = []
        shown = 0
        for raw in lines:
            line = raw.rstrip("\r")
            marker = line.find(PROGRESS_MARKER)
            if marker != -1:
                try:
                    update = json.loads(line[marker + len(PROGRESS_MARKER) :])
                except ValueError:
                    update = None
                if isinstance(update, dict):
                    self._fold(out)
                    out.append(update)
                    continue
            if line == self._last:
                self._repeats += 1
                continue
            self._fold(out)
            self._last = line
            if shown >= self.max_lines:
                self.skipped += 1
                continue
            if len(line) > self.max_line_chars:
                line = f"{line[: self.max_line_chars]} ... ({len(line)} characters)"
            out.append(line)
            shown += 1
        if shown >= self.max_lines and self.skipped:
            out.append(f"... {self.skipped} more lines not shown here")
            self.skipped = 0
        return out

    def flush(self) -> list[str | dict[str, Any]]:
        """The lines still held back (an unfinished last line, a pending repeat count)."""
        out: list[str | dict[str, Any]] = []
        self._fold(out)
        if self._partial:
            out.append(self._partial)
            self._partial = ""
        return out


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
