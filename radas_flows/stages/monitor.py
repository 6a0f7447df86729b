"""Stage 3, monitor: follow a running experiment to its end, with live progress."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from radas_flows._artifacts import ProgressArtifact, artifact_key
from radas_flows._redaction import scrub_errors
from radas_flows.inputs.spec import ExperimentSpec
from radas_flows.targets import Progress, RunHandle, target_for
from radas_flows.tuner import Tuner

__all__ = ["MonitorResult", "experiment_monitor", "follow_run"]


@dataclass
class MonitorResult:
    """How a run ended: the results and each trial's outcome."""

    tuner: Tuner
    outcomes: list[dict[str, Any]]
    duration_s: float

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(o["status"] for o in self.outcomes))


def follow_run(spec: ExperimentSpec, handle: RunHandle, logger: Any) -> MonitorResult:
    """Follow ``handle`` on its target to the end; log how it went, trial by trial."""
    progress = Progress(
        ProgressArtifact(
            artifact_key("progress", spec.user_name, spec.experiment_name),
            f"Finished trials of {spec.experiment_name!r}",
        ),
        logger,
    )
    tuner = target_for(spec.target).follow(spec, handle, progress)
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


@task(name="experiment_monitor", cache_policy=NO_CACHE, persist_result=False)
@scrub_errors
def experiment_monitor(spec: ExperimentSpec, handle: RunHandle) -> MonitorResult:
    """Follow the experiment to its end and classify each trial's outcome."""
    return follow_run(spec, handle, get_run_logger())
