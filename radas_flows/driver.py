"""The driver: builds (or restores) one ``ray.tune.Tuner`` and runs it, locally or in a Ray job."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from radas_flows.errors import RadasValueError
from radas_flows.storage import Storage

if TYPE_CHECKING:
    from radas_flows.secret_plan import TrialSecrets


def _no_secrets() -> TrialSecrets:
    from radas_flows.secret_plan import TrialSecrets

    return TrialSecrets()


SUMMARY_FILE = "radas_summary.json"
#: Trial ids that completed before Tune itself stopped (Ray's memory monitor aborts ``fit()``).
COMPLETED_FILE = "radas_completed_trials.json"


@dataclass
class DriverSpec:
    """Everything the driver needs; picklable so a cluster job can receive it."""

    trainable: Any  # the object, or a "module:attribute" reference resolved where the driver runs
    param_space: dict[str, Any]
    tuner_init_kwargs: dict[str, Any]
    storage_path: str  # "<results root>/<user>"
    name: str  # the full (prefixed, sanitized) experiment name
    resources: dict[str, float]
    mode: Literal["run", "restore"] = "run"
    # Values for a local run; for a cluster job only names of variables of its environment.
    secrets: TrialSecrets = field(default_factory=_no_secrets, repr=False)
    run_id: str = "run"  # key of this run's progress (local) or log marker lines (cluster job)
    # The working directory and experiment_name the folder belongs to (radas_flows.origin).
    origin: dict[str, str] | None = None
    # A cluster job stops when its flow's heartbeat is this many seconds old (None: never).
    follower_timeout_s: float | None = None
    placement: str = ""  # where it runs ("local" or the cluster's name), for the records

    @property
    def experiment_path(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"


def expected_trial_count(param_space: Mapping[str, Any], num_samples: int = 1) -> int | None:
    """Trials a sweep will run: product of grid sizes times ``num_samples`` (None: unbounded).

    Example:
        >>> expected_trial_count({"a": {"grid_search": [1, 2, 3]}, "b": {"grid_search": [0, 1]}})
        6
    """
    if num_samples < 0:
        return None
    count = 1

    def walk(node: Any) -> None:
        nonlocal count
        if isinstance(node, Mapping):
            if set(node) == {"grid_search"} and isinstance(node["grid_search"], list):
                count *= max(len(node["grid_search"]), 1)
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)

    walk(param_space)
    return count * max(num_samples, 1)


def _with_secrets(trainable: Any, secrets: TrialSecrets) -> Any:
    """Give the trainable its real secret values while Tune only ever stores redacted ones.

    A cluster job reads them from its environment here (see ``TrialSecrets.in_job``). Errors
    the trainable raises and metrics it reports are scrubbed of the secrets before Tune
    records them.
    """
    if not secrets:
        return trainable
    from radas_flows.secrets import with_secrets

    resolved = secrets.in_job()
    return with_secrets(trainable, resolved.config, resolved.environ)


def _with_trial_resources(trainable: Any, resources: Mapping[str, float]) -> Any:
    """``tune.with_resources``, except where it would only restate Tune's default.

    A function trainable gets one CPU and no GPU from Tune by default. Annotated resources
    cost every trial a hashed resource request (pickled bundles), so the default leaves the
    function as it is, unless an earlier run annotated this same function with others.
    """
    import inspect

    from ray import tune

    default = {k: v for k, v in resources.items() if v} == {"cpu": 1}
    if (
        default
        and not inspect.isclass(trainable)
        and getattr(trainable, "_resources", None) is None
    ):
        return trainable
    return tune.with_resources(trainable, dict(resources))


def _reuse_actors_default(trainable: Any) -> bool:
    """Reuse trial actors (about 16 ms a trial instead of about 1 s) where it is safe."""
    import inspect

    if os.environ.get("RADAS_REUSE_ACTORS", "1") == "0":
        return False
    if inspect.isclass(trainable):
        from ray.tune import Trainable

        # A class trainable can only be reused when it implements reset_config.
        return getattr(trainable, "reset_config", None) is not Trainable.reset_config
    return True


def build_tune_config(spec: DriverSpec, trainable: Any) -> Any:
    """The user's TuneConfig with radas_flows's fast defaults filled in."""
    from ray import tune

    user = spec.tuner_init_kwargs.get("tune_config") or tune.TuneConfig()
    # TuneConfig.reuse_actors defaults to False; to turn reuse off, set RADAS_REUSE_ACTORS=0.
    reuse = bool(user.reuse_actors) or _reuse_actors_default(trainable)
    return dataclasses.replace(user, reuse_actors=reuse)


def build_run_config(spec: DriverSpec, callbacks: list[Any]) -> Any:
    """The user's RunConfig with our storage path, name and callbacks merged in.

    ``name``, ``storage_path`` and ``storage_filesystem`` are radas_flows's (the spec warned
    about the user's, see ``run_config_notes``); everything else, ``verbose`` included, is the
    user's when given.
    """
    from ray import tune

    user = spec.tuner_init_kwargs.get("run_config") or tune.RunConfig()
    storage = Storage(spec.storage_path)  # a prefect-aws block's filesystem when one is named
    changes: dict[str, Any] = {
        "storage_path": storage.tune_path,
        "storage_filesystem": storage.tune_filesystem(),
        "name": spec.name,
        "callbacks": [*(user.callbacks or []), *callbacks],
    }
    # RunConfig fills in its default verbosity; _verbose keeps what the user passed.
    if getattr(user, "_verbose", user.verbose) is None:
        changes["verbose"] = 1
    return dataclasses.replace(user, **changes)


def resolve_trainable(trainable: Any) -> Any:
    if isinstance(trainable, str):
        from radas_flows.inputs.references import resolve_trainable_reference

        # The driver spec is radas' own (written by the submitting flow, which checked a
        # reference given as a parameter): an object's reference may name an installed module.
        return resolve_trainable_reference(trainable, cwd=os.getcwd(), project_only=False)
    return trainable


_TRIAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def read_completed_ids(experiment: Storage) -> set[str]:
    """Trial ids the driver saw complete before Tune stopped early (empty when it did not).

    Raises:
        RadasValueError: The file holds anything but a JSON list of trial ids (the results
            root may be shared: the message names the file and the bad entry).
    """
    file = experiment.child(COMPLETED_FILE)
    text = file.read_text()
    if not text:
        return set()
    try:
        ids = json.loads(text)
        found = None
    except ValueError as e:
        ids, found = [], f"text that is not JSON ({e})"
    if not isinstance(ids, list):
        found = repr(ids)
    bad = [i for i in ids if not (isinstance(i, str) and _TRIAL_ID.fullmatch(i))]
    if found or bad:
        raise RadasValueError(
            f"{file} must hold a JSON list of trial ids (letters, digits, _ and -), as radas "
            f"writes it; found {found or repr(bad[0])}. Someone else wrote this file: delete it "
            "(trial statuses are then the ones Tune saved) and check who can write the results "
            "root."
        )
    return set(ids)


def write_completed_ids(experiment: Storage, trial_ids: Iterable[str]) -> None:
    """Record the trial ids that completed (written by the driver when ``fit()`` raised)."""
    experiment.child(COMPLETED_FILE).write_text(json.dumps(sorted(set(trial_ids))))


def run_driver(
    spec: DriverSpec, *, print_progress: bool = False, lost_trial_retries: int = 0
) -> Any:
    """Run (or restore) the experiment to its end and return Tune's ``ResultGrid``.

    Ray must already be initialized (a local Ray, or the cluster a job runs on). With
    ``lost_trial_retries`` and no ``FailureConfig`` of the user's, a trial whose worker was
    lost (its node stopped) runs again up to that many times; one whose code raised does not
    (see :mod:`radas_flows._lost_trials`).
    """
    from ray import tune

    from radas_flows._lost_trials import fail_once, failure_config

    trainable = resolve_trainable(spec.trainable)
    user_run_config = spec.tuner_init_kwargs.get("run_config") or tune.RunConfig()
    failures = failure_config(user_run_config.failure_config, lost_trial_retries)
    runnable = _with_secrets(trainable, spec.secrets)
    if failures is not user_run_config.failure_config:  # radas' default: retry lost trials only
        runnable = fail_once(runnable, spec.run_id)
    with_resources = _with_trial_resources(runnable, spec.resources)
    tune_config = build_tune_config(spec, trainable)
    total = expected_trial_count(spec.param_space, tune_config.num_samples)
    from radas_flows._completion_journal import CompletionJournal, apply_journal
    from radas_flows._tune_callbacks import ProgressCallback

    progress = ProgressCallback(
        spec.run_id,
        total,
        print_lines=print_progress,
        experiment_path=spec.experiment_path,
        placement=spec.placement,
    )
    callbacks = [progress, CompletionJournal()]
    if spec.mode == "restore":
        # Trials that completed after Tune's last saved state are kept, not run again.
        kept_ids = apply_journal(spec.experiment_path)
        if kept_ids:
            print(
                f"[radas] {len(kept_ids)} trial{'s' * (len(kept_ids) != 1)} completed after "
                "Tune last saved its state; their recorded results are kept and they do not "
                "run again",
                flush=True,
            )
        experiment = Storage(spec.experiment_path)
        tuner = tune.Tuner.restore(
            experiment.tune_path,
            trainable=with_resources,
            storage_filesystem=experiment.tune_filesystem(),
            resume_unfinished=True,
            resume_errored=True,
            param_space=spec.param_space or None,
        )
        # A restored experiment keeps its stored run config; report progress under this run.
        run_config = tuner._local_tuner.get_run_config()  # type: ignore[union-attr]
        ours = (ProgressCallback, CompletionJournal)
        kept = [c for c in run_config.callbacks or [] if not isinstance(c, ours)]
        run_config.callbacks = [*kept, *callbacks]
        if failures is not None:
            run_config.failure_config = failures
    else:
        Storage(spec.experiment_path).remove()
        if spec.origin is not None:
            from radas_flows.origin import record_origin

            record_origin(spec.experiment_path, spec.origin)
        tuner = tune.Tuner(
            with_resources,
            param_space=spec.param_space,
            tune_config=tune_config,
            run_config=dataclasses.replace(
                build_run_config(spec, callbacks), failure_config=failures
            ),
        )
    try:
        return tuner.fit()
    except Exception:
        # Tune saves its experiment state only now and then, so after fit() itself failed (for
        # example when Ray's memory monitor killed a trial) the stored state may miss trials
        # that completed: record them for the out-of-memory re-runs.
        _record_completed(spec, progress.completed)
        raise


def _record_completed(spec: DriverSpec, trial_ids: set[str]) -> None:
    try:
        write_completed_ids(Storage(spec.experiment_path), trial_ids)
    except Exception as e:  # the original error matters more; say why this is missing
        print(f"[radas] could not record the completed trials: {type(e).__name__}: {e}")


def config_list_searcher(configs: list[dict[str, Any]]) -> Any:
    """A Tune searcher that suggests exactly ``configs``, in order, then finishes.

    Used to re-run chosen trials of a sweep with their exact configs, including configs a
    search algorithm or random sampling drew: pass it as ``TuneConfig(search_alg=...)`` with
    ``num_samples=len(configs)`` and an empty ``param_space``.

    Example:
        ```python
        from ray import tune
        from radas_flows.driver import config_list_searcher

        tune_config = tune.TuneConfig(
            search_alg=config_list_searcher([{"lr": 0.0123}, {"lr": 0.5}]), num_samples=2
        )
        ```
    """
    import copy

    from ray import cloudpickle
    from ray.tune.search import Searcher

    class ConfigListSearcher(Searcher):
        """Suggests the given configs one by one."""

        def __init__(self, configs: list[dict[str, Any]]) -> None:
            super().__init__()
            self.configs = [copy.deepcopy(config) for config in configs]
            self.next_index = 0

        def set_search_properties(
            self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
        ) -> bool:
            return True  # the configs are complete; nothing to sample

        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            if self.next_index >= len(self.configs):
                return Searcher.FINISHED  # type: ignore[return-value]  # Tune's own sentinel
            config = copy.deepcopy(self.configs[self.next_index])
            self.next_index += 1
            return config

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            pass

        def save(self, checkpoint_path: str) -> None:
            with open(checkpoint_path, "wb") as f:
                cloudpickle.dump((self.configs, self.next_index), f)

        def restore(self, checkpoint_path: str) -> None:
            with open(checkpoint_path, "rb") as f:
                self.configs, self.next_index = cloudpickle.load(f)

    return ConfigListSearcher(configs)


def encode_spec(spec: DriverSpec) -> str:
    """Serialize a spec for a job entrypoint (cloudpickle, base64)."""
    from ray import cloudpickle

    return base64.b64encode(cloudpickle.dumps(spec)).decode("ascii")


def decode_spec(data: str) -> DriverSpec:
    import pickle

    spec = pickle.loads(base64.b64decode(data))
    if not isinstance(spec, DriverSpec):
        raise TypeError(f"expected a DriverSpec, got {type(spec).__name__}")
    return spec


def main(argv: list[str] | None = None) -> int:
    """Job entrypoint: ``python -m radas_flows.driver --spec-file FILE`` (or ``--spec B64``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m radas_flows.driver")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--spec", help="base64 cloudpickled DriverSpec")
    group.add_argument("--spec-file", help="file holding the base64 cloudpickled DriverSpec")
    args = parser.parse_args(argv)
    data = args.spec
    if args.spec_file:
        with open(args.spec_file, encoding="ascii") as f:
            data = f.read().strip()
    spec = decode_spec(data)
    sys.path.insert(0, os.getcwd())
    import ray

    ray.init()
    watch = None
    if spec.follower_timeout_s:
        from radas_flows.clusters.heartbeat import Watch, heartbeat_path

        path = heartbeat_path(spec.storage_path, spec.run_id)
        watch = Watch(path, spec.follower_timeout_s).start()
    # A cluster run: trials whose node is lost run again (RADAS_LOST_TRIAL_RETRIES, default 2).
    from radas_flows._lost_trials import retries_from_env

    retries = retries_from_env(os.environ)
    results = run_driver(spec, print_progress=True, lost_trial_retries=retries)
    print(f"[radas] finished: {len(results)} trials, {results.num_errors} errored", flush=True)
    if watch is not None:
        watch.stop()
        if watch.fired:
            print(watch.message(), flush=True)
            return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
