"""What of the working directory a cluster job's upload leaves out, and why (Ray excludes)."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ALWAYS_EXCLUDED", "UploadPlan", "job_upload_plan", "upload_plan"]

#: SQLite databases and their journals: a live one changes while Ray zips it (the job then
#: fails with RUNTIME_ENV_SETUP_FAILURE), and a database is data, not code.
_DATABASES = ("*.db", "*.db-*", "*.sqlite", "*.sqlite-*", "*.sqlite3", "*.sqlite3-*")

ALWAYS_EXCLUDED: tuple[str, ...] = (".git/", "__pycache__/", *_DATABASES)
"""Ray ``excludes`` patterns added to every cluster job's upload (before the user's own, so a
user's ``"!path"`` pattern sends a file anyway). Virtual environments (folders holding
``pyvenv.cfg``), Ray Tune experiment folders, the results root and ``PREFECT_HOME`` are added
where they lie inside the working directory."""

_MAX_SCAN = 20_000  # entries looked at; a bigger tree is still excluded, just not all named
_MAX_NAMED = 12


@dataclass
class UploadPlan:
    """The ``excludes`` patterns to add to a job's runtime_env, and what they leave out."""

    excludes: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # "path (why)", for the run's log

    def message(self, working_dir: str) -> str | None:
        """The log line naming what stays behind, or None when nothing does."""
        if not self.left_out:
            return None
        named = self.left_out[:_MAX_NAMED]
        more = len(self.left_out) - len(named)
        return (
            f"Left out of the upload of {working_dir} to the cluster: {', '.join(named)}"
            + (f" and {more} more" if more else "")
            + '. To send one anyway, add "!<path>" to runtime_env["excludes"].'
        )


def _inside(folder: str | os.PathLike[str] | None, root: Path) -> str | None:
    """``folder`` relative to ``root`` (posix), when it lies strictly inside it."""
    if not folder or "://" in str(folder):
        return None
    try:
        relative = Path(folder).expanduser().resolve().relative_to(root)
    except (ValueError, OSError):
        return None
    return relative.as_posix() if relative.parts else None


def _is_tune_experiment(folder: Path) -> bool:
    """A folder Ray Tune wrote an experiment into (its state or its pickled Tuner)."""
    try:
        return (folder / "tuner.pkl").is_file() or any(folder.glob("experiment_state-*.json"))
    except OSError:
        return False


def _is_database(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in _DATABASES)


def upload_plan(
    working_dir: str | os.PathLike[str],
    folders: Iterable[tuple[str | os.PathLike[str] | None, str]] = (),
    *,
    user_excludes: Sequence[str] = (),
) -> UploadPlan:
    """The excludes that keep what cannot or should not travel out of a job's upload.

    Left out: ``.git``, ``__pycache__``, SQLite databases and their journals (a database being
    written fails the job's setup), virtual environments (folders with ``pyvenv.cfg``), Ray Tune
    experiment folders (``tuner.pkl``, ``experiment_state-*.json``), and each
    of ``folders`` (``(path, why)``: the results root, ``PREFECT_HOME``) inside the working
    directory. Ray applies them together with ``.gitignore`` and the user's ``excludes``.

    Example:
        >>> import tempfile
        >>> work = Path(tempfile.mkdtemp())
        >>> (work / ".venv").mkdir()
        >>> (work / ".venv" / "pyvenv.cfg").touch()
        >>> (work / "runs.db").touch()
        >>> plan = upload_plan(work, [(work / "results", "the results root")])
        >>> plan.excludes[-1], plan.left_out
        ('/.venv/', ['.venv/ (a virtual environment)', 'runs.db (a SQLite database)'])
    """
    root = Path(working_dir).expanduser().resolve()
    plan = UploadPlan(excludes=list(ALWAYS_EXCLUDED))
    named: set[str] = set()
    for folder, why in folders:
        relative = _inside(folder, root)
        if relative is not None and relative not in named:
            named.add(relative)
            plan.excludes.append(f"/{relative}/")
            if (root / relative).exists():
                plan.left_out.append(f"{relative}/ ({why})")
    scanned = 0
    for current, dirs, files in os.walk(root):
        base = Path(current).relative_to(root)
        kept = []
        for name in sorted(dirs):
            relative = (base / name).as_posix()
            if relative in named:
                continue
            if name == ".git":
                plan.left_out.append(f"{relative}/ (git repository)")
            elif name == "__pycache__":
                continue
            elif (Path(current) / name / "pyvenv.cfg").is_file():
                plan.excludes.append(f"/{relative}/")
                plan.left_out.append(f"{relative}/ (a virtual environment)")
            elif _is_tune_experiment(Path(current) / name):
                plan.excludes.append(f"/{relative}/")
                plan.left_out.append(f"{relative}/ (Ray Tune results)")
            elif not (Path(current) / name).is_symlink():
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            if _is_database(name):
                plan.left_out.append(f"{(base / name).as_posix()} (a SQLite database)")
        scanned += len(dirs) + len(files)
        if scanned > _MAX_SCAN:
            break
    if user_excludes:  # a user's "!path" sends something anyway: name only what stays behind
        spec = _path_spec([*plan.excludes, *user_excludes])
        plan.left_out = [x for x in plan.left_out if spec.match_file(x.split(" (", 1)[0])]
    return plan


def _path_spec(patterns: list[str]) -> Any:
    """Ray's own matcher of ``excludes`` patterns (gitignore syntax)."""
    from ray._private.thirdparty.pathspec import PathSpec

    return PathSpec.from_lines("gitwildmatch", patterns)


def job_upload_plan(cwd: str, storage_path: str, user_excludes: Sequence[str]) -> UploadPlan:
    """:func:`upload_plan` for a job writing to ``storage_path`` (``<results root>/<user>``)."""
    from prefect.settings import PREFECT_HOME

    from radas_flows.core import results_root

    live = "PREFECT_HOME, a live database"
    return upload_plan(
        cwd,
        [
            (storage_path.rstrip("/").rsplit("/", 1)[0], "the results root"),
            (results_root(), "the local results root"),
            (str(PREFECT_HOME.value()), live),
            (os.environ.get("PREFECT_HOME"), live),
        ],
        user_excludes=list(user_excludes),
    )
