"""When the results folder fills up (or becomes unwritable) during a run: save what was computed.

Tune keeps each trial's result in memory even when it cannot write it to the results folder,
so the analysis still has every row. Its table and figure then go to a private folder on this
machine instead, and the error names that folder and the trials whose files are missing.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from radas_flows._artifacts import experiment_slug
from radas_flows.errors import ResultsWriteError, causes
from radas_flows.storage import cache_home

if TYPE_CHECKING:
    from radas_flows.analysis import AnalysisResult
    from radas_flows.tuner import Tuner

__all__ = [
    "free_bytes",
    "missing_result_files",
    "rescue_dir",
    "rescue_staging",
    "rescued_error",
    "storage_refused",
]

REFUSALS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def storage_refused(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is the file system refusing a write.

    Example:
        >>> storage_refused(OSError(errno.ENOSPC, "No space left on device"))
        True
        >>> storage_refused(RuntimeError("plot failed"))
        False
    """
    return any(isinstance(c, OSError) and c.errno in REFUSALS for c in causes(error))


def free_bytes(path: str) -> int | None:
    """Bytes free on the file system of ``path`` (its nearest existing folder); None if unknown."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def missing_result_files(trial_paths: list[str]) -> list[str]:
    """The local trial folders among ``trial_paths`` whose ``result.json`` is missing or empty.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "f_00000").mkdir(); _ = (root / "f_00000" / "result.json").write_text("{}")
        >>> (root / "f_00001").mkdir(); _ = (root / "f_00001" / "result.json").write_text("")
        >>> missing_result_files([str(root / "f_00000"), str(root / "f_00001")])
        ['f_00001']
    """
    missing = []
    for path in trial_paths:
        result = Path(path) / "result.json"
        try:
            if result.stat().st_size == 0:
                missing.append(Path(path).name)
        except OSError:
            missing.append(Path(path).name)
    return missing


def rescue_dir(user_name: str, experiment_name: str) -> Path:
    """A new private folder (mode 0700) for what could not be written to the results folder.

    Under ``radas_flows/rescued`` in the user's cache folder (``storage.cache_home``), else
    under the system's temporary folder.
    """
    name = f"{experiment_slug(user_name, experiment_name, 80)}-{time.strftime('%Y%m%d-%H%M%S')}"
    last: OSError | None = None
    for base in (cache_home() / "radas_flows" / "rescued", Path(tempfile.gettempdir())):
        try:
            base.mkdir(parents=True, exist_ok=True, mode=0o700)
            return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
        except OSError as e:
            last = e
    raise OSError(f"no folder to save the analysis in: {last}")


def rescued_error(analysis: AnalysisResult, experiment_path: str) -> ResultsWriteError:
    """The error of a run whose analysis was saved outside the results folder, saying where."""
    from radas_flows.storage import is_uri

    rescue = analysis.tuner.rescue
    if rescue is not None:
        rows = len(analysis.df) if hasattr(analysis.df, "__len__") else 0
        table = f" and the analysis of all {rows} rows in {analysis.csv_path}" * bool(
            analysis.csv_path
        )
        return ResultsWriteError(
            f"Could not store the results in {rescue['stored_at']} ({rescue['reason']}). "
            f"Every trial's files were kept on this machine: they are in {rescue['copy']}"
            f"{table}. When the storage is back, copy that folder's contents to "
            f"{rescue['stored_at']}; dos=['analyze'] then reads them there."
        )

    rows = len(analysis.df) if hasattr(analysis.df, "__len__") else 0
    saved = analysis.csv_path or "(no table: the DataFrame is in the error's results)"
    free = free_bytes(experiment_path) if not is_uri(experiment_path) else None
    space = f"; {free} bytes free there" if free is not None else ""
    paths = [str(r.path) for r in analysis.tuner.get_results() if getattr(r, "path", None)]
    missing = [] if is_uri(experiment_path) else missing_result_files(paths)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        shown = ", ".join(missing[:5]) + more
        stored = (
            f"{len(missing)} of {len(paths)} trials have no result file in {experiment_path} "
            f"({shown}): free space or fix the folder, then run the sweep again "
            "(run_choice='run') to store every trial there."
        )
    else:
        stored = (
            f"Every trial's result file is in {experiment_path}: free space or fix the folder, "
            "then dos=['analyze'] writes the table there (no trial runs again)."
        )
    return ResultsWriteError(
        f"Could not write to the results folder {analysis.rescued_from} "
        f"({analysis.rescue_reason}{space}). The analysis of all {rows} rows was saved in "
        f"{saved} instead. {stored}"
    )


def rescue_staging(user_name: str, experiment_path: str, error: BaseException) -> Tuner | None:
    """Read a local run's results back from Ray's copy on this machine, when remote storage
    failed; ``None`` when there is none (or the storage is local).

    With remote storage (S3) Tune writes each trial's files on this machine first, then
    uploads them. When the upload fails (the storage is down), the copy in this Ray session's
    folder is complete: it is copied to a private folder and read from there.
    """
    from radas_flows.storage import is_uri
    from radas_flows.tuner import Tuner

    if not is_uri(experiment_path) or not any(isinstance(c, OSError) for c in causes(error)):
        return None
    try:
        import ray._private.worker as ray_worker  # the session folder has no public accessor

        node = ray_worker._global_node
        session = node.get_session_dir_path() if node is not None else None
    except Exception:
        session = None
    if session is None:
        return None
    name = experiment_path.rstrip("/").rsplit("/", 1)[-1]
    staged = sorted(
        Path(session).glob(f"artifacts/*/{name}/driver_artifacts"), key=lambda p: p.stat().st_mtime
    )
    if not staged:
        return None
    copy = rescue_dir(user_name, name) / name
    shutil.copytree(staged[-1], copy)
    try:
        tuner = Tuner.from_path(str(copy))
    except Exception:
        return None
    tuner.rescue = {
        "stored_at": experiment_path,
        "reason": f"{type(error).__name__}: {error}",
        "copy": str(copy),
    }
    return tuner
