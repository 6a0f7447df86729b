"""What to do with an experiment name: run fresh, restore, or only analyze what is stored."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Literal

from radas_flows.errors import ExperimentStateError, RadasValueError
from radas_flows.storage import Storage

Mode = Literal["run", "restore"]


def experiment_exists(path: str) -> bool:
    """True when Tune results of an experiment are stored at ``path``."""
    experiment = Storage(path)
    if not experiment.is_remote and not experiment.is_dir():
        return False  # nothing there: no need to import Tune
    from ray.tune import Tuner

    return bool(Tuner.can_restore(experiment.path, storage_filesystem=experiment.tune_filesystem()))


def decide_mode(
    *,
    run_choice: str | None,
    exists: bool,
    dos: tuple[str, ...],
    path: str,
    yes: bool = False,
    interactive: bool | None = None,
    ask: Callable[[str], str] = input,
) -> Mode | None:
    """The run mode for ``run_choice``; None when only analysis was asked for.

    With ``run_choice=None`` and a stored experiment: ``yes=True`` restores it (nothing computed
    is lost); on a terminal the user is asked; otherwise it is an error naming ``run_choice``.

    Example:
        >>> decide_mode(run_choice=None, exists=False, dos=("run", "analyze"), path="/r/x")
        'run'
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
    if not exists:
        return "run"
    if yes:
        return "restore"
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        raise ExperimentStateError(
            f"The experiment already exists at {path} and run_choice=None: set run_choice to "
            "'run' (start fresh, replacing it), 'restore' (continue it), or, on a cluster, "
            "'attach' or 'stop_attach'."
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
