"""Tune callbacks used by the driver (imports ray; only the driver imports this module)."""

from __future__ import annotations

import json
from typing import Any

from ray.tune import Callback

from radas_flows.targets.base import PROGRESS_MARKER

# Latest progress of the runs in this process, keyed by run id (read by the local monitor).
PROGRESS: dict[str, dict[str, Any]] = {}


class ProgressCallback(Callback):
    """Counts started / completed / errored trials; picklable, as Tune stores its callbacks."""

    def __init__(
        self,
        run_id: str,
        total: int | None,
        *,
        print_lines: bool = False,
        experiment_path: str | None = None,
        placement: str = "",
    ) -> None:
        self.run_id = run_id
        self.experiment_path = experiment_path  # where completed trials are recorded
        self.placement = placement  # where this driver runs (the records name it)
        self.total = total
        self.print_lines = print_lines
        self.started: set[str] = set()
        self.completed: set[str] = set()
        self.errored: set[str] = set()

    def _emit(self) -> None:
        update = {
            "started": len(self.started),
            "completed": len(self.completed),
            "errored": len(self.errored),
            "finished": len(self.completed) + len(self.errored),
            "total": self.total,
        }
        PROGRESS[self.run_id] = update
        if self.print_lines:
            print(PROGRESS_MARKER + json.dumps(update), flush=True)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.started.add(trial.trial_id)
        self._emit()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.completed.add(trial.trial_id)
        self.errored.discard(trial.trial_id)
        if getattr(self, "experiment_path", None):
            from radas_flows._done_trials import record_done

            try:
                record_done(str(self.experiment_path), trial, getattr(self, "placement", ""))
            except Exception as e:  # the sweep goes on; a resumed sweep would run it again
                print(f"[radas] could not record trial {trial.trial_id} as completed: {e}")
        self._emit()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.errored.add(trial.trial_id)
        self._emit()
