"""The nightly suite: each preset sweep as a dated experiment, fanned out over Ray tasks.

Each preset (a JSON file of ``radas`` flow parameters) becomes one run of the ``radas/sweep``
deployment named ``<experiment_name>-<YYYY-MM-DD>``, so every night is its own experiment
and nothing of an earlier night is reused. The suite flow runs on prefect-ray's
``RayTaskRunner``: one Ray task per experiment starts that child flow run, follows it to its
end and reads its results table back. The Tune run itself happens in the child's own process
(started by a worker), never inside a Ray task, which Ray does not support.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_ray.task_runners import RayTaskRunner

DEFAULT_PRESETS = ["deployments/presets/two_moons_lr.json"]
DEFAULT_TIMEZONE = "Europe/Paris"
#: Experiments of one suite that run at once (the suite's private Ray has this many CPUs).
PARALLEL_ENV = "RADAS_NIGHTLY_PARALLEL"
#: Flow parameters a preset may not set: the suite sets them for each night.
SUITE_SET = ("run_choice",)


class SuiteError(RuntimeError):
    """A preset is invalid, or an experiment of the suite did not complete."""


def night_of(scheduled: datetime, timezone: str) -> str:
    """The date (``YYYY-MM-DD``) of a scheduled run in the schedule's time zone.

    Example:
        >>> from datetime import datetime, timezone
        >>> night_of(datetime(2026, 11, 23, 23, 30, tzinfo=timezone.utc), "Europe/Paris")
        '2026-11-24'
    """
    return scheduled.astimezone(ZoneInfo(timezone)).date().isoformat()


def load_preset(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a preset: a JSON object of ``radas`` flow parameters.

    Raises:
        SuiteError: The file is missing or is not a JSON object.

    Example:
        >>> load_preset("deployments/presets/two_moons_lr.json")["experiment_name"]
        'two-moons-lr'
    """
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError as e:
        raise SuiteError(
            f"preset {str(path)!r} not found in {os.getcwd()}: give a path relative to the "
            "repository root, e.g. 'deployments/presets/two_moons_lr.json'."
        ) from e
    except json.JSONDecodeError as e:
        raise SuiteError(f"preset {str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise SuiteError(f"preset {str(path)!r} must hold a JSON object of flow parameters.")
    return data


def nightly_parameters(
    preset: Mapping[str, Any], night: str, user_name: str | None = None
) -> dict[str, Any]:
    """The ``radas`` parameters of one night's run of a preset: a dated name, a fresh run.

    Example:
        >>> nightly_parameters({"experiment_name": "lr", "user_name": "u"}, "2026-11-24")
        {'experiment_name': 'lr-2026-11-24', 'user_name': 'u', 'run_choice': 'run'}
    """
    taken = [key for key in SUITE_SET if key in preset]
    if taken:
        raise SuiteError(
            f"preset sets {taken}: the suite starts each night's experiment fresh "
            "(run_choice='run' under a dated name); remove it from the preset."
        )
    params = dict(preset)
    params["experiment_name"] = f"{preset.get('experiment_name', 'nightly')}-{night}"
    if user_name:
        params["user_name"] = user_name
    params["run_choice"] = "run"
    return params


def with_flow_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """A preset's parameters, with every other ``radas`` parameter at the flow's own default.

    A deployment's parameters fill in what a run leaves out, and ``radas/sweep``'s are the
    two-moons demo: a preset without ``plot`` would otherwise get the demo's figure.

    Example:
        >>> params = with_flow_defaults({"trainable": "t:f", "experiment_name": "x"})
        >>> params["plot"], params["param_space"], params["tuner"]["num_samples"]
        (None, {}, 1)
    """
    from prefect.utilities.callables import parameter_schema

    from radas_flows.flows import radas

    schema = parameter_schema(radas).model_dump_for_openapi()
    defaults = {
        name: prop["default"] for name, prop in schema["properties"].items() if "default" in prop
    }
    return {**defaults, **params}


def validate_preset(params: dict[str, Any]) -> None:
    """Validate one night's parameters exactly as the ``radas`` flow will, before any run."""
    from radas_flows.flows import radas
    from radas_flows.inputs.flow_params import spec_arguments
    from radas_flows.inputs.spec import build_spec

    validated = radas.validate_parameters(params)
    validated["dos"] = validated.get("dos") or ["run", "analyze"]
    build_spec(**spec_arguments(validated, cwd=os.getcwd()), cwd=os.getcwd())


def best_row(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The row of a results table with the best ``metric`` (``mode`` ``"max"`` or ``"min"``).

    Example:
        >>> best_row([{"score": "1"}, {"score": "3"}, {"score": "nan"}], "score", "max")
        {'score': '3'}
    """
    scored = []
    for row in rows:
        try:
            value = float(row.get(metric))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if value == value:  # not NaN
            scored.append((value, row))
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda item: item[0])[1]


@task(name="suite_experiment", cache_policy=NO_CACHE, persist_result=False)
def suite_experiment(deployment: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one experiment of the suite as a child run of ``deployment`` and summarize it."""
    from prefect.artifacts import Artifact
    from prefect.deployments import run_deployment

    from radas_flows._artifacts import artifact_key

    child = run_deployment(deployment, parameters=params, timeout=None, poll_interval=2)
    state = child.state
    outcome: dict[str, Any] = {
        "experiment": params["experiment_name"],
        "flow_run": child.name,
        "flow_run_id": str(child.id),
        "state": state.type.value if state else "UNKNOWN",
        "best": None,
        "usage": _artifact_rows(
            artifact_key("usage", params["user_name"], params["experiment_name"])
        ),
    }
    tuner = params.get("tuner") or {}
    metric, mode = tuner.get("metric"), tuner.get("mode")
    if metric and mode and outcome["state"] == "COMPLETED":
        key = artifact_key("results", params["user_name"], params["experiment_name"])
        artifact = Artifact.get(key)
        data = getattr(artifact, "data", None)
        rows = json.loads(data) if isinstance(data, str) else data
        row = best_row(list(rows or []), metric, mode)
        if row is not None:
            outcome["best"] = {"metric": metric, "value": row.get(metric)}
    return outcome


def _artifact_rows(key: str) -> list[dict[str, Any]]:
    """The rows of a table artifact (the newest with ``key``), or none when there is none."""
    from prefect.artifacts import Artifact

    try:
        artifact = Artifact.get(key)
    except Exception:
        return []
    data = getattr(artifact, "data", None)
    rows = json.loads(data) if isinstance(data, str) else data
    return [dict(r) for r in rows or [] if isinstance(r, Mapping)]


def night_usage(outcomes: list[dict[str, Any]]) -> list[Any]:
    """The night's CPU-hours and GPU-hours per cluster, summed over its experiments.

    Example:
        >>> rows = [{"cluster": "a", "cpu_hours": 1.0, "gpu_hours": 0.5}]
        >>> [(u.cluster, u.cpu_hours) for u in night_usage([{"usage": rows}, {"usage": rows}])]
        [('a', 2.0)]
    """
    from radas_flows.accounting import sum_usage

    return sum_usage(o.get("usage") or [] for o in outcomes)


def suite_markdown(night: str, outcomes: list[dict[str, Any]]) -> str:
    """The suite's summary table (one row per experiment), and the night's usage per cluster.

    Example:
        >>> print(suite_markdown("2026-11-24", []).splitlines()[0])
        # Nightly suite 2026-11-24
    """
    lines = [f"# Nightly suite {night}", "", "| experiment | state | best | flow run |"]
    lines.append("|---|---|---|---|")
    for o in outcomes:
        best = f"{o['best']['metric']} = {o['best']['value']}" if o.get("best") else ""
        lines.append(f"| {o['experiment']} | {o['state']} | {best} | {o['flow_run']} |")
    usage = night_usage(outcomes)
    if usage:
        lines += ["", f"## Resources used on {night}", ""]
        lines += [
            "| cluster | CPU-hours | GPU-hours | share on out-of-memory trials |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {u.cluster} | {u.cpu_hours:.4g} | {u.gpu_hours:.4g} | {100 * u.oom_share:.1f}% |"
            for u in usage
        ]
    return "\n".join(lines) + "\n"


def _parallel() -> int:
    try:
        return max(1, int(os.environ.get(PARALLEL_ENV, "2")))
    except ValueError:
        return 2


def _run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters
    night = params.get("date") or night_of(
        flow_run.scheduled_start_time, params.get("timezone") or DEFAULT_TIMEZONE
    )
    return f"nightly-{night}"


@flow(
    name="radas-nightly",
    flow_run_name=_run_name,
    task_runner=RayTaskRunner(
        init_kwargs={
            "address": "local",
            "num_cpus": _parallel(),
            "include_dashboard": False,
            "log_to_driver": False,
        }
    ),
    persist_result=False,
    log_prints=True,
)
def nightly(
    presets: list[str] = DEFAULT_PRESETS,
    user_name: str | None = None,
    date: str | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    deployment: str = "radas/sweep",
) -> list[dict[str, Any]]:
    """Run every preset sweep as tonight's experiment, side by side, and compare them.

    Args:
        presets: Preset files (JSON objects of radas flow parameters), relative to the
            repository root.
        user_name: Run every experiment as this user (default: each preset's user_name).
        date: The night, YYYY-MM-DD (default: the scheduled date in `timezone`); set it to
            re-run a past night, which replaces that night's experiments.
        timezone: Time zone of the schedule, for the date in experiment names.
        deployment: The deployment each experiment runs as.

    Returns:
        One summary per experiment: name, child flow run, final state, best metric.

    Example:
        >>> from deployments.nightly import nightly
        >>> nightly(presets=["deployments/presets/two_moons_lr.json"])  # doctest: +SKIP
    """
    from prefect.runtime import flow_run

    from radas_flows._artifacts import create_markdown

    logger = get_run_logger()
    night = date or night_of(flow_run.scheduled_start_time, timezone)
    runs = [
        with_flow_defaults(nightly_parameters(load_preset(p), night, user_name)) for p in presets
    ]
    names = [params["experiment_name"] for params in runs]
    if len(set(names)) != len(names):
        raise SuiteError(f"two presets share an experiment_name: {names}; rename one.")
    for path, params in zip(presets, runs, strict=True):
        try:
            validate_preset(params)
        except Exception as e:
            raise SuiteError(f"preset {path!r} is invalid, nothing was started: {e}") from e
    logger.info("Night %s: %d experiment(s): %s", night, len(runs), ", ".join(names))

    import ray.cloudpickle

    # This file is loaded by path, so Ray workers cannot import it: send its code by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    futures = [suite_experiment.submit(deployment, params) for params in runs]
    outcomes = [future.result() for future in futures]
    create_markdown("radas-nightly-suite", suite_markdown(night, outcomes), f"Nightly {night}")
    failed = [o["experiment"] for o in outcomes if o["state"] != "COMPLETED"]
    if failed:
        raise SuiteError(f"night {night}: experiment(s) {failed} did not complete; see their runs.")
    return outcomes
