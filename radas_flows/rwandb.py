"""Weights & Biases logging driven by the ``wandb`` section of a trial's config."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from radas_flows.secrets import REDACTED, redact, register_secret

__all__ = ["rwandb_finish", "rwandb_init", "rwandb_log"]

_SECTION = "wandb"
_TRACKER_SECTIONS = ("wandb", "swanlab")
_run: Any = None


def _enabled_section(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be the trial's config dict, got {type(config).__name__}.")
    section = config.get(_SECTION)
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise TypeError(
            f"config[{_SECTION!r}] must be a dict such as "
            "{'enable': True, 'api_key': '...', 'init_kwargs': {'project': 'p'}}, "
            f"got {type(section).__name__}."
        )
    return section if section.get("enable", False) else None


def _api_key(section: Mapping[str, Any]) -> str | None:
    key = section.get("api_key")
    if key is None or key == "":
        return None
    if key == REDACTED:
        raise ValueError(
            f"config[{_SECTION!r}]['api_key'] is the redaction placeholder {REDACTED!r}: the real "
            "key was not put back; pass the config through "
            "radas_flows.secrets.restore_secrets before rwandb_init."
        )
    if not isinstance(key, str):
        raise TypeError(f"config[{_SECTION!r}]['api_key'] must be a string.")
    register_secret(key)
    return key


def _trial_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config to record: tracker sections dropped, secrets redacted."""
    return redact({k: v for k, v in config.items() if k not in _TRACKER_SECTIONS})


def rwandb_init(config: Mapping[str, Any]) -> Any:
    """Start a wandb run when ``config["wandb"]["enable"]`` is true.

    The section reads ``{"enable": bool, "api_key": str, "init_kwargs": {...}}``;
    ``init_kwargs`` go to ``wandb.init`` (``project``, ``entity``, ``mode``, ...). The run records
    the trial's config (tracker sections dropped, secrets redacted) unless ``init_kwargs`` gives
    ``config``. The api key logs in through ``wandb.Settings(api_key=...)``: it is not printed,
    put in the environment or written to ``~/.netrc``. A run left open by an earlier trial in the
    same worker is finished first.

    Args:
        config: The trial's config dict.

    Returns:
        The ``wandb`` run, or ``None`` when the section is missing or disabled.

    Raises:
        ImportError: wandb is enabled but not installed.
        ValueError: The api key is still the redaction placeholder.

    Example:
        ```python
        def trainable(config):
            from radas_flows.rwandb import rwandb_finish, rwandb_init, rwandb_log

            rwandb_init(config)
            score = config["a"] + config["b"]
            rwandb_log({"score": score})
            rwandb_finish()
            return {"score": score}
        ```
    """
    global _run
    section = _enabled_section(config)
    if section is None:
        return None
    try:
        wandb = importlib.import_module("wandb")
    except ImportError as e:
        raise ImportError(
            "config['wandb']['enable'] is true but wandb is not installed; install it with "
            "pip install 'radas-flows[wandb]' (or set enable to False)."
        ) from e
    api_key = _api_key(section)
    init_kwargs: dict[str, Any] = dict(section.get("init_kwargs") or {})
    init_kwargs.setdefault("config", _trial_config(config))
    if api_key is not None:
        settings = init_kwargs.get("settings")
        if settings is None:
            init_kwargs["settings"] = wandb.Settings(api_key=api_key)
        elif isinstance(settings, Mapping):
            init_kwargs["settings"] = {**settings, "api_key": api_key}
        else:
            settings.api_key = api_key
    if _run is not None:
        rwandb_finish()
    _run = wandb.init(**init_kwargs)
    return _run


def rwandb_log(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log metrics to the run started by :func:`rwandb_init`; a no-op without one.

    Args:
        metrics: ``{name: value}``.
        step: Optional explicit step.

    Example:
        >>> rwandb_log({"score": 1.0})  # no run started: nothing happens
    """
    if _run is None:
        return None
    _run.log(dict(metrics), step=step)
    return None


def rwandb_finish() -> None:
    """Finish the run started by :func:`rwandb_init`; a no-op without one.

    Example:
        >>> rwandb_finish()  # no run started: nothing happens
    """
    global _run
    run, _run = _run, None
    if run is not None:
        run.finish()
