"""The ``radas`` Prefect flow: cluster check → submit → monitor → analyze → notify."""

from __future__ import annotations

from typing import Any

from prefect import flow

from radas_flows.pipeline import run_spec
from radas_flows.spec import build_spec


@flow(name="radas", flow_run_name="{experiment_name}", persist_result=False, log_prints=True)
def radas(
    user_name: str,
    trainable: Any,
    experiment_name: str,
    run_with: str = "local",
    runtime_env: dict[str, Any] | None = None,
    param_space: dict[str, Any] | None = None,
    tuner_init_kwargs: dict[str, Any] | None = None,
    tuner_to_df_fn: Any = None,
    process_df_fn: Any = None,
    process_df_fn_kwargs: dict[str, Any] | None = None,
    process_sns_fn: Any = None,
    plot_fn: Any = None,
    plot_kwargs: dict[str, Any] | None = None,
    rename_mapping: dict[str, Any] | None = None,
    matplotlib_rcParams_update: dict[str, Any] | None = None,
    process_g_fn: Any = None,
    plot_format: str | None = None,
    dos: list[str] | None = None,
    yes: bool = False,
    run_choice: str | None = None,
    email_notification_to_address: str | None = None,
    cpu_per_trial: float = 1,
) -> dict[str, Any]:
    """Run one radas experiment as a Prefect flow; the arguments are ``run_experiment``'s.

    Returns:
        ``{"df": DataFrame | None, "tuner": radas_flows.Tuner | None, "fig": Figure | None}``.

    Example:
        >>> from radas_flows.flows import radas
        >>> def trainable(config):
        ...     return {"score": config["a"] * 2}
        >>> radas(user_name="me", trainable=trainable, experiment_name="doc",  # doctest: +SKIP
        ...       param_space={"a": {"grid_search": [1, 2]}}, run_choice="run")
    """
    spec = build_spec(
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
        dos=dos if dos is not None else ["run", "analyze"],
        yes=yes,
        run_choice=run_choice,
        email_notification_to_address=email_notification_to_address,
        cpu_per_trial=cpu_per_trial,
    )
    return run_spec(spec)
