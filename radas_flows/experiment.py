"""``run_experiment``: the radas entry point, running the ``radas`` flow."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from radas_flows.inputs.plot_settings import (
    default_process_df_fn,
    default_process_g_fn,
    default_process_sns_fn,
    default_tuner_to_df_fn,
)


async def run_experiment(
    # Required
    user_name: str,
    trainable: Callable[..., Any],
    experiment_name: str,
    # Cluster
    run_with: str = "local",
    runtime_env: dict[str, Any] = {},  # noqa: B006 - the radas signature; never mutated
    # Parameter Space
    param_space: dict[str, Any] = {},  # noqa: B006
    # Tuner Configuration
    tuner_init_kwargs: dict[str, Any] = {},  # noqa: B006
    # Analysis & Plotting
    tuner_to_df_fn: Callable[..., Any] = default_tuner_to_df_fn,
    process_df_fn: Callable[..., Any] = default_process_df_fn,
    process_df_fn_kwargs: dict[str, Any] = {},  # noqa: B006
    process_sns_fn: Callable[..., Any] = default_process_sns_fn,
    plot_fn: Callable[..., Any] | None = None,
    plot_kwargs: dict[str, Any] = {},  # noqa: B006
    rename_mapping: dict[str, Any] = {},  # noqa: B006
    matplotlib_rcParams_update: dict[str, Any] = {},  # noqa: B006
    process_g_fn: Callable[..., Any] = default_process_g_fn,
    plot_format: str | None = None,
    # Control
    dos: list[str] = ["run", "analyze"],  # noqa: B006
    yes: bool = False,
    run_choice: str | None = None,
    # Notifications
    email_notification_to_address: str | None = None,
    # Resources
    cpu_per_trial: float = 1,
    min_gpu_memory_gb: float | None = None,
) -> dict[str, Any]:
    """Run an experiment with Ray Tune as the Prefect flow ``radas``, then analyze it.

    Every argument is validated before anything starts. ``experiment_name`` is prefixed with the
    current working directory and sanitized. Results are stored under
    ``get_ray_results_dir(user_name)``; the table and figure are saved beside them.

    Args:
        user_name: who runs it; results are stored per user.
        trainable: a function of ``config`` (returning or reporting metrics) or a
            ``ray.tune.Trainable`` subclass; for clusters it must live in a separate file.
        experiment_name: a short name; run, restore, attach and stop_attach are bound to it.
        run_with: ``"local"``, ``"cluster:<name>"``, ``"auto"`` (the registered cluster
            that fits a trial and can start the most trials now) or ``"auto:<a>,<b>"``.
        runtime_env: Ray runtime environment (``working_dir`` is set for you).
        param_space: Tune's parameter space (``tune.grid_search``, ``tune.choice``...); every
            other value reaches the trainable as given.
            Values under secret keys (``api_key``, ``password``, ``token``, ``secret``...)
            reach the trainable but are shown and stored as ``"***"`` everywhere else.
        tuner_init_kwargs: ``tune_config`` (``tune.TuneConfig``) and ``run_config``
            (``tune.RunConfig``) for ``ray.tune.Tuner``.
        tuner_to_df_fn: Tuner → DataFrame.
        process_df_fn: DataFrame → DataFrame, called with ``process_df_fn_kwargs``.
        process_df_fn_kwargs: keyword arguments of ``process_df_fn``.
        process_sns_fn: called with the seaborn module before plotting (theme, palette).
        plot_fn: a seaborn function such as ``sns.lineplot``; None: no figure.
        plot_kwargs: keyword arguments of ``plot_fn`` (``data`` is the DataFrame).
        rename_mapping: columns to rename after ``process_df_fn``.
        matplotlib_rcParams_update: rcParams in effect while plotting.
        process_g_fn: called with what ``plot_fn`` returned (axes or grid).
        plot_format: also save the figure in this format (``"png"``, ``"pdf"``...).
        dos: ``["run", "analyze"]``, ``["run"]`` or ``["analyze"]``.
        yes: answer the "experiment exists" question with its default: restore, or attach
            while a cluster job of the experiment is running.
        run_choice: ``"run"``, ``"restore"``, ``"attach"`` or ``"stop_attach"``.
        email_notification_to_address: where to email the outcome.
        cpu_per_trial: CPUs per trial (a cluster's GPU share follows from it).
        min_gpu_memory_gb: with ``run_with="auto"``: only clusters whose ``gpu_memory_gb``
            (registry) is at least this fit.

    Returns:
        ``{"df": DataFrame, "tuner": radas_flows.Tuner, "fig": matplotlib Figure or None}``.

    Raises:
        radas_flows.oom.OutOfMemoryCapError: Trials still ran out of memory at the largest
            cpu_per_trial allowed; ``error.results`` holds the same dict for what completed.

    Example:
        >>> import asyncio
        >>> from radas_flows import run_experiment
        >>> def trainable(config):
        ...     return {"score": config["a"] * config["b"]}
        >>> results = asyncio.run(run_experiment(  # doctest: +SKIP
        ...     user_name="me", trainable=trainable, experiment_name="my-experiment",
        ...     param_space={"a": {"grid_search": [1, 2, 3]}, "b": 10}, run_choice="run"))
        >>> results["df"][["config/a", "score"]]  # doctest: +SKIP
    """
    from radas_flows.inputs.spec import build_spec

    kwargs: dict[str, Any] = dict(
        user_name=user_name,
        trainable=trainable,
        experiment_name=experiment_name,
        run_with=run_with,
        runtime_env=runtime_env,
        param_space=param_space,
        tuner_init_kwargs=tuner_init_kwargs,
        tuner_to_df_fn=tuner_to_df_fn,
        process_df_fn=process_df_fn,
        process_df_fn_kwargs=process_df_fn_kwargs,
        process_sns_fn=process_sns_fn,
        plot_fn=plot_fn,
        plot_kwargs=plot_kwargs,
        rename_mapping=rename_mapping,
        matplotlib_rcParams_update=matplotlib_rcParams_update,
        process_g_fn=process_g_fn,
        plot_format=plot_format,
        dos=dos,
        yes=yes,
        run_choice=run_choice,
        email_notification_to_address=email_notification_to_address,
        cpu_per_trial=cpu_per_trial,
        min_gpu_memory_gb=min_gpu_memory_gb,
    )
    # Validate everything before Prefect or Ray start: bad input fails here, in milliseconds.
    spec = build_spec(**kwargs, cwd=os.getcwd())
    from radas_flows.inputs.environment import check_run_environment

    check_run_environment(email=False)  # the SMTP settings are checked in the flow
    from radas_flows._startup import start_side_by_side, stop_side_by_side_at_exit

    # The temporary Prefect server, the local Ray and their imports start side by side.
    prefect_ready = start_side_by_side(spec)
    from radas_flows.flows import radas

    # Prefect stores the flow's parameters: secrets (and Tune's config objects, whose every
    # attribute Prefect's encoder would copy) go to the flow as references to values held in
    # this process, never as values (see radas_flows.secret_refs).
    from radas_flows.inputs.flow_params import PythonParamSpace
    from radas_flows.secret_refs import (
        release_secrets,
        stash_objects,
        stash_runtime_env,
        stash_secrets,
    )

    space, stashed = stash_secrets(param_space or {})
    # Built in Python: Tune gets it as given (the JSON grammar is for parameters from JSON).
    kwargs["param_space"] = PythonParamSpace(space=space)
    kwargs["runtime_env"], env_tokens = stash_runtime_env(runtime_env)
    kwargs["tuner_init_kwargs"], object_tokens = stash_objects(tuner_init_kwargs)
    stashed += env_tokens + object_tokens

    def call_flow() -> dict[str, Any]:
        from radas_flows._api_outage import api_unreachable, forget_result, kept_result

        prefect_ready()
        forget_result()
        try:
            return radas(**kwargs)
        except Exception as e:
            result = kept_result()
            if result is None or not api_unreachable(e):
                raise
        finally:
            forget_result()
        # The sweep finished and was analyzed; only Prefect's record of its end is missing.
        logging.getLogger(__name__).warning(
            "The sweep %r finished and its results are stored, but Prefect's API did not "
            "answer to record the end of its flow run, so the Prefect UI may still show that "
            "flow run as Running. Results: %s",
            spec.experiment_name,
            getattr(result.get("tuner"), "experiment_path", None),
        )
        return result

    # The flow blocks while Tune runs; a worker thread keeps the caller's event loop free.
    try:
        return await asyncio.to_thread(call_flow)
    finally:
        release_secrets(stashed)
        stop_side_by_side_at_exit()


def run_experiment_sync(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """``run_experiment`` for scripts without an event loop (same arguments).

    Example:
        >>> from radas_flows import run_experiment_sync
        >>> results = run_experiment_sync(user_name="me", trainable=f,  # doctest: +SKIP
        ...                               experiment_name="x", run_choice="run")
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_experiment(*args, **kwargs))
    raise RuntimeError(
        "run_experiment_sync() was called inside a running event loop: use "
        "`await run_experiment(...)` there instead."
    )
