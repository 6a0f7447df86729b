"""The auto target: ``run_with="auto"`` places the sweep on the registered cluster that fits it.

Every candidate is probed at once. A candidate fits when it is online, reports its resources,
accepts its token, and one trial fits on it: ``cpu_per_trial`` within ``cpu_per_node`` and the
cluster's CPUs, the GPU share (``cpu_per_trial * gpu_per_cpu``) within its GPUs, and a stated
``min_gpu_memory_gb`` within the registry's ``gpu_memory_gb``. Among those that fit, the one
that can start the most trials now wins, then the registry's ``default = true``, then the
order (the registry's, or the ``auto:<a>,<b>`` list's). The others that fit are the
fallbacks a failed submission or a lost cluster moves to (:mod:`radas_flows.stages.placement`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from radas_flows._artifacts import run_logger
from radas_flows.errors import RadasValueError
from radas_flows.inputs.rules import RunTarget, check_cpu_per_trial
from radas_flows.inputs.runtime_env import check_runtime_env
from radas_flows.targets.base import ClusterUnavailableError, Progress, RunHandle, TargetCheck

if TYPE_CHECKING:
    from radas_flows.clusters.availability import ClusterStatus
    from radas_flows.clusters.registry import ClusterConfig
    from radas_flows.driver import DriverSpec
    from radas_flows.inputs.spec import ExperimentSpec
    from radas_flows.secret_plan import FoundSecrets, TrialSecrets
    from radas_flows.tuner import Tuner

__all__ = ["AutoTarget", "Candidate", "decision_text"]

LOCAL = "local"


@dataclasses.dataclass
class Candidate:
    """One candidate of the choice, as the decision table shows it."""

    name: str
    online: bool = False
    cpus_free: float | None = None
    gpus_free: float | None = None
    fits: bool = False
    startable: int = 0
    default: bool = False
    reason: str = ""
    check: TargetCheck | None = None

    def row(self, chosen: str | None) -> dict[str, str]:
        free = "" if self.cpus_free is None else f"{self.cpus_free:g} CPUs"
        if self.gpus_free:
            free += f", {self.gpus_free:g} GPUs"
        return {
            "cluster": self.name,
            "online": "yes" if self.online else "no",
            "free": free,
            "fits": "yes" if self.fits else "no",
            "trials startable now": str(self.startable) if self.fits else "",
            "default": "yes" if self.default else "",
            "chosen": "yes" if self.name == chosen else "",
            "reason": self.reason,
        }


def decision_text(rows: list[dict[str, str]]) -> str:
    """The decision table as log lines, one per candidate."""
    return "\n".join(
        f"- {r['cluster']}: online={r['online']} free=[{r['free']}] fits={r['fits']} "
        f"chosen={r['chosen'] or 'no'} ({r['reason']})"
        for r in rows
    )


def _startable(free: float | None, need: float) -> int:
    if not need:
        return 10**9
    return max(math.floor((free or 0.0) / need + 1e-9), 0)


class AutoTarget:
    """The best-fitting registered cluster (or ``local`` when named), chosen at the check."""

    name = "auto"

    def __init__(self, candidates: tuple[str, ...] = ()) -> None:
        self.candidates = candidates

    def check_run_choice(self, run_choice: str | None) -> str | None:
        if run_choice in ("attach", "stop_attach"):
            raise RadasValueError(
                f"run_choice={run_choice!r} follows a job already running on one cluster: "
                "name it with run_with='cluster:<name>' (run_with='auto' chooses a cluster "
                "for a new run or a restore)."
            )
        return run_choice

    def check_runtime_env(self, runtime_env: dict[str, Any]) -> dict[str, Any]:
        return check_runtime_env(runtime_env, local=False)

    def trial_secrets(self, found: FoundSecrets) -> TrialSecrets:
        """Names of variables the job reads on whichever cluster is chosen."""
        return found.references_for_job("the chosen cluster")

    def check_cpu_per_trial(self, cpu_per_trial: object, cpu_cap: float | None) -> float:
        """Checked against every candidate by :meth:`check`."""
        return check_cpu_per_trial(cpu_per_trial, cpu_cap, "cpu_per_node of the chosen cluster")

    def driver_trainable(self, spec: ExperimentSpec) -> str:
        from radas_flows.targets.cluster import ClusterTarget

        return ClusterTarget("auto").driver_trainable(spec)

    # -- the choice --------------------------------------------------------------------------

    def check(self, spec: ExperimentSpec) -> TargetCheck:
        """Choose where the sweep runs; the check returned places it (``placed``).

        Raises:
            ClusterUnavailableError: No candidate fits (``.rows``: the decision table).
        """
        from radas_flows.clusters.availability import probe_clusters
        from radas_flows.clusters.jobs import merge_runtime_env
        from radas_flows.clusters.registry import load_registry

        clusters = load_registry()
        names = list(self.candidates) or list(clusters)
        if not names:
            raise ClusterUnavailableError(
                "run_with='auto' has no candidates: no cluster registry names a cluster (looked "
                "in $RADAS_CLUSTERS_FILE, ./radas_clusters.toml, ~/.config/radas/clusters.toml). "
                "Add clusters there, or use run_with='local'."
            )
        unknown = [n for n in names if n != LOCAL and n not in clusters]
        if unknown:
            known = ", ".join(repr(n) for n in clusters) or "none"
            raise ClusterUnavailableError(
                f"run_with={str(spec.target)!r} names {unknown!r}, which the cluster registry "
                f"does not hold (clusters: {known}). Name clusters of the registry, or 'local'."
            )
        if any(n != LOCAL for n in names):
            self.driver_trainable(spec)
            merge_runtime_env(spec.runtime_env, spec.cwd)
        remote = [n for n in names if n != LOCAL]
        statuses = {s.name: s for s in probe_clusters(remote, timeout=2.0)} if remote else {}
        candidates = [
            self._local(spec) if n == LOCAL else self._cluster(spec, clusters[n], statuses[n])
            for n in names
        ]
        fitting = sorted(
            (c for c in candidates if c.fits),
            key=lambda c: (-c.startable, not c.default, names.index(c.name)),
        )
        chosen = fitting[0].name if fitting else None
        if fitting:
            fitting[0].reason = self._why(fitting[0], fitting)
        rows = [c.row(chosen) for c in candidates]
        logger = run_logger("radas_flows.targets")
        if not fitting:
            raise ClusterUnavailableError(
                f"run_with={str(spec.target)!r}: no candidate can run a trial of "
                f"cpu_per_trial={spec.cpu_per_trial:g}"
                + (
                    f" with min_gpu_memory_gb={spec.min_gpu_memory_gb:g}"
                    if spec.min_gpu_memory_gb
                    else ""
                )
                + f". Candidates:\n{decision_text(rows)}\nLower cpu_per_trial, start a "
                "cluster, or name others with run_with='auto:<name>,<name>'.",
                rows,
            )
        logger.info(
            "run_with=%r chose %r for %r:\n%s",
            str(spec.target),
            chosen,
            spec.experiment_name,
            decision_text(rows),
        )
        checks = []
        for c in fitting:
            assert c.check is not None
            checks.append(dataclasses.replace(c.check, rows=rows))
        return dataclasses.replace(checks[0], fallbacks=tuple(checks[1:]))

    @staticmethod
    def _why(c: Candidate, fitting: list[Candidate]) -> str:
        if len(fitting) == 1:
            return "the only candidate that fits"
        if any(o.startable != c.startable for o in fitting[1:]):
            return f"fits and can start the most trials now ({c.startable:g})"
        if c.default:
            return "fits; as many trials startable now as the others, and the registry's default"
        return "fits; as many trials startable now as the others, and first in order"

    def _fit_problem(
        self, spec: ExperimentSpec, cap: float, cpus: float | None, gpus: float | None, gpu: float
    ) -> str | None:
        need = spec.cpu_per_trial
        if need > cap:
            return f"cpu_per_trial={need:g} is more than its cpu_per_node ({cap:g})"
        if cpus is not None and need > cpus:
            return f"cpu_per_trial={need:g} is more than all its CPUs ({cpus:g})"
        if gpus is not None and gpu > gpus + 1e-9:
            return f"a trial's GPU share ({gpu:g}) is more than all its GPUs ({gpus:g})"
        return None

    def _cluster(
        self, spec: ExperimentSpec, config: ClusterConfig, status: ClusterStatus
    ) -> Candidate:
        from radas_flows.clusters.jobs import job_client
        from radas_flows.core import results_root
        from radas_flows.oom.policy import gpu_share

        c = Candidate(config.name, status.online, status.cpus_free, status.gpus_free)
        c.default = config.default
        if not status.online or status.cpus_total is None:
            c.reason = status.error or "offline"
            return c
        gpu = gpu_share(spec.cpu_per_trial, config.gpu_per_cpu)
        problem = self._fit_problem(
            spec, float(config.cpu_per_node), status.cpus_total, status.gpus_total, gpu
        )
        need_memory = spec.min_gpu_memory_gb
        if problem is None and need_memory:
            if not gpu:
                problem = f"gives a trial no GPU (gpu_per_cpu = {config.gpu_per_cpu:g})"
            elif config.gpu_memory_gb is None:
                problem = f"its registry entry states no gpu_memory_gb (needed: {need_memory:g})"
            elif config.gpu_memory_gb < need_memory:
                problem = f"its GPUs have {config.gpu_memory_gb:g} GB, less than {need_memory:g}"
        if problem is None:
            try:
                job_client(config)  # the token is read and checked before anything is chosen
            except Exception as e:
                problem = f"{type(e).__name__}: {e}"
        if problem is not None:
            c.reason = problem
            return c
        c.fits = True
        c.startable = min(
            _startable(status.cpus_free, spec.cpu_per_trial), _startable(status.gpus_free, gpu)
        )
        c.reason = f"fits; {c.startable} trial(s) can start now"
        c.check = TargetCheck(
            target=f"cluster:{config.name}",
            online=True,
            cpus_total=status.cpus_total,
            gpus_total=status.gpus_total,
            cpu_cap=float(config.cpu_per_node),
            gpu_per_cpu=config.gpu_per_cpu,
            results_root=config.results_root or results_root(),
            rows=[],
            placed=RunTarget("cluster", config.name),
        )
        return c

    def _local(self, spec: ExperimentSpec) -> Candidate:
        from radas_flows.targets.local import LocalTarget

        check = LocalTarget().check(spec)
        cpus = float(check.cpus_total or 0)
        c = Candidate(LOCAL, True, cpus, 0.0)
        problem = self._fit_problem(spec, cpus, cpus, None, 0.0)
        if problem is None and spec.min_gpu_memory_gb:
            problem = "a local trial gets no GPU share"
        if problem is not None:
            c.reason = problem
            return c
        c.fits, c.startable = True, _startable(cpus, spec.cpu_per_trial)
        c.reason = f"fits; {c.startable} trial(s) can start now (this machine's CPUs)"
        c.check = dataclasses.replace(check, placed=RunTarget("local"))
        return c

    # -- the rest: the check placed the run on a cluster target or the local one ------------

    def prepare(self, spec: ExperimentSpec) -> None:
        """Nothing to start ahead: where the run goes is known only after the check."""

    def submit(
        self, spec: ExperimentSpec, driver_spec: DriverSpec, *, submit_key: str | None
    ) -> RunHandle:
        raise _not_placed()

    def running_jobs(self, spec: ExperimentSpec) -> list[str]:
        raise _not_placed()

    def attach(self, spec: ExperimentSpec, check: TargetCheck, logger: Any) -> RunHandle | None:
        raise _not_placed()

    def follow(self, spec: ExperimentSpec, handle: RunHandle, progress: Progress) -> Tuner:
        return _placed_target(handle).follow(spec, handle, progress)

    def stop(self, handle: RunHandle, logger: Any, reason: BaseException) -> None:
        _placed_target(handle).stop(handle, logger, reason)


def _not_placed() -> RadasValueError:
    return RadasValueError(
        "run_with='auto' is placed by its check: run the spec its check placed "
        "(radas_flows.stages.placement.placed_spec), not the auto target itself."
    )


def _placed_target(handle: RunHandle) -> Any:
    from radas_flows.targets import target_for

    cluster = getattr(handle, "cluster", None)
    return target_for(RunTarget("cluster", cluster) if cluster else RunTarget("local"))
