"""SwanLab logging driven by the ``swanlab`` section of a trial's config."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from radas_flows.secrets import REDACTED, redact, register_secret

__all__ = ["rswanlab_finish", "rswanlab_init", "rswanlab_log"]

_SECTION = "swanlab"
_TRACKER_SECTIONS = ("wandb", "swanlab")
_OFFLINE_MODES = ("offline", "local", "disabled")
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
            "radas_flows.secrets.restore_secrets before rswanlab_init."
        )
    if not isinstance(key, str):
        raise TypeError(f"config[{_SECTION!r}]['api_key'] must be a string.")
    register_secret(key)
    return key


def rswanlab_init(config: Mapping[str, Any]) -> Any:
    """Start a SwanLab run when ``config["swanlab"]["enable"]`` is true.

    The section reads ``{"enable": bool, "api_key": str, "init_kwargs": {...}}``;
    ``init_kwargs`` go to ``swanlab.init`` (``project``, ``workspace``, ``mode``, ``log_dir``,
    ...). The run records the trial's config (tracker sections dropped, secrets redacted) unless
    ``init_kwargs`` gives ``config``. In cloud mode the api key logs in with
    ``swanlab.login(api_key=..., save=False)`` (not printed, not saved); in the ``offline``,
    ``local`` and ``disabled`` modes (``init_kwargs["mode"]`` or ``SWANLAB_MODE``) there is no
    login. A run left open by an earlier trial in the same worker is finished first.

    Args:
        config: The trial's config dict.

    Returns:
        The ``swanlab`` run, or ``None`` when the section is missing or disabled.

    Raises:
        ImportError: SwanLab is enabled but not installed.
        ValueError: The api key is still the redaction placeholder.

    Example:
        ```python
        def trainable(config):
            from radas_flows.rswanlab import rswanlab_finish, rswanlab_init, rswanlab_log

            rswanlab_init(config)
            rswanlab_log({"score": config["a"]})
            rswanlab_finish()
            return {"score": config["a"]}
        ```
    """
    global _run
    section = _enabled_section(config)
    if section is None:
        return None
    try:
        swanlab = importlib.import_module("swanlab")
    except ImportError as e:
        raise ImportError(
            "config['swanlab']['enable'] is true but swanlab is not installed; install it with "
            "pip install 'radas-flows[swanlab]' (or set enable to False)."
        ) from e
    api_key = _api_key(section)
    init_kwargs: dict[str, Any] = dict(section.get("init_kwargs") or {})
    init_kwargs.setdefault(
        "config",
        redact({k: v for k, v in config.items() if k not in _TRACKER_SECTIONS}),
    )
    mode = str(init_kwargs.get("mode") or os.environ.get("SWANLAB_MODE") or "online").lower()
    if _run is not None:
        rswanlab_finish()
    if api_key is not None and mode not in _OFFLINE_MODES:
        swanlab.login(api_key=api_key, save=False, relogin=True)
    _run = swanlab.init(**init_kwargs)
    return _run


def rswanlab_log(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log metrics to the run started by :func:`rswanlab_init`; a no-op without one.

    Args:
        metrics: ``{name: value}``.
        step: Optional explicit step.

    Example:
        >>> rswanlab_log({"score": 1.0})  # no run started: nothing happens
    """
    if _run is None:
        return None
    _run.log(dict(metrics), step=step)
    return None


def rswanlab_finish() -> None:
    """Finish the run started by :func:`rswanlab_init`; a no-op without one.

    Example:
        >>> rswanlab_finish()  # no run started: nothing happens
    """
    global _run
    run, _run = _run, None
    if run is not None:
        run.finish()
