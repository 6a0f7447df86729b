"""The seam between placements: what a run target is, and the types every target shares."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from radas_flows.errors import RadasError

if TYPE_CHECKING:
    from radas_flows._artifacts import ProgressArtifact
    from radas_flows.driver import DriverSpec
    from radas_flows.inputs.rules import RunTarget
    from radas_flows.inputs.spec import ExperimentSpec
    from radas_flows.secret_plan import FoundSecrets, TrialSecrets
    from radas_flows.tuner import Tuner

__all__ = [
    "PROGRESS_MARKER",
    "ClusterUnavailableError",
    "DriverFailedError",
    "Progress",
    "RunHandle",
    "Target",
    "TargetCheck",
    "progress_percent",
]

#: Prefix of the progress lines a cluster job's driver prints (read back from the job log).
PROGRESS_MARKER = "[radas-progress] "


class ClusterUnavailableError(RadasError):
    """The run target is unknown or offline; ``rows`` holds the availability table."""

    def __init__(self, message: str, rows: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.rows = rows or []


class DriverFailedError(RadasError):
    """The driver itself failed (not a trial): Tune could not run the experiment."""


@dataclass(frozen=True)
class TargetCheck:
    """What the cluster check found out about the run target.

    ``placed``: where a target that chooses (``auto``) placed the run; the stages after the
    check run the spec there. ``fallbacks``: the checks of the other candidates that fit, in
    order, for a failed submission or a lost cluster to move to.
    """

    target: str
    online: bool
    cpus_total: float | None
    gpus_total: float | None
    cpu_cap: float  # the most CPUs one trial may ask for (local CPUs, or cpu_per_node)
    gpu_per_cpu: float
    results_root: str | None
    rows: list[dict[str, Any]]
    placed: RunTarget | None = None
    fallbacks: tuple[TargetCheck, ...] = ()


@dataclass
class RunHandle:
    """A started (or attached) run, as the target that started it follows it.

    Each target subclasses it with what it needs to follow and stop the run.
    """

    run_id: str
    experiment_path: str
    driver_spec: DriverSpec
    started_at: float = field(default_factory=time.time)
    attached: bool = False  # started by someone else: never stopped when following ends early
    stop_requested: bool = False  # stopped on purpose by stop_attach: a STOPPED end is expected
    stopped_elsewhere: str | None = None  # set by follow(): who else may have stopped it, and how


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


class Progress:
    """Where a target reports progress: the progress artifact and one log line per change."""

    def __init__(self, artifact: ProgressArtifact, logger: Any) -> None:
        self.artifact = artifact
        self.logger = logger
        self._last: tuple[Any, ...] | None = None

    def update(self, update: dict[str, Any]) -> None:
        """Take a driver progress update (``finished``, ``errored``, ``total``)."""
        counts = (update.get("finished", 0), update.get("errored", 0), update.get("total"))
        if counts == self._last:
            return
        self._last = counts
        percent = progress_percent(update)
        if percent is not None:
            self.artifact.update(percent)
        self.logger.info(
            "progress: %d/%s trials finished (%d errored)",
            counts[0],
            counts[2] if counts[2] is not None else "?",
            counts[1],
        )

    def done(self) -> None:
        """The run ended with every trial done."""
        self.artifact.update(100.0)


class Target(Protocol):
    """One placement of experiments (this machine, a named Ray cluster...).

    The stages call only these methods; nothing outside a target asks where a run goes.
    """

    name: str  # what tags and reports call it: "local", or the cluster's name

    def check_run_choice(self, run_choice: str | None) -> str | None:
        """Refuse a valid ``run_choice`` this target cannot do (before anything runs)."""
        ...

    def check_runtime_env(self, runtime_env: dict[str, Any]) -> dict[str, Any]:
        """Check a runtime_env against what this target applies (raise naming the fix)."""
        ...

    def check_cpu_per_trial(self, cpu_per_trial: object, cpu_cap: float | None) -> float:
        """Check ``cpu_per_trial`` against the most one trial may get here (or ``cpu_cap``)."""
        ...

    def trial_secrets(self, found: FoundSecrets) -> TrialSecrets:
        """How the run's secrets reach the trainable here (resolved now, or read in the job)."""
        ...

    def check(self, spec: ExperimentSpec) -> TargetCheck:
        """Is the target there, with room for one trial? Raise ClusterUnavailableError if not."""
        ...

    def driver_trainable(self, spec: ExperimentSpec) -> Any:
        """The trainable as the driver receives it here (the object, or its reference)."""
        ...

    def prepare(self, spec: ExperimentSpec) -> None:
        """Start, in the background, what a run of ``spec`` will need here (never raises)."""
        ...

    def submit(
        self, spec: ExperimentSpec, driver_spec: DriverSpec, *, submit_key: str | None
    ) -> RunHandle:
        """Start the driver; ``submit_key`` identifies one submission across retries."""
        ...

    def running_jobs(self, spec: ExperimentSpec) -> list[str]:
        """The ids of the experiment's jobs still running (what attach would follow)."""
        ...

    def attach(self, spec: ExperimentSpec, check: TargetCheck, logger: Any) -> RunHandle | None:
        """Find the experiment's running job (stopping it for stop_attach); None: none runs."""
        ...

    def follow(self, spec: ExperimentSpec, handle: RunHandle, progress: Progress) -> Tuner:
        """Follow the run to its end and return its results."""
        ...

    def stop(self, handle: RunHandle, logger: Any, reason: BaseException) -> None:
        """Following ``handle`` ended early: stop the run unless it must keep running."""
        ...
