"""Trials lost with a node run again; a trial whose own code failed does not.

Tune's ``FailureConfig(max_failures=n)`` runs a failed trial again up to ``n`` times, whatever
failed: a node that went away, or an error the trial's code raised (which would only fail
again, and which the out-of-memory re-runs must see at once). When the user gives no
``FailureConfig`` (Ray's default), a cluster run gets :data:`LOST_TRIAL_RETRIES` retries
(``RADAS_LOST_TRIAL_RETRIES`` in the job's environment) and the trainable is wrapped by
:func:`fail_once`: an error of the trial's code is recorded beside the trial's
results and raised again at once by each retry, without running the code again, so only
trials whose worker was lost (a stopped or crashed node) really run again.

Imports ray: only the driver imports this module.
"""

from __future__ import annotations

import functools
import inspect
import posixpath
from typing import Any

__all__ = ["LOST_TRIAL_RETRIES", "RETRIES_ENV", "fail_once", "failure_config", "retries_from_env"]

#: Retries of a trial whose worker was lost, for cluster runs without a user FailureConfig.
LOST_TRIAL_RETRIES = 2
#: The job's environment variable that changes it (``runtime_env={"env_vars": {...}}``).
RETRIES_ENV = "RADAS_LOST_TRIAL_RETRIES"
_MARKER = "radas_trial_error-{run_id}.pkl"
_NOTE = (
    "radas: raised again from this trial's first execution (a failed trial's code runs once; "
    "only trials lost with their node run again)"
)


def failure_config(user: Any, retries: int) -> Any:
    """The user's FailureConfig, unless it is Ray's default: then one retrying ``retries`` times.

    ``RunConfig`` puts Ray's default (``FailureConfig()``: no retries, not fail-fast) where
    none is given, so that one stands for "none given"; ``retries <= 0`` keeps it.
    """
    from ray.tune import FailureConfig

    if retries <= 0 or (user is not None and user != FailureConfig()):
        return user
    return FailureConfig(max_failures=retries)


def retries_from_env(environ: Any) -> int:
    """``RADAS_LOST_TRIAL_RETRIES`` (default :data:`LOST_TRIAL_RETRIES`; ``0``: no retries).

    Raises:
        RadasValueError: The value is not a whole number from 0 to 100.
    """
    from radas_flows.errors import RadasValueError

    text = environ.get(RETRIES_ENV, "").strip()
    if not text:
        return LOST_TRIAL_RETRIES
    if not text.isdigit() or int(text) > 100:
        raise RadasValueError(
            f"{RETRIES_ENV}={text!r} must be a whole number from 0 to 100 (retries of a trial "
            "whose worker was lost; 0 turns them off), for example "
            f"runtime_env={{'env_vars': {{'{RETRIES_ENV}': '0'}}}}"
        )
    return int(text)


def _marker(storage: Any, run_id: str) -> tuple[Any, str] | None:
    if storage is None or getattr(storage, "trial_dir_name", None) is None:
        return None
    return storage.storage_filesystem, posixpath.join(
        storage.trial_fs_path, _MARKER.format(run_id=run_id)
    )


def _raise_recorded(storage: Any, run_id: str) -> None:
    """Raise the error an earlier execution of this trial recorded, if any."""
    import pyarrow.fs
    from ray import cloudpickle

    where = _marker(storage, run_id)
    if where is None:
        return
    fs, path = where
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return
    with fs.open_input_stream(path) as stream:
        error = cloudpickle.loads(stream.readall())
    if not isinstance(error, BaseException):
        error = RuntimeError(str(error))
    raise error


def _record(storage: Any, run_id: str, error: BaseException) -> None:
    from ray import cloudpickle

    where = _marker(storage, run_id)
    if where is None:
        return
    fs, path = where
    try:
        data = cloudpickle.dumps(error)
    except Exception:
        data = cloudpickle.dumps(f"{type(error).__name__}: {error}")
    try:
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(data)
    except Exception as e:  # then a retry runs the code again, as Tune would
        print(f"[radas] could not record the trial's error: {e}", flush=True)
    if _NOTE not in getattr(error, "__notes__", ()):
        error.add_note(_NOTE)


def _session_storage() -> Any:
    from ray.train._internal import session

    try:
        return session.get_storage()
    except Exception:
        return None


def fail_once(trainable: Any, run_id: str) -> Any:
    """Wrap a function or class trainable so that an error of its code is never run again.

    ``run_id`` keys the record: a later restore of the experiment (a new run id) runs the
    errored trials' code again, as it should.
    """
    if inspect.isclass(trainable):

        class _FailOnce(trainable):
            def setup(self, config: dict[str, Any], *args: Any, **kwargs: Any) -> None:
                _raise_recorded(getattr(self, "_storage", None), run_id)
                try:
                    super().setup(config, *args, **kwargs)
                except Exception as e:
                    _record(getattr(self, "_storage", None), run_id, e)
                    raise

            def step(self) -> Any:
                try:
                    return super().step()
                except Exception as e:
                    _record(getattr(self, "_storage", None), run_id, e)
                    raise

        _FailOnce.__name__ = trainable.__name__
        _FailOnce.__qualname__ = trainable.__qualname__
        return _FailOnce

    @functools.wraps(trainable)
    def trainable_failing_once(config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        storage = _session_storage()
        _raise_recorded(storage, run_id)
        try:
            return trainable(config, *args, **kwargs)
        except Exception as e:
            _record(storage, run_id, e)
            raise

    return trainable_failing_once
