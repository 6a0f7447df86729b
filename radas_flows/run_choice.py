"""What to do with an experiment name: run fresh, restore, or only analyze what is stored."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Literal

from radas_flows.errors import ExperimentStateError, RadasValueError
from radas_flows.storage import Storage

Mode = Literal["run", "restore"]
#: What ``decide_mode`` may answer: start the driver (a mode), or follow a running job.
Choice = Literal["run", "restore", "attach", "stop_attach"]


def experiment_exists(path: str) -> bool:
    """True when Tune results of an experiment are stored at ``path``."""
    experiment = Storage(path)
    if not experiment.is_remote and not experiment.is_dir():
        return False  # nothing there: no need to import Tune
    from ray.tune import Tuner

    return bool(
        Tuner.can_restore(experiment.tune_path, storage_filesystem=experiment.tune_filesystem())
    )


def decide_mode(
    *,
    run_choice: str | None,
    exists: bool,
    dos: tuple[str, ...],
    path: str,
    yes: bool = False,
    interactive: bool | None = None,
    ask: Callable[[str], str] = input,
    running: Sequence[str] = (),
    cluster: str | None = None,
) -> Choice | None:
    """What to do for ``run_choice``; None when only analysis was asked for.

    With ``run_choice=None`` and a job of the experiment still ``running`` on ``cluster``, the
    choices that apply are ``attach`` (the default: follow it, nothing is lost) and
    ``stop_attach`` (run and restore would need it to end first). With a stored experiment
    and no running job they are ``restore`` (the default, which loses nothing) and ``run``.
    ``yes=True`` takes the default; on a terminal the user is asked; otherwise it is an error
    naming the values that apply.

    Example:
        >>> decide_mode(run_choice=None, exists=False, dos=("run", "analyze"), path="/r/x")
        'run'
        >>> decide_mode(run_choice=None, exists=True, dos=("run", "analyze"), path="/r/x",
        ...             yes=True, running=["job-1"], cluster="gpu-a")
        'attach'
    """
    if "run" not in dos:
        if not exists:
            raise ExperimentStateError(
                f"dos=['analyze'] found no stored results at {path}: run the experiment first "
                "(dos=['run', 'analyze']) with the same experiment_name, from the same directory."
            )
        return None
    if run_choice == "run":
        return "run"
    if run_choice == "restore":
        if not exists:
            raise ExperimentStateError(
                f"run_choice='restore' found nothing to restore at {path}: start it with "
                "run_choice='run' (same experiment_name, same directory)."
            )
        return "restore"
    if run_choice is not None:
        raise RadasValueError(f"run_choice={run_choice!r} cannot be used here.")
    if running:
        return _choose_for_running_job(running, cluster, path, yes, interactive, ask)
    if not exists:
        return "run"
    if yes:
        return "restore"
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        raise ExperimentStateError(
            f"The experiment already exists at {path} and run_choice=None: set run_choice to "
            "'run' (start fresh, replacing it) or 'restore' (continue it); yes=True restores. "
            "On a cluster, 'attach' and 'stop_attach' apply while a job of it is running."
        )
    while True:
        answer = (
            ask(
                f"Experiment exists at {path}.\n"
                "  [r]estore it (continue unfinished and errored trials, keep results), or\n"
                "  [n]ew run (delete it and start fresh)? [R/n] "
            )
            .strip()
            .lower()
        )
        if answer in ("", "r", "restore"):
            return "restore"
        if answer in ("n", "new", "run"):
            return "run"


def _choose_for_running_job(
    running: Sequence[str],
    cluster: str | None,
    path: str,
    yes: bool,
    interactive: bool | None,
    ask: Callable[[str], str],
) -> Choice:
    """attach or stop_attach, for an experiment whose job is still running."""
    where = f" on cluster {cluster!r}" if cluster else ""
    jobs = ", ".join(running)
    if yes:
        return "attach"
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        raise ExperimentStateError(
            f"A job of the experiment at {path} is still running{where} ({jobs}) and "
            "run_choice=None: set run_choice to 'attach' (follow it to its end) or "
            "'stop_attach' (stop it and analyze what finished); yes=True attaches. "
            "'run' and 'restore' need the job to end first."
        )
    while True:
        answer = (
            ask(
                f"A job of the experiment at {path} is still running{where}: {jobs}.\n"
                "  [a]ttach to it (follow it to its end, then analyze), or\n"
                "  [s]top it and analyze what finished (stop_attach)?\n"
                "  (run and restore need the job to end first) [A/s] "
            )
            .strip()
            .lower()
        )
        if answer in ("", "a", "attach"):
            return "attach"
        if answer in ("s", "stop", "stop_attach"):
            return "stop_attach"
