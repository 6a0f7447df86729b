"""The ``RADAS_*`` settings of a run's environment, checked before anything is submitted."""

from __future__ import annotations

import os
from collections.abc import Mapping

from radas_flows.errors import RadasValueError

__all__ = ["check_flag", "check_run_environment"]

_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


def check_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Read an on/off variable: ``1``/``true``/``yes`` or ``0``/``false``/``no`` (unset: off).

    Raises:
        RadasValueError: Any other value (it would otherwise be read silently as off).

    Example:
        >>> check_flag("RADAS_KEEP_JOB_ON_EXIT", {"RADAS_KEEP_JOB_ON_EXIT": "Yes"})
        True
    """
    raw = (environ if environ is not None else os.environ).get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RadasValueError(
        f"{name}={raw!r} is neither on nor off: set it to 1 (or true, yes) or 0 (or false, no), "
        "or unset it."
    )


def check_run_environment(*, email: bool, environ: Mapping[str, str] | None = None) -> None:
    """Check every ``RADAS_*`` variable a run reads, so a bad one fails before submission.

    Args:
        email: The run emails its outcome: the SMTP settings must resolve too (a
            ``RADAS_SMTP_BLOCK`` is loaded, so this needs the Prefect API then).
        environ: The environment (default ``os.environ``).

    Raises:
        RadasValueError: Naming the variable, its value and the fix (``EmailConfigError``,
            also a ``ValueError``, for the SMTP settings).
    """
    env = environ if environ is not None else os.environ
    from radas_flows.concurrency import lock_wait_seconds
    from radas_flows.core import results_root
    from radas_flows.oom.rounds import max_oom_rounds

    lock_wait_seconds(env)
    max_oom_rounds(env)
    check_flag("RADAS_KEEP_JOB_ON_EXIT", env)
    if env.get("RADAS_REUSE_ACTORS", "1").strip() not in ("0", "1", ""):
        raise RadasValueError(
            f"RADAS_REUSE_ACTORS={env['RADAS_REUSE_ACTORS']!r} is not 0 or 1: set it to 0 to "
            "start a new worker for every trial, or unset it (1, the default, reuses them)."
        )
    results_root()  # RADAS_RESULTS_ROOT (read from os.environ)
    if email:
        from radas_flows.report import check_notify_retry_settings
        from radas_flows.smtp_settings import resolve_smtp_settings

        check_notify_retry_settings(env)
        resolve_smtp_settings()
