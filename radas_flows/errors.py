"""Exceptions raised by radas_flows."""

from __future__ import annotations

from collections.abc import Iterator


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what caused it (``__cause__``, else ``__context__``), each once.

    Example:
        >>> try:
        ...     try:
        ...         raise OSError("disk")
        ...     except OSError as e:
        ...         raise RuntimeError("save failed") from e
        ... except RuntimeError as e:
        ...     [type(c).__name__ for c in causes(e)]
        ['RuntimeError', 'OSError']
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class RadasError(Exception):
    """Base class of every error radas_flows raises on purpose."""


class RadasValueError(RadasError, ValueError):
    """A bad value given by the user; the message names the value and the fix."""


class ExperimentStateError(RadasError):
    """The stored state of an experiment does not allow the requested action."""


class ExperimentStoppedError(ExperimentStateError):
    """The run was stopped from outside before it finished; what finished was analyzed."""


class TrialsFailedError(RadasError):
    """Trials of an experiment ended in error; completed results were kept and analyzed."""


class ResultsRootError(RadasError):
    """The results folder cannot be written (read-only, no permission, full); nothing started."""


class ResultsWriteError(RadasError):
    """The results folder refused writes or went away during the run; what was computed was
    saved on this machine instead.

    The message names that folder and the trials whose result files are missing; ``results``
    holds the DataFrame, results view and figure.
    """
