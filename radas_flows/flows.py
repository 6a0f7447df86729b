"""The ``radas`` Prefect flow: cluster check → submit → monitor → analyze → notify."""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Annotated, Any

from prefect import flow, tags
from pydantic import Field

from radas_flows.inputs.environment import check_run_environment
from radas_flows.inputs.flow_params import (
    FunctionParameter,
    ParamSpaceParameter,
    PythonObjectsParameter,
    PythonParamSpace,
    TrainableParameter,
    spec_arguments,
)
from radas_flows.inputs.plot_settings import PlotSettings
from radas_flows.inputs.rules import RUN_WITH_PATTERN
from radas_flows.inputs.spec import (
    FOLLOW_RUN_CHOICES,
    ExperimentSpec,
    Phase,
    RunChoice,
    build_spec,
)
from radas_flows.inputs.tuner_settings import TunerSettings
from radas_flows.pipeline import run_spec


def run_tags(spec: ExperimentSpec) -> list[str]:
    """The tags of an experiment's flow run and task runs: user, cluster and experiment.

    Example:
        >>> from radas_flows.inputs.spec import build_spec
        >>> spec = build_spec(user_name="u", experiment_name="lr", trainable=lambda c: {},
        ...                   param_space={}, run_with="cluster:gpu-a", cwd="/p")
        >>> run_tags(spec)
        ['radas', 'user:u', 'cluster:gpu-a', 'experiment:lr']
    """
    from radas_flows.targets import target_for

    return [
        "radas",
        f"user:{spec.user_name}",
        f"cluster:{target_for(spec.target).name}",
        f"experiment:{spec.experiment_name}",
    ]


def _label_flow_run(spec: ExperimentSpec) -> Any:
    """Add the experiment's tags to this flow run (deployments and direct calls alike)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    wanted = run_tags(spec)
    current = list(ctx.flow_run.tags or [])
    missing = [tag for tag in wanted if tag not in current]
    if missing:
        with get_client(sync_client=True) as client:
            client.update_flow_run(ctx.flow_run.id, tags=[*current, *missing])
    return ctx.flow_run.id


def _record_figure(spec: ExperimentSpec, result: dict[str, Any]) -> None:
    """The figure as an artifact of the run, shown in the UI's Artifacts tab."""
    from radas_flows._artifacts import artifact_key, create_figure
    from radas_flows.analysis import FIGURE_STEM
    from radas_flows.stages.analyze import output_dir

    fig = result.get("fig")
    if fig is None:
        return
    fmt = spec.analysis.plot_format
    results_path = getattr(result.get("tuner"), "experiment_path", None)
    path = None
    if fmt and results_path:
        candidate = os.path.join(output_dir(spec, results_path), f"{FIGURE_STEM}.{fmt}")
        path = candidate if os.path.exists(candidate) else None
    create_figure(
        artifact_key("figure", spec.user_name, spec.experiment_name),
        fig,
        spec.experiment_name,
        path,
    )


def _experiment_lock(spec: ExperimentSpec, flow_run_id: Any) -> Any:
    """The experiment's lock for runs that write results; none for attach and stop_attach.

    ``attach`` and ``stop_attach`` follow (and may stop) a cluster job that another flow
    may still be following; they submit nothing, so they do not wait for that flow.
    """
    from radas_flows.concurrency import experiment_lock, lock_wait_seconds

    if spec.run_choice in FOLLOW_RUN_CHOICES:
        return nullcontext(None)
    return experiment_lock(
        user_name=spec.user_name,
        full_name=spec.full_name,
        experiment_name=spec.experiment_name,
        tags=[f"user:{spec.user_name}", f"experiment:{spec.experiment_name}"],
        flow_run_id=flow_run_id,
        wait_s=lock_wait_seconds(),
    )


