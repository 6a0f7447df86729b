"""Stage 3, monitor: follow a running experiment to its end, with live progress."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows._artifacts import ProgressArtifact, artifact_key
from radas_flows.errors import RadasError
from radas_flows.inputs.spec import ExperimentSpec
from radas_flows.submission import RunHandle
from radas_flows.tuner import Tuner

POLL_SECONDS = 1.0


class DriverFailedError(RadasError):
    """The driver itself failed (not a trial): Tune could not run the experiment."""


@dataclass
class MonitorResult:
    """How a run ended: the results and each trial's outcome."""

    tuner: Tuner
    outcomes: list[dict[str, Any]]
    duration_s: float

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(o["status"] for o in self.outcomes))


def progress_percent(update: dict[str, Any]) -> float | None:
    """Percentage of finished trials, or None when the total is unknown.

    Example:
        >>> progress_percent({"finished": 3, "total": 12})
        25.0
    """
    total = update.get("total")
    if not total:
        return None
    return 100.0 * min(update.get("finished", 0), total) / total


def follow_local(handle: RunHandle, artifact: ProgressArtifact, logger: Any) -> Any:
    """Wait for the local driver thread, updating progress as trials end."""
    from radas_flows._tune_callbacks import PROGRESS

    assert handle.thread is not None
    last: dict[str, Any] | None = None
    while handle.thread.is_alive():
        handle.thread.join(timeout=POLL_SECONDS)
        update = PROGRESS.get(handle.run_id)
        if update and update != last:
            last = dict(update)
            percent = progress_percent(update)
            if percent is not None:
                artifact.update(percent)
            logger.info(
                "progress: %d/%s trials finished (%d errored)",
                update["finished"],
                update["total"] if update["total"] is not None else "?",
                update["errored"],
            )
    PROGRESS.pop(handle.run_id, None)
    if "error" in handle.outcome:
        error = handle.outcome["error"]
        raise DriverFailedError(
            f"Ray Tune could not run the experiment: {type(error).__name__}: {error}. "
            f"Whatever finished is stored in {handle.experiment_path}; after fixing the cause, "
            "continue with run_choice='restore'."
        ) from error
    artifact.update(100.0)
    return handle.outcome["results"]


@task(name="experiment_monitor", cache_policy=NO_CACHE, persist_result=False)
def experiment_monitor(spec: ExperimentSpec, handle: RunHandle) -> MonitorResult:
    """Follow the experiment to its end and classify each trial's outcome."""
    logger = get_run_logger()
    artifact = ProgressArtifact(
        artifact_key("progress", spec.user_name, spec.experiment_name),
        f"Finished trials of {spec.experiment_name!r}",
    )
    if handle.kind == "local":
        results = follow_local(handle, artifact, logger)
        tuner = Tuner(results, experiment_path=handle.experiment_path)
    else:
        from radas_flows.clusters.monitor import follow_cluster_run

        tuner = follow_cluster_run(spec, handle, artifact, logger)
    outcomes = tuner.trial_outcomes()
    result = MonitorResult(tuner, outcomes, time.time() - handle.started_at)
    logger.info(
        "%r finished in %.1f s: %s",
        spec.experiment_name,
        result.duration_s,
        ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.counts.items())) or "no trials",
    )
    for outcome in outcomes:
        if outcome["status"] == "ERROR":
            logger.warning("trial %s errored: %s", outcome["trial_id"], outcome["error"])
    return result
