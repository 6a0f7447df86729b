"""Out-of-memory detection: classify an error, a stored error text, or how a Tune trial ended."""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from radas_flows.storage import Storage

if TYPE_CHECKING:
    import pyarrow.fs

ErrorKind = Literal["oom", "error"]
#: How one execution of a trial ended.
Outcome = Literal["completed", "oom", "error", "unfinished"]

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
        >>> oom_signature("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
        'accelerator out of memory'
        >>> oom_signature("torch.OutOfMemoryError: CUDA out of memory.")
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
        >>> classify_error(MemoryError()), classify_error("ValueError: an illegal memory access")
        ('oom', 'error')
    """
    found = oom_signature(error, killed_worker_is_oom=killed_worker_is_oom)
    return "oom" if found is not None else "error"


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
        >>> import tempfile
        >>> trial_dir = tempfile.mkdtemp()
        >>> from pathlib import Path
        >>> _ = (Path(trial_dir) / "error.txt").write_text(
        ...     "Failure # 1 (occurred at 2025-01-01_00-00-00)\\nMemoryError\\n")
        >>> read_trial_error(trial_dir), classify_error(read_trial_error(trial_dir))
        ('MemoryError', 'oom')
    """
    text = Storage(os.fspath(trial_dir), filesystem).child(ERROR_TEXT_FILE).read_text()
    if text is None:
        return None
    return _latest_failure(text)


def trial_error_kind(trial: Any) -> ErrorKind:
    """Classify the stored error of an errored Tune trial: its pickled error, else its text.

    Args:
        trial: A ``ray.tune.experiment.Trial`` (live, or read back from storage).

    Returns:
        ``"oom"`` or ``"error"``; an unreadable error counts as ``"error"``.
    """
    error: Any = None
    try:
        error = trial.get_pickled_error() or trial.get_error()
    except Exception:  # an unreadable error.pkl; the text below remains
        error = None
    if classify_error(error) == "oom":
        return "oom"
    try:
        text = read_trial_error(
            trial.storage.trial_fs_path, filesystem=trial.storage.storage_filesystem
        )
    except Exception:
        text = None
    return classify_error(text)


def execution_outcome(trial: Any, *, aborted: bool) -> Outcome:
    """How one Tune trial ended: completed, out of memory, another error, or unfinished.

    Args:
        trial: A ``ray.tune.experiment.Trial``.
        aborted: Tune itself stopped because Ray's memory monitor killed a trial; then every
            trial that had not completed counts as out of memory (Tune records no error for
            them).

    Returns:
        ``"completed"`` (Tune's ``TERMINATED``), ``"oom"``, ``"error"`` or ``"unfinished"``.
    """
    if trial.status == "TERMINATED":
        return "completed"
    if trial.status == "ERROR":
        return trial_error_kind(trial)
    return "oom" if aborted else "unfinished"