@flow(name="radas", flow_run_name="{experiment_name}", persist_result=False, log_prints=True)
def radas(
    user_name: str | None = None,
    *,
    trainable: TrainableParameter,
    experiment_name: Annotated[str, Field(min_length=1)],
    run_with: Annotated[str, Field(pattern=RUN_WITH_PATTERN)] = "local",
    param_space: ParamSpaceParameter = {},  # noqa: B006 - never mutated
    tuner: TunerSettings | None = TunerSettings(),
    plot: PlotSettings | None = None,
    run_choice: RunChoice | None = None,
    dos: list[Phase] | None = None,
    cpu_per_trial: Annotated[float, Field(gt=0)] = 1,
    min_gpu_memory_gb: Annotated[float, Field(gt=0)] | None = None,
    email_notification_to_address: str | None = None,
    runtime_env: dict[str, Any] | None = None,
    yes: bool = False,
    tuner_init_kwargs: PythonObjectsParameter = None,
    tuner_to_df_fn: FunctionParameter = None,
    process_df_fn: FunctionParameter = None,
    process_df_fn_kwargs: dict[str, Any] | None = None,
    process_sns_fn: FunctionParameter = None,
    plot_fn: FunctionParameter = None,
    plot_kwargs: dict[str, Any] | None = None,
    rename_mapping: dict[str, Any] | None = None,
    matplotlib_rcParams_update: dict[str, Any] | None = None,
    process_g_fn: FunctionParameter = None,
    plot_format: str | None = None,
) -> dict[str, Any]:
    """Run one radas experiment: check the target, run Tune, analyze, notify.

    Every parameter travels as JSON (deployments, the UI's run form, ``--param``); Python
    callers may pass the objects ``run_experiment`` takes instead (functions, Tune search
    spaces, ``TuneConfig``). Everything is validated before anything is submitted. Only one
    run of an experiment (user + experiment name) runs at a time; ``attach`` and
    ``stop_attach`` may follow a cluster job another flow follows too.

    Args:
        user_name: Who runs it; results are stored per user (letters, digits, . _ -).
            Empty: the OS user the flow runs as (for a deployment run, the worker's).
        trainable: The trainable as `module:attribute`, imported from the run's working
            directory, e.g. `examples.two_moons.trainable:trainable`.
        experiment_name: A short name; runs, restores and analyses are bound to it. The flow
            run is named after it.
        run_with: `local` (this machine), `cluster:<name>` (a cluster of the registry),
            `auto` (the cluster that fits a trial and can start the most trials now) or
            `auto:<a>,<b>` (chosen among those; `local` only when named).
        param_space: Search space as JSON: {"grid_search": [..]}, {"choice": [..]},
            {"uniform": [lo, hi]}, {"quniform": [lo, hi, q]}, {"loguniform": [lo, hi]},
            {"randint": [lo, hi]} (also qloguniform, qrandint, lograndint, qlograndint,
            randn, qrandn); other objects nest, other values are fixed.
        tuner: Tune settings: num_samples, metric and mode, max_concurrent_trials, a search
            algorithm (basic, optuna, hyperopt, bayesopt) and a scheduler (asha, hyperband,
            median_stopping, pbt) by name with kwargs, stop criteria, time budget.
        plot: The results figure: a seaborn function by name, its kwargs (columns of the
            results table, e.g. "config/lr"), and the file format (png, svg, pdf...).
        run_choice: 'run' (start fresh, replacing a stored run), 'restore' (continue it),
            'attach' or 'stop_attach' (cluster runs only). Empty: 'run' for a new experiment;
            an existing one needs a choice.
        dos: ["run", "analyze"] (default), ["run"] or ["analyze"] (analyze stored results).
        cpu_per_trial: CPUs per trial (the GPU share follows from it).
        min_gpu_memory_gb: With `auto`: GB of memory a trial's GPU needs (matched against
            the registry's `gpu_memory_gb`).
        email_notification_to_address: Where to email the outcome (comma-separated).
        runtime_env: Ray runtime environment (pip, uv, conda, env_vars, ...);
            working_dir is always the run's working directory.
        yes: Answer the "experiment exists" question with its default: restore, or attach
            while a cluster job of the experiment is running.
        tuner_init_kwargs: Python callers only: tune_config and run_config objects. From
            JSON use `tuner`.
        tuner_to_df_fn: Results → DataFrame: a function, or `module:attribute`.
        process_df_fn: DataFrame → DataFrame: a function, or `module:attribute`.
        process_df_fn_kwargs: Keyword arguments of process_df_fn.
        process_sns_fn: Called with the seaborn module before plotting (theme, palette).
        plot_fn: Python callers: a seaborn function. From JSON use `plot`.
        plot_kwargs: Keyword arguments of plot_fn (with plot_fn; from JSON use `plot`).
        rename_mapping: Columns to rename after process_df_fn, {"old": "new"}.
        matplotlib_rcParams_update: rcParams in effect while plotting, e.g.
            {"figure.figsize": [7, 4.5]}.
        process_g_fn: Called with what the plot function returned (axes or grid).
        plot_format: With plot_fn: also save the figure in this format. From JSON use `plot`.

    Returns:
        ``{"df": DataFrame | None, "tuner": radas_flows.Tuner | None, "fig": Figure | None}``.

    Example:
        >>> from radas_flows.flows import radas
        >>> radas(  # doctest: +SKIP
        ...     user_name="me",
        ...     trainable="examples.two_moons.trainable:trainable",
        ...     experiment_name="doc",
        ...     param_space={"lr": {"loguniform": [1e-4, 1e-1]}, "seed": 0, "epochs": 5},
        ...     tuner={"num_samples": 3, "metric": "accuracy", "mode": "max"},
        ...     plot={"fn": "lineplot", "kwargs": {"x": "epoch", "y": "accuracy"}},
        ...     run_choice="run",
        ... )
    """
    from radas_flows.secret_refs import refuse_literal_parameters

    refuse_literal_parameters(
        param_space.space if isinstance(param_space, PythonParamSpace) else param_space,
        runtime_env,
    )
    cwd = os.getcwd()
    if user_name is None:
        from radas_flows.inputs.rules import current_user_name

        user_name = current_user_name()
    arguments = spec_arguments(
        {
            "user_name": user_name,
            "trainable": trainable,
            "experiment_name": experiment_name,
            "run_with": run_with,
            "param_space": param_space,
            "tuner": tuner,
            "plot": plot,
            "run_choice": run_choice,
            "dos": dos if dos is not None else ["run", "analyze"],
            "cpu_per_trial": cpu_per_trial,
            "min_gpu_memory_gb": min_gpu_memory_gb,
            "email_notification_to_address": email_notification_to_address,
            "runtime_env": runtime_env,
            "yes": yes,
            "tuner_init_kwargs": tuner_init_kwargs,
            "tuner_to_df_fn": tuner_to_df_fn,
            "process_df_fn": process_df_fn,
            "process_df_fn_kwargs": process_df_fn_kwargs,
            "process_sns_fn": process_sns_fn,
            "plot_fn": plot_fn,
            "plot_kwargs": plot_kwargs,
            "rename_mapping": rename_mapping,
            "matplotlib_rcParams_update": matplotlib_rcParams_update,
            "process_g_fn": process_g_fn,
            "plot_format": plot_format,
        },
        cwd=cwd,
    )
    spec = build_spec(**arguments, cwd=cwd)
    check_run_environment(email=spec.email_notification_to_address is not None)
    from radas_flows.inputs.deployment_defaults import deployment_notes

    # A run of another trainable that kept the deployment's tuner, plot or space is told so.
    spec = spec.replace(notes=(*spec.notes, *deployment_notes()))
    from radas_flows._api_outage import keep_result

    flow_run_id = _label_flow_run(spec)
    with _experiment_lock(spec, flow_run_id), tags(*run_tags(spec)):
        from radas_flows.targets import target_for

        # The local Ray starts in the background while the target is checked
        # (``run_experiment`` has started it already, beside the temporary server).
        target_for(spec.target).prepare(spec)
        try:
            result = run_spec(spec)
        except Exception as e:
            partial = getattr(e, "results", None)  # the out-of-memory cap: analyzed, then raised
            if isinstance(partial, dict):
                _record_figure(spec, partial)
            raise
        _record_figure(spec, result)
    keep_result(result)  # for the caller, if Prefect cannot record the flow's end
    return result
