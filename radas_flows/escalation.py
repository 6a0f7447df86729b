"""Out-of-memory detection and the cpu_per_trial escalation decisions for errored trials."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from radas_flows.errors import RadasValueError, TrialsFailedError

if TYPE_CHECKING:
    import pyarrow.fs

ErrorKind = Literal["oom", "error"]

#: File Tune appends the text of every failure of a trial to, in the trial directory.
ERROR_TEXT_FILE = "error.txt"

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FAILURE_HEADER = re.compile(r"^Failure # \d+ \(occurred at [^)\n]*\)[ \t]*\n", re.MULTILINE)

# Signatures of a worker killed by the kernel's OOM killer. Ray reports every SIGKILL or crash
# of a worker with the same text (a SIGSEGV reads identically), naming the OOM killer as the
# first likely cause; a Ray Jobs driver killed by SIGKILL exits with 137 (shell) or -9.
_KILLED_WORKER_SIGNATURES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("worker killed by the OOM killer", re.compile(r"the process was killed by the OOM killer")),
    ("process killed by SIGKILL", re.compile(r"failed with exit code (?:137|-9)\b")),
)

_OOM_SIGNATURES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # torch's OutOfMemoryError first: the MemoryError line pattern below matches its name too.
    ("torch out of memory", re.compile(r"\btorch(?:\.cuda)?\.OutOfMemoryError\b")),
    # Python's MemoryError (and subclasses such as numpy's _ArrayMemoryError) as the exception
    # line of a traceback, at the start of a line or after an exception-group bar.
    (
        "MemoryError",
        re.compile(r"^(?:[ \t]*\|[ \t]*)?[\w.]*MemoryError(?::|[ \t]*$)", re.MULTILINE),
    ),
    ("MemoryError", re.compile(r"RayTaskError\([\w.]*MemoryError\)")),
    # Ray's memory monitor (ray.exceptions.OutOfMemoryError and the worker exit type it sets).
    ("Ray memory monitor", re.compile(r"killed due to the node running low on memory")),
    ("Ray memory monitor", re.compile(r"Worker exit type: NODE_OUT_OF_MEMORY")),
    ("Ray object store full", re.compile(r"object store is full of objects that are still in")),
    # Accelerator allocators: torch's caching allocators, the CUDA runtime and its libraries.
    (
        "accelerator out of memory",
        re.compile(r"\b(?:CUDA|HIP|XPU|MPS backend|NPU) out of memory", re.IGNORECASE),
    ),
    ("CUDA out of memory", re.compile(r"CUDA error: out of memory", re.IGNORECASE)),
    ("CUDA out of memory", re.compile(r"\bcudaErrorMemoryAllocation\b")),
    (
        "CUDA library allocation failed",
        re.compile(r"\bCU(?:BLAS|DNN|SPARSE|SOLVER)_STATUS_ALLOC_FAILED\b|\bCUFFT_ALLOC_FAILED\b"),
    ),
    # XLA (JAX, TPU): "RESOURCE_EXHAUSTED: Out of memory while trying to allocate ...". gRPC uses
    # the same status for oversized messages, so an allocation must be named on the same line.
    (
        "XLA out of memory",
        re.compile(r"RESOURCE_EXHAUSTED:[^\n]*(?:out of memory|allocat)", re.IGNORECASE),
    ),
    ("TensorFlow out of memory", re.compile(r"\bOOM when allocating tensor")),
    ("C++ allocation failed", re.compile(r"\bstd::bad_alloc\b")),
    ("cannot allocate memory", re.compile(r"\[Errno 12\] Cannot allocate memory")),
)

# Exception classes recognised by name, so that neither torch nor ray has to be imported.
_OOM_CLASS_NAMES = frozenset({"OutOfMemoryError", "ObjectStoreFullError"})


def _strip_ansi(text: str) -> str:
    return _ANSI_ESCAPE.sub("", text)


def _text_signature(text: str, *, killed_worker_is_oom: bool) -> str | None:
    clean = _strip_ansi(text)
    for name, pattern in _OOM_SIGNATURES:
        if pattern.search(clean):
            return name
    if killed_worker_is_oom:
        for name, pattern in _KILLED_WORKER_SIGNATURES:
            if pattern.search(clean):
                return name
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """Yield the error and every exception it wraps: causes, contexts, group members, args."""
    stack = [error]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked: list[object] = [
            current.__cause__,
            current.__context__,
            current.__dict__.get("cause") if hasattr(current, "__dict__") else None,
        ]
        if isinstance(current, BaseExceptionGroup):
            linked.extend(current.exceptions)
        with contextlib.suppress(Exception):  # an exception class with a broken `args`
            linked.extend(current.args)
        stack.extend(item for item in linked if isinstance(item, BaseException))


def _object_signature(error: BaseException) -> str | None:
    if isinstance(error, MemoryError):
        return "MemoryError"
    if isinstance(error, OSError) and error.errno == errno.ENOMEM:
        return "cannot allocate memory"
    for cls in type(error).__mro__:
        if cls.__name__ in _OOM_CLASS_NAMES:
            return f"{cls.__module__}.{cls.__name__}"
    return None


def _texts_of(error: BaseException) -> Iterator[str]:
    text = None
    with contextlib.suppress(Exception):  # a foreign __str__ failed; type and traceback remain
        text = str(error)
    if text is not None:
        yield text
    traceback_str = None
    with contextlib.suppress(Exception):  # RayTaskError keeps the remote traceback here
        traceback_str = getattr(error, "traceback_str", None)
    if isinstance(traceback_str, str):
        yield traceback_str


def oom_signature(
    error: BaseException | str | None, *, killed_worker_is_oom: bool = True
) -> str | None:
    """Name the out-of-memory signature found in an error, or None when there is none.

    Args:
        error: An exception (Ray, Tune, torch or plain Python, wrapped at any depth) or the
            text of one, as Tune stores it in a trial's ``error.txt``.
        killed_worker_is_oom: Count a worker that Ray reports as killed or crashed
            ("Worker exit type: SYSTEM_ERROR ... (1) the process was killed by the OOM killer")
            as out of memory. Ray reports a kernel OOM kill and a segfault with the same text.

    Returns:
        A short name of what matched (for example ``"MemoryError"``, ``"Ray memory monitor"``,
        ``"accelerator out of memory"``), or None.

    Example:
        >>> oom_signature("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
        'torch out of memory'
    """
    if error is None:
        return None
    if isinstance(error, str):
        return _text_signature(error, killed_worker_is_oom=killed_worker_is_oom)
    chain = list(_chain(error))
    for linked in chain:  # exception types first: they are exact
        found = _object_signature(linked)
        if found is not None:
            return found
    for linked in chain:
        for text in _texts_of(linked):
            found = _text_signature(text, killed_worker_is_oom=killed_worker_is_oom)
            if found is not None:
                return found
    return None


def classify_error(
    error: BaseException | str | None, *, killed_worker_is_oom: bool = True
) -> ErrorKind:
    """Classify a trial's error as out-of-memory (``"oom"``) or any other error (``"error"``).

    Out of memory is: Python ``MemoryError`` (also as ``RayTaskError(MemoryError)``), Ray's
    memory monitor (``ray.exceptions.OutOfMemoryError``, also when Tune re-raises it as
    ``RuntimeError: Caught unexpected exception``), a full Ray object store, CUDA / torch / XLA /
    TensorFlow out-of-memory errors, ``ENOMEM``, and a worker killed by the kernel's OOM killer.
    An error mentioning memory in other words (``"an illegal memory access"``) is not.

    Args:
        error: An exception, its text (a trial's ``error.txt``, ``Result.error`` read back
            from storage, which Tune may return as a string), or None (no error information).
        killed_worker_is_oom: See :func:`oom_signature`.

    Returns:
        ``"oom"`` or ``"error"``.

    Example:
        >>> classify_error("MemoryError: cannot allocate the buffers")
        'oom'
        >>> classify_error("ValueError: lr must be positive")
        'error'
    """
    found = oom_signature(error, killed_worker_is_oom=killed_worker_is_oom)
    return "oom" if found is not None else "error"


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RadasValueError(f"{name} must be a number, got {value!r}; pass for example {name}=1")
    if not math.isfinite(value) or value <= 0:
        raise RadasValueError(
            f"{name} must be a positive finite number, got {value!r}; pass for example {name}=1"
        )
    return float(value)


def next_cpu_per_trial(current: float, cap: float) -> float | None:
    """Double cpu_per_trial for the next escalation round, or None when that exceeds the cap.

    Args:
        current: The cpu_per_trial the trials ran out of memory with.
        cap: The largest cpu_per_trial allowed: the cluster's cpu_per_node (locally, the
            machine's CPU count).

    Returns:
        ``2 * current``, or None when it would exceed ``cap``.

    Raises:
        RadasValueError: When ``current`` or ``cap`` is not a positive finite number.

    Example:
        >>> next_cpu_per_trial(2, cap=8)
        4.0
        >>> next_cpu_per_trial(8, cap=8) is None
        True
    """
    current = _check_positive("cpu_per_trial", current)
    cap = _check_positive("cpu_per_node", cap)
    doubled = current * 2
    return doubled if doubled <= cap * (1 + 1e-9) else None


def gpu_share(cpu_per_trial: float, gpu_per_cpu: float) -> float:
    """GPUs a trial gets for its CPUs: ``cpu_per_trial * gpu_per_cpu``, to Ray's 0.0001 precision.

    Args:
        cpu_per_trial: CPUs per trial.
        gpu_per_cpu: The cluster's GPUs per CPU (0 for a CPU-only cluster).

    Returns:
        The GPU share, rounded to 4 decimals (Ray rejects finer fractions).

    Raises:
        RadasValueError: When ``cpu_per_trial`` is not positive or ``gpu_per_cpu`` is negative.

    Example:
        >>> gpu_share(4, 0.125)
        0.5
    """
    cpu_per_trial = _check_positive("cpu_per_trial", cpu_per_trial)
    if isinstance(gpu_per_cpu, bool) or not isinstance(gpu_per_cpu, int | float):
        raise RadasValueError(f"gpu_per_cpu must be a number, got {gpu_per_cpu!r}; use 0 for none")
    if not math.isfinite(gpu_per_cpu) or gpu_per_cpu < 0:
        raise RadasValueError(
            f"gpu_per_cpu must be zero or a positive finite number, got {gpu_per_cpu!r}; "
            "use 0 for a CPU-only cluster"
        )
    return round(cpu_per_trial * gpu_per_cpu, 4)


def format_number(value: float) -> str:
    """Print a CPU count without a trailing ``.0``: 2.0 -> "2", 0.5 -> "0.5".

    Example:
        >>> format_number(4.0), format_number(0.25)
        ('4', '0.25')
    """
    rounded = round(float(value), 4)
    return str(int(rounded)) if rounded.is_integer() else str(rounded)


def recommendation_text(n_trials: int, from_cpu: float, to_cpu: float) -> str:
    """The advice shown after an escalation that succeeded.

    Args:
        n_trials: How many trials ran out of memory and later completed.
        from_cpu: The cpu_per_trial they first ran out of memory with.
        to_cpu: The cpu_per_trial they completed with.

    Returns:
        "N trials ran out of memory at cpu_per_trial=X and completed at Y; start future runs
        with cpu_per_trial=Y" ("1 trial ran ..." for one trial).

    Raises:
        RadasValueError: When ``n_trials`` is not a positive integer.

    Example:
        >>> recommendation_text(3, 1, 2)
        '3 trials ran out of memory at cpu_per_trial=1 and completed at 2; start future runs
        with cpu_per_trial=2'
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise RadasValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    noun = "trial" if n_trials == 1 else "trials"
    to_text = format_number(to_cpu)
    return (
        f"{n_trials} {noun} ran out of memory at cpu_per_trial={format_number(from_cpu)} "
        f"and completed at {to_text}; start future runs with cpu_per_trial={to_text}"
    )


def cap_failure_text(
    trial_ids: Iterable[str],
    tried_values: Sequence[float],
    cap: float,
    *,
    max_rounds: int | None = None,
) -> str:
    """The failure message when trials still run out of memory and escalation must stop.

    Args:
        trial_ids: The trials that ran out of memory at the last value tried.
        tried_values: Every cpu_per_trial tried, in order.
        cap: The cpu_per_trial cap (cpu_per_node).
        max_rounds: When given, escalation stopped because this many rounds were run, not
            because doubling would exceed the cap.

    Returns:
        A message naming the trials, the values tried, the cap and what to do.

    Raises:
        RadasValueError: When no trial or no tried value is given.

    Example:
        >>> print(cap_failure_text(["f_00003"], [1, 2, 4], 4))  # doctest: +ELLIPSIS
        1 trial still ran out of memory at cpu_per_trial=4: f_00003. cpu_per_trial tried: 1, 2,
        4; doubling again to 8 would exceed the cap cpu_per_node=4. Run on a cluster with ...
    """
    ids = list(dict.fromkeys(str(trial_id) for trial_id in trial_ids))
    values = [float(value) for value in tried_values]
    if not ids:
        raise RadasValueError("cap_failure_text needs at least one trial id that ran out of memory")
    if not values:
        raise RadasValueError("cap_failure_text needs the cpu_per_trial values that were tried")
    last = format_number(values[-1])
    tried = ", ".join(format_number(value) for value in values)
    noun = "trial" if len(ids) == 1 else "trials"
    head = f"{len(ids)} {noun} still ran out of memory at cpu_per_trial={last}: {', '.join(ids)}."
    if max_rounds is not None:
        reason = (
            f"Stopped after the maximum of {max_rounds} escalation rounds "
            f"(cpu_per_trial tried: {tried}; cap cpu_per_node={format_number(cap)})."
        )
        fix = "Raise the maximum number of rounds, or start with a larger cpu_per_trial"
    else:
        reason = (
            f"cpu_per_trial tried: {tried}; doubling again to {format_number(values[-1] * 2)} "
            f"would exceed the cap cpu_per_node={format_number(cap)}."
        )
        fix = "Run on a cluster with more CPUs (and memory) per node"
    return (
        f"{head} {reason} {fix}, or reduce the memory each trial needs "
        "(for example a smaller batch size or model)."
    )


class OutOfMemoryCapError(TrialsFailedError):
    """Trials still ran out of memory at the largest cpu_per_trial allowed (or the last round).

    Raised by the ``radas`` flow after everything that completed was kept and analyzed; its
    message is :func:`cap_failure_text`.
    """


def _latest_failure(text: str) -> str | None:
    sections = [section.strip() for section in _FAILURE_HEADER.split(text)]
    sections = [section for section in sections if section]
    return sections[-1] if sections else None


def read_trial_error(
    trial_dir: str | os.PathLike[str],
    *,
    filesystem: pyarrow.fs.FileSystem | None = None,
) -> str | None:
    """Read the latest stored error of a Tune trial from its directory.

    Tune appends each failure of a trial to ``error.txt`` in the trial directory, under a
    ``Failure # N (occurred at ...)`` line, and pickles the latest Ray error to ``error.pkl``
    (read back by ``ResultGrid`` as ``Result.error``). This reads the text only, so nothing
    is unpickled; pass the result to :func:`classify_error`.

    Args:
        trial_dir: The trial directory (``Result.path``).
        filesystem: The pyarrow filesystem of the run's storage (``Result.filesystem``) when the
            results are not on a local disk; then ``trial_dir`` is a path on that filesystem.

    Returns:
        The text of the latest failure, without its ``Failure # N`` line, or None when the
        trial stored no error.

    Example:
        >>> import pathlib, tempfile
        >>> trial_dir = pathlib.Path(tempfile.mkdtemp())
        >>> read_trial_error(trial_dir) is None
        True
        >>> _ = (trial_dir / ERROR_TEXT_FILE).write_text("MemoryError: out of buffers")
        >>> classify_error(read_trial_error(trial_dir))
        'oom'
    """
    if filesystem is None:
        path = Path(trial_dir) / ERROR_TEXT_FILE
        if not path.is_file():
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
    else:
        import pyarrow.fs

        fs_path = f"{os.fspath(trial_dir).rstrip('/')}/{ERROR_TEXT_FILE}"
        if filesystem.get_file_info(fs_path).type != pyarrow.fs.FileType.File:
            return None
        with filesystem.open_input_stream(fs_path) as stream:
            text = stream.readall().decode("utf-8", errors="replace")
    return _latest_failure(text)
