"""A durable record of each completed trial, so a restore after a killed driver re-runs none.

Tune saves its experiment state now and then (``TUNE_GLOBAL_CHECKPOINT_S``: at least every
10 s in its ``auto`` mode), and each save writes every trial, so its cost grows with the sweep.
A driver killed between two saves loses the trials that completed since the last one: a plain
``Tuner.restore`` runs them again. :class:`CompletionJournal` (a Tune callback in the driver)
instead writes, as each trial completes, that trial's own files to storage and one small entry
``radas_completed/<trial id>.json`` beside Tune's state: a constant cost per completion.
Before a restore, :func:`apply_journal` marks the recorded trials completed in Tune's saved
state, so Tune keeps their stored results and rows and does not run them again.

Imports ray: only the driver imports this module.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import re
import time
from typing import Any

from ray.tune import Callback

__all__ = ["JOURNAL_DIR", "CompletionJournal", "apply_journal"]

JOURNAL_DIR = "radas_completed"
_TRIAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_STATE_PATTERN = "experiment_state-*.json"
_BASIC_SEARCH_PATTERN = "basic-variant-state-*.json"


class CompletionJournal(Callback):
    """Records each completed trial in storage as it completes (picklable, as Tune stores it).

    ``seconds`` and ``count`` add up the time spent recording (measured by the benchmarks).
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        started = time.perf_counter()
        try:
            _record(trial)
        except Exception as e:  # the sweep goes on; only a later restore may re-run it
            print(f"[radas] could not record completed trial {trial.trial_id}: {e}", flush=True)
        self.seconds += time.perf_counter() - started
        self.count += 1


def _record(trial: Any) -> None:
    """Upload the trial's files (rows Tune's loggers wrote), then its journal entry."""
    from ray.train._internal.storage import _upload_to_fs_path

    storage = trial.storage
    fs = storage.storage_filesystem
    # Tune's loggers flush each reported row, so the files hold every row by now.
    if os.path.isdir(storage.trial_driver_staging_path):
        _upload_to_fs_path(storage.trial_driver_staging_path, fs, storage.trial_fs_path)
    state, runtime = trial.get_json_state()
    entry = json.dumps({"trial_id": trial.trial_id, "state": state, "runtime": runtime})
    folder = posixpath.join(storage.experiment_fs_path, JOURNAL_DIR)
    fs.create_dir(folder, recursive=True)
    final = posixpath.join(folder, f"{trial.trial_id}.json")
    partial = posixpath.join(folder, f".{trial.trial_id}.partial")
    with fs.open_output_stream(partial) as stream:
        stream.write(entry.encode("utf-8"))
    fs.move(partial, final)  # a kill mid-write leaves no half entry


def _read_entries(fs: Any, folder: str) -> dict[str, tuple[str, str]]:
    """Trial id -> (state, runtime) of each readable journal entry."""
    import pyarrow.fs

    if fs.get_file_info(folder).type != pyarrow.fs.FileType.Directory:
        return {}
    entries: dict[str, tuple[str, str]] = {}
    for info in fs.get_file_info(pyarrow.fs.FileSelector(folder)):
        name = info.base_name
        if not name.endswith(".json") or not _TRIAL_ID.fullmatch(name[: -len(".json")]):
            continue
        try:
            with fs.open_input_stream(info.path) as stream:
                entry = json.loads(bytes(stream.readall()).decode("utf-8"))
            trial_id, state, runtime = entry["trial_id"], entry["state"], entry["runtime"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"[radas] skipped the unreadable completion record {info.path}: {e}")
            continue
        if trial_id == name[: -len(".json")] and isinstance(state, str):
            entries[trial_id] = (state, runtime)
    return entries


def _newest(fs: Any, folder: str, pattern: str) -> str | None:
    import pyarrow.fs

    names = [i.base_name for i in fs.get_file_info(pyarrow.fs.FileSelector(folder))]
    matching = fnmatch.filter(names, pattern)
    return posixpath.join(folder, max(matching)) if matching else None


def _write(fs: Any, path: str, data: bytes) -> None:
    partial = posixpath.join(posixpath.dirname(path), f".radas-{posixpath.basename(path)}")
    with fs.open_output_stream(partial) as stream:
        stream.write(data)
    fs.move(partial, path)


def apply_journal(experiment_path: str, filesystem: Any = None) -> list[str]:
    """Mark the journal's trials completed in Tune's newest saved state; their ids.

    Only trials Tune's state already holds are changed (a trial it never saved has no
    stored place to keep), and only those it does not record as finished. The basic search
    algorithm's saved state stops counting them as running, so its concurrency limit holds.
    """
    from ray.train._internal.storage import get_fs_and_path

    fs, path = get_fs_and_path(experiment_path, filesystem)
    entries = _read_entries(fs, posixpath.join(path, JOURNAL_DIR))
    state_path = _newest(fs, path, _STATE_PATTERN) if entries else None
    if state_path is None:
        return []
    with fs.open_input_stream(state_path) as stream:
        experiment = json.loads(bytes(stream.readall()).decode("utf-8"))
    kept: list[str] = []
    for index, (trial_state, _runtime) in enumerate(experiment["trial_data"]):
        state = json.loads(trial_state)
        trial_id = state.get("trial_id")
        if trial_id not in entries or state.get("status") in ("TERMINATED", "ERROR"):
            continue
        recorded, runtime = entries[trial_id]
        recorded_state = json.loads(recorded)
        recorded_state["status"] = "TERMINATED"
        experiment["trial_data"][index] = [json.dumps(recorded_state, indent=2), runtime]
        kept.append(trial_id)
    if kept:
        _write(fs, state_path, json.dumps(experiment).encode("utf-8"))
        _release_from_basic_search(fs, path, set(kept))
    return sorted(kept)


def _release_from_basic_search(fs: Any, path: str, trial_ids: set[str]) -> None:
    """Drop completed trials from the basic search algorithm's live set (its saved state)."""
    from ray import cloudpickle

    state_path = _newest(fs, path, _BASIC_SEARCH_PATTERN)
    if state_path is None:
        return
    with fs.open_input_stream(state_path) as stream:
        state = cloudpickle.loads(stream.readall())
    live = state.get("_live_trials") if isinstance(state, dict) else None
    if isinstance(live, set) and live & trial_ids:
        state["_live_trials"] = live - trial_ids
        _write(fs, state_path, cloudpickle.dumps(state))
