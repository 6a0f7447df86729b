"""The experiment spec: every entry point's inputs, validated once before anything runs."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from radas_flows.errors import RadasValueError
from radas_flows.inputs.plot_settings import (
    AnalysisOptions,
    check_rc_params,
    default_process_df_fn,
    default_process_g_fn,
    default_process_sns_fn,
    default_tuner_to_df_fn,
)
from radas_flows.inputs.references import reference_of, resolve_trainable_reference
from radas_flows.inputs.rules import (
    RunTarget,
    check_user_name,
    parse_run_with,
    plot_format_key,
    supported_plot_formats,
)
from radas_flows.inputs.tuner_settings import run_config_notes
from radas_flows.secret_plan import TrialSecrets, find_secrets
from radas_flows.secret_refs import resolve_stashed
from radas_flows.targets import target_for

#: What ``run_choice`` may say when the experiment exists (``None``: ask).
RunChoice = Literal["run", "restore", "attach", "stop_attach"]
#: The phases ``dos`` may list.
Phase = Literal["run", "analyze"]
RUN_CHOICES: tuple[str, ...] = get_args(RunChoice)
DOS: tuple[str, ...] = get_args(Phase)
#: The run choices that follow a job already running (they start nothing, write no results).
FOLLOW_RUN_CHOICES: tuple[str, ...] = ("attach", "stop_attach")
TUNER_INIT_KWARGS: tuple[str, ...] = ("tune_config", "run_config")
#: The longest results folder name (the sanitized ``<cwd>/<experiment_name>``): 255, the
#: file systems' limit for one name, less room for the ``__oom_round_<n>`` suffix of re-runs.
MAX_FOLDER_NAME = 240
_EMAIL_RE = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")


def sanitize_experiment_name(experiment_name: object, cwd: str | None = None) -> str:
    """Prefix ``experiment_name`` with the working directory; non-alphanumerics become ``_``.

    Raises:
        RadasValueError: The name is empty, holds a non-printing character (control or
            format characters such as NUL, newline, ESC or a zero-width space), or the folder
            name would be longer than :data:`MAX_FOLDER_NAME` characters.

    Example:
        >>> sanitize_experiment_name("my-experiment", cwd="/mnt/data/home/user/project")
        '_mnt_data_home_user_project_my_experiment'
    """
    if not isinstance(experiment_name, str) or not experiment_name.strip():
        raise RadasValueError(
            f"experiment_name={experiment_name!r} is empty: give a short descriptive name, "
            "for example experiment_name='lr-sweep' (it is prefixed with the working directory)."
        )
    name = experiment_name.strip()
    bad = next((c for c in name if unicodedata.category(c)[0] == "C"), None)
    if bad is not None:
        raise RadasValueError(
            f"experiment_name={name!r} contains the non-printing character {bad!r} at position "
            f"{name.index(bad)}: it would reach file names, logs, emails and the UI. Use "
            "printable characters only, for example experiment_name='lr-sweep'."
        )
    base = cwd if cwd is not None else os.getcwd()
    full_name = re.sub(r"[^A-Za-z0-9]", "_", f"{base}/{name}")
    if len(full_name) > MAX_FOLDER_NAME:
        room = MAX_FOLDER_NAME - len(base) - 1
        fix = (
            f"use an experiment_name of at most {room} characters"
            if room > 0
            else "run from a directory with a shorter path"
        )
        raise RadasValueError(
            f"experiment_name={name[:40] + '...' if len(name) > 40 else name!r} "
            f"({len(name)} characters) makes the results folder name {full_name[:40]}... of "
            f"{len(full_name)} characters: the working directory {base!r} and the name, "
            f"sanitized. radas allows {MAX_FOLDER_NAME} (file systems allow 255 characters per "
            f"name; out-of-memory re-run rounds add up to {255 - MAX_FOLDER_NAME}): {fix}."
        )
    return full_name


def check_dos(dos: object) -> tuple[str, ...]:
    """Validate ``dos``: a non-empty list drawn from ``"run"`` and ``"analyze"``."""
    if isinstance(dos, str) or not isinstance(dos, Sequence) or not dos:
        raise RadasValueError(
            f"dos={dos!r} is not valid: use ['run', 'analyze'], ['run'] or ['analyze']."
        )
    unknown = [d for d in dos if d not in DOS]
    if unknown:
        raise RadasValueError(
            f"dos contains unknown entr{'y' if len(unknown) == 1 else 'ies'} {unknown!r}: "
            "use ['run', 'analyze'], ['run'] or ['analyze']."
        )
    if len(set(dos)) != len(dos):
        raise RadasValueError(f"dos={list(dos)!r} repeats an entry: list each phase once.")
    return tuple(d for d in DOS if d in dos)


def check_run_choice(run_choice: object) -> str | None:
    """Validate ``run_choice`` (the run target checks the choices it supports)."""
    if run_choice is None:
        return None
    if run_choice not in RUN_CHOICES:
        raise RadasValueError(
            f"run_choice={run_choice!r} is not valid: use one of "
            + ", ".join(repr(c) for c in RUN_CHOICES)
            + " (or None to be asked when the experiment exists)."
        )
    return str(run_choice)


def check_plot_format(plot_format: object) -> str | None:
    """Validate ``plot_format`` against the formats matplotlib can write."""
    if plot_format is None:
        return None
    fmt = plot_format_key(plot_format)
    if fmt is None:
        raise RadasValueError(
            f"plot_format={plot_format!r} cannot be written by matplotlib: use one of "
            + ", ".join(sorted(supported_plot_formats()))
            + " (or None to skip saving the figure)."
        )
    return fmt


def _check_callable(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise RadasValueError(
            f"{name}={value!r} is not callable: pass a function"
            + (" or None." if optional else ".")
        )


def _check_dict(name: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RadasValueError(f"{name}={value!r} must be a dict (for example {name}={{}}).")
    return dict(value)


def is_trainable(obj: object) -> bool:
    """True for a function trainable or a ``ray.tune.Trainable`` subclass."""
    if inspect.isclass(obj):
        from ray.tune import Trainable

        return issubclass(obj, Trainable)
    return callable(obj)


def check_trainable(trainable: object, *, cwd: str | None = None) -> tuple[Any, str | None]:
    """Return ``(trainable object, "module:attribute" reference or None)``.

    A string is resolved as ``module:attribute`` from the working directory.
    """
    if isinstance(trainable, str):
        return resolve_trainable_reference(trainable, cwd=cwd), trainable
    if trainable is None or not is_trainable(trainable):
        raise RadasValueError(
            f"trainable={trainable!r} is not a trainable: pass a function taking a config dict "
            "(or a ray.tune.Trainable subclass), or a 'module:attribute' reference to one."
        )
    return trainable, reference_of(trainable)


def check_gpu_memory(min_gpu_memory_gb: object) -> float | None:
    """Validate ``min_gpu_memory_gb``: None, or a positive number of GB per GPU."""
    if min_gpu_memory_gb is None:
        return None
    if (
        isinstance(min_gpu_memory_gb, bool)
        or not isinstance(min_gpu_memory_gb, int | float)
        or not min_gpu_memory_gb > 0
    ):
        raise RadasValueError(
            f"min_gpu_memory_gb={min_gpu_memory_gb!r} must be a number of GB greater than 0 "
            "(for example 40), or None."
        )
    return float(min_gpu_memory_gb)


def check_email(address: object) -> str | None:
    """Validate ``email_notification_to_address`` (one or several, comma-separated)."""
    if address is None or address == "":
        return None
    if not isinstance(address, str) or not all(
        _EMAIL_RE.fullmatch(a.strip()) for a in address.split(",")
    ):
        raise RadasValueError(
            f"email_notification_to_address={address!r} is not an email address: use "
            "'name@example.com' (several addresses separated by commas)."
        )
    return address


def check_tuner_init_kwargs(tuner_init_kwargs: object) -> dict[str, Any]:
    """Validate ``tuner_init_kwargs``: ``tune_config`` and ``run_config`` for ``ray.tune.Tuner``."""
    kwargs = _check_dict("tuner_init_kwargs", tuner_init_kwargs)
    unknown = sorted(set(kwargs) - set(TUNER_INIT_KWARGS))
    if unknown:
        hint = ""
        if "param_space" in unknown or "trainable" in unknown:
            hint = " Pass trainable and param_space to run_experiment itself."
        raise RadasValueError(
            f"tuner_init_kwargs has unknown key(s) {unknown!r}: use 'tune_config' "
            "(a ray.tune.TuneConfig) and 'run_config' (a ray.tune.RunConfig)." + hint
        )
    if kwargs:
        from ray import tune

        tc = kwargs.get("tune_config")
        if tc is not None and not isinstance(tc, tune.TuneConfig):
            raise RadasValueError(
                f"tuner_init_kwargs['tune_config']={tc!r} must be a ray.tune.TuneConfig."
            )
        rc = kwargs.get("run_config")
        if rc is not None and not isinstance(rc, tune.RunConfig):
            raise RadasValueError(
                f"tuner_init_kwargs['run_config']={rc!r} must be a ray.tune.RunConfig "
                "(not ray.train.RunConfig, which Tune rejects)."
            )
    return kwargs


@dataclass(frozen=True)
class ExperimentSpec:
    """One validated experiment; every stage reads it, nothing mutates it."""

    user_name: str
    experiment_name: str
    full_name: str
    trainable: Any
    trainable_ref: str | None
    target: RunTarget
    runtime_env: dict[str, Any]
    param_space: dict[str, Any]
    tuner_init_kwargs: dict[str, Any]
    analysis: AnalysisOptions
    dos: tuple[str, ...]
    yes: bool
    run_choice: str | None
    email_notification_to_address: str | None
    cpu_per_trial: float
    cwd: str
    secrets: TrialSecrets = field(default_factory=TrialSecrets, repr=False)
    notes: tuple[str, ...] = ()  # warnings for the run's log: inputs used otherwise than given
    min_gpu_memory_gb: float | None = None  # matched by run_with="auto"

    def replace(self, **changes: Any) -> ExperimentSpec:
        return dataclasses.replace(self, **changes)


def build_spec(
    *,
    user_name: object,
    trainable: object,
    experiment_name: object,
    run_with: object = "local",
    runtime_env: object = None,
    param_space: object = None,
    tuner_init_kwargs: object = None,
    tuner_to_df_fn: Any = None,
    process_df_fn: Any = None,
    process_df_fn_kwargs: object = None,
    process_sns_fn: Any = None,
    plot_fn: Any = None,
    plot_kwargs: object = None,
    rename_mapping: object = None,
    matplotlib_rcParams_update: object = None,
    process_g_fn: Any = None,
    plot_format: object = None,
    dos: object = ("run", "analyze"),
    yes: bool = False,
    run_choice: object = None,
    email_notification_to_address: object = None,
    cpu_per_trial: object = 1,
    cwd: str | None = None,
    cpu_cap: float | None = None,
    min_gpu_memory_gb: object = None,
) -> ExperimentSpec:
    """Validate every argument of ``run_experiment`` and return the immutable spec.

    Secrets (strings under keys such as ``api_key``, ``password``, ``token``, values wrapped in
    ``Secret``, secret-named ``runtime_env`` env_vars; see :mod:`radas_flows.secrets`) are split
    off: ``spec.param_space`` holds ``"***"`` in their place and ``spec.secrets`` says how the
    driver gives them to the trainable, as the run target decides (``Target.trial_secrets``):
    resolved here and registered so that logs scrub them (a local run), or as names of
    variables the job reads on the cluster.

    Raises:
        RadasValueError: naming the first bad value and how to fix it.
    """
    cwd = cwd or os.getcwd()
    user = check_user_name(user_name)
    full_name = sanitize_experiment_name(experiment_name, cwd)
    target = parse_run_with(run_with)
    phases = check_dos(dos)
    placement = target_for(target)
    choice = placement.check_run_choice(check_run_choice(run_choice))
    trainable_obj, trainable_ref = check_trainable(trainable, cwd=cwd)
    tik = check_tuner_init_kwargs(resolve_stashed(tuner_init_kwargs))
    notes = run_config_notes(tik.get("run_config"), full_name)
    space, plain_env, found = find_secrets(
        _check_dict("param_space", param_space), _check_dict("runtime_env", runtime_env), tik
    )
    env = placement.check_runtime_env(plain_env)
    secrets = placement.trial_secrets(found)
    cpus = placement.check_cpu_per_trial(cpu_per_trial, cpu_cap)
    fmt = check_plot_format(plot_format)
    analysis = AnalysisOptions(
        tuner_to_df_fn=tuner_to_df_fn or default_tuner_to_df_fn,
        process_df_fn=process_df_fn or default_process_df_fn,
        process_df_fn_kwargs=_check_dict("process_df_fn_kwargs", process_df_fn_kwargs),
        process_sns_fn=process_sns_fn or default_process_sns_fn,
        plot_fn=plot_fn,
        plot_kwargs=_check_dict("plot_kwargs", plot_kwargs),
        rename_mapping=_check_dict("rename_mapping", rename_mapping),
        matplotlib_rcParams_update=check_rc_params(matplotlib_rcParams_update),
        process_g_fn=process_g_fn or default_process_g_fn,
        plot_format=fmt,
    )
    for name in ("tuner_to_df_fn", "process_df_fn", "process_sns_fn", "process_g_fn"):
        _check_callable(name, getattr(analysis, name))
    _check_callable("plot_fn", plot_fn, optional=True)
    if not isinstance(yes, bool):
        raise RadasValueError(f"yes={yes!r} must be True or False.")
    return ExperimentSpec(
        user_name=user,
        experiment_name=str(experiment_name).strip(),
        full_name=full_name,
        trainable=trainable_obj,
        trainable_ref=trainable_ref,
        target=target,
        runtime_env=env,
        param_space=space,
        tuner_init_kwargs=tik,
        analysis=analysis,
        dos=phases,
        yes=yes,
        run_choice=choice,
        email_notification_to_address=check_email(email_notification_to_address),
        cpu_per_trial=cpus,
        cwd=cwd,
        secrets=secrets,
        notes=tuple(notes),
        min_gpu_memory_gb=check_gpu_memory(min_gpu_memory_gb),
    )
