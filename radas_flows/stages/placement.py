"""Where the run goes after the check: the placed spec, failover at submission, a lost cluster.

A target that chooses (``run_with="auto"``) returns a check that places the run
(``TargetCheck.placed``) and lists the other candidates that fit (``fallbacks``). A
submission that fails for a reason another cluster would not have (the head or its Jobs API
cannot be reached, the cluster became unavailable) moves to the next candidate, each at most
once. A cluster lost while the sweep runs moves it to the next candidate that sees the same
results root (the same ``results_root``: a shared folder or S3), resumed from the stored
results; trials that completed are kept and never run again. Targets that do not choose have
no fallbacks, and nothing changes for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from prefect import get_run_logger

from radas_flows._artifacts import artifact_key, create_table
from radas_flows.errors import RadasError, causes
from radas_flows.inputs.spec import ExperimentSpec
from radas_flows.stages.submit import experiment_submit
from radas_flows.targets import ClusterUnavailableError, RunHandle, TargetCheck

__all__ = [
    "ClusterLostError",
    "Placement",
    "follow_moving",
    "is_placement_failure",
    "placed_spec",
    "submit_placed",
]

T = TypeVar("T")


class ClusterLostError(RadasError):
    """The sweep's cluster went away and the sweep could not move to another one."""


def placed_spec(spec: ExperimentSpec, check: TargetCheck) -> ExperimentSpec:
    """The spec on the target its check placed it on (unchanged when the check placed nothing)."""
    return spec.replace(target=check.placed) if check.placed is not None else spec


def is_placement_failure(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is the cluster's fault, not the sweep's.

    Example:
        >>> is_placement_failure(ConnectionError("refused")), is_placement_failure(ValueError())
        (True, False)
    """
    from radas_flows.clusters.jobs import is_transient_error

    return any(
        isinstance(e, ClusterUnavailableError) or is_transient_error(e) for e in causes(error)
    )


def _name(check: TargetCheck) -> str:
    return check.target.removeprefix("cluster:")


def _reason(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    return text[:300]


@dataclasses.dataclass
class Placement:
    """Where the run is now, and what happened on the way (the decision table's rows)."""

    spec: ExperimentSpec
    check: TargetCheck
    rows: list[dict[str, Any]]
    moves: int = 0  # how often a lost cluster moved the sweep

    def note(self, name: str, text: str) -> None:
        for row in self.rows:
            if row.get("cluster") == name:
                row["submission"] = (
                    f"{row['submission']}; {text}" if row.get("submission") else text
                )

    def publish(self) -> None:
        if self.check.placed is None:
            return
        for row in self.rows:
            row.setdefault("submission", "")
        create_table(
            artifact_key("clusters", self.spec.user_name, self.spec.experiment_name),
            self.rows,
            f"Where {self.spec.experiment_name!r} runs: the candidates of "
            f"run_with, and what happened to the submission",
        )


def submit_placed(
    placement: Placement, mode: Literal["run", "restore"]
) -> tuple[Placement, RunHandle]:
    """Submit on the placed target; on a placement failure, on the next fallback.

    The last candidate gets the submit stage's usual retries; the others none (the next
    candidate is tried at once instead). A restore moves only to candidates with the same
    results root (they see the stored results).

    Raises:
        Exception: The last candidate's error, or the first error that is not a placement
            failure.
    """
    logger = get_run_logger()
    first = placement.check
    options = [dataclasses.replace(first, fallbacks=()), *first.fallbacks]
    for index, current in enumerate(options):
        left = list(options[index + 1 :])
        name = _name(current)
        if mode == "restore" and current.results_root != first.results_root:
            placement.note(name, f"skipped: its results_root {current.results_root} differs")
            continue
        spec = placed_spec(placement.spec, current)
        submit = experiment_submit if not left else experiment_submit.with_options(retries=0)
        try:
            handle = submit(spec, mode, current)
        except Exception as e:
            if not left or not is_placement_failure(e):
                placement.note(name, f"submission failed: {_reason(e)}")
                placement.publish()
                raise
            nxt = _name(left[0])
            placement.note(name, f"submission failed: {_reason(e)}; trying {nxt}")
            logger.warning(
                "Submitting %r to %r failed (%s); trying the next candidate, %r.",
                spec.experiment_name,
                name,
                _reason(e),
                nxt,
            )
            continue
        placement.note(name, f"submitted ({mode})")
        placement = Placement(
            spec,
            dataclasses.replace(current, fallbacks=tuple(left)),
            placement.rows,
            placement.moves,
        )
        placement.publish()
        return placement, handle
    raise ClusterUnavailableError(  # every candidate was skipped
        f"No candidate of run_with can restore {placement.spec.experiment_name!r}: none has "
        f"the results root {first.results_root}."
    )


def follow_moving(
    placement: Placement,
    handle: RunHandle,
    follow: Callable[[Placement, RunHandle], T],
) -> tuple[Placement, RunHandle, T]:
    """Follow the run; if its cluster is lost, resume it on the next candidate that can.

    Returns:
        Where the run ended, the handle of its last submission, and what ``follow`` returned.

    Raises:
        ClusterLostError: The cluster was lost and no candidate sees the stored results (or
            none is left); the message says why.
        Exception: Whatever following raised that is not the cluster's fault.
    """
    logger = get_run_logger()
    while True:
        try:
            return placement, handle, follow(placement, handle)
        except Exception as e:
            if placement.check.placed is None or not is_placement_failure(e):
                raise
            name, root = _name(placement.check), placement.check.results_root
            placement.note(name, f"lost while running: {_reason(e)}")
            shared = [f for f in placement.check.fallbacks if f.results_root == root]
            if not shared:
                others = ", ".join(
                    f"{_name(f)} (results_root {f.results_root})" for f in placement.check.fallbacks
                )
                why = (
                    f"no other candidate has its results root {root}: {others}"
                    if others
                    else "no other candidate fits"
                )
                placement.publish()
                raise ClusterLostError(
                    f"Cluster {name!r} was lost while {placement.spec.experiment_name!r} ran "
                    f"({_reason(e)}), and the sweep could not move: {why}. What finished is "
                    f"stored in {handle.experiment_path}: when {name!r} is back, continue with "
                    "run_choice='restore'; to let a sweep move, give the clusters the same "
                    "shared results_root (a shared folder or s3://)."
                ) from e
            logger.warning(
                "Cluster %r was lost while %r ran (%s); resuming it on %r from %s.",
                name,
                placement.spec.experiment_name,
                _reason(e),
                _name(shared[0]),
                handle.experiment_path,
            )
            moved = Placement(
                placement.spec,
                dataclasses.replace(shared[0], fallbacks=tuple(shared[1:])),
                placement.rows,
                placement.moves + 1,
            )
            placement, handle = submit_placed(moved, "restore")
