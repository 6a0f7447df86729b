"""Inside a trial: put the secrets back, set secret environment variables, redact metrics."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from radas_flows._redaction import (
    redact_process_output,
    redact_text,
    register_secret,
    scrubbed,
)

__all__ = ["redact_metrics", "restore_secrets", "secret_strings", "with_secrets"]

_PATH_SEP = "/"


def _copy_containers(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _copy_containers(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_copy_containers(v) for v in obj]
    return obj


def _plain(value: Any) -> Any:
    getter = getattr(value, "get_secret_value", None)
    return getter() if callable(getter) else value


def restore_secrets(config: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    """Put the secrets found by :func:`radas_flows.secrets.split_secrets` back into a config.

    Args:
        config: The config a trial received (with ``"***"`` placeholders).
        secrets: The flat ``{"path/to/key": value}`` dict of resolved values.

    Returns:
        A copy of ``config`` (containers copied; tuples become lists) holding the real values.
        Missing parent dicts are created.

    Raises:
        ValueError: A secret's path runs through a value that is neither a dict nor a list.

    Example:
        >>> restore_secrets({"a": 1, "wandb": {"api_key": "***"}}, {"wandb/api_key": "k-42"})
        {'a': 1, 'wandb': {'api_key': 'k-42'}}
    """
    out: dict[str, Any] = _copy_containers(config)
    for path, value in secrets.items():
        parts = path.split(_PATH_SEP)
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                try:
                    index = int(part)
                    node[index]
                except (ValueError, IndexError) as e:
                    raise ValueError(
                        f"Cannot restore secret at {path!r}: {part!r} is not an index of the "
                        f"list at that place in the config (length {len(node)})."
                    ) from e
                if last:
                    node[index] = _plain(value)
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = _plain(value)
                else:
                    node = node.setdefault(part, {})
            else:
                raise ValueError(
                    f"Cannot restore secret at {path!r}: the config holds a "
                    f"{type(node).__name__} where a dict or list was expected."
                )
    return out


def secret_strings(secrets: Mapping[str, Any]) -> list[str]:
    """Every non-empty string inside the values of a secrets dict (nested values included).

    Example:
        >>> secret_strings({"wandb/api_key": "k-1", "db/credentials": {"user": "u", "pw": "p-2"}})
        ['k-1', 'u', 'p-2']
    """
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if value:
                found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item)
        else:
            getter = getattr(value, "get_secret_value", None)
            if callable(getter):
                walk(getter())

    for value in secrets.values():
        walk(value)
    return found


def redact_metrics(metrics: Any, values: Iterable[str]) -> Any:
    """Copy reported metrics with each secret value replaced in every string (nested too).

    Example:
        >>> redact_metrics({"score": 1, "echo": "k-9", "n": {"s": "key k-9"}}, ["k-9"])
        {'score': 1, 'echo': '***', 'n': {'s': 'key ***'}}
    """
    values = [v for v in values if isinstance(v, str) and v]
    if not values:
        return metrics

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return redact_text(node, values)
        if isinstance(node, Mapping):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            items = [walk(v) for v in node]
            return items if isinstance(node, list) else tuple(items)
        return node

    return walk(metrics)


def _redact_session_reports(values: list[str]) -> None:
    """Make ``tune.report`` in this trial process redact the secrets from what it reports."""
    try:
        from ray.train._internal.session import get_session
    except ImportError:  # pragma: no cover - another Ray layout: returned metrics still redacted
        return
    session = get_session()
    if session is None or getattr(session, "_radas_redacts", None) is not None:
        return
    original: Callable[..., Any] = session.report

    def report(metrics: Any, *args: Any, **kwargs: Any) -> Any:
        return original(redact_metrics(metrics, values), *args, **kwargs)

    session.report = report  # type: ignore[method-assign]
    session._radas_redacts = values  # type: ignore[attr-defined]


def _in_ray_worker() -> bool:
    """True in a Ray worker process (a trial's), not in a driver or a plain caller."""
    try:
        import ray

        return bool(ray.is_initialized() and ray.get_runtime_context().worker.mode == 1)
    except Exception:
        return False


def with_secrets(
    trainable: Any, secrets: Mapping[str, Any], environ: Mapping[str, Any] | None = None
) -> Any:
    """Wrap a trainable so it gets the real secrets while everything else sees redacted ones.

    Tune stores, logs and shows the redacted config; the wrapper puts the secrets back
    (:func:`restore_secrets`) and sets the secret environment variables in the trial's process
    just before the trainable runs. What the trial process prints through ``sys.stdout`` and
    ``sys.stderr`` is scrubbed of the secrets from then on, and so is any exception the
    trainable raises (which Tune would otherwise write to the trial's ``error.txt`` and report
    everywhere) and every string metric it reports or returns.

    Args:
        trainable: A function of ``config`` or a ``ray.tune.Trainable`` subclass.
        secrets: The flat ``{"path/to/key": value}`` dict of resolved values.
        environ: Environment variables to set in the trial's process (name → value).

    Returns:
        The wrapped trainable (the trainable itself when there are no secrets).

    Example:
        >>> from radas_flows.secrets import split_secrets
        >>> space, found = split_secrets({"a": 1, "api_key": "k-7"})
        >>> wrapped = with_secrets(lambda config: {"echo": config["api_key"]}, found)
        >>> space["api_key"], wrapped(space)
        ('***', {'echo': '***'})
    """
    environ = {name: str(_plain(v)) for name, v in (environ or {}).items()}
    if not secrets and not environ:
        return trainable
    values = secret_strings({**secrets, **environ})

    def enter(config: Mapping[str, Any]) -> dict[str, Any]:
        for value in values:  # what the trial prints goes to its log without them
            register_secret(value)
        if _in_ray_worker():
            redact_process_output()
        os.environ.update(environ)
        _redact_session_reports(values)
        return restore_secrets(config, secrets)

    if inspect.isclass(trainable):

        class _WithSecrets(trainable):
            def setup(self, config: dict[str, Any], *args: Any, **kwargs: Any) -> None:
                with scrubbed(values):
                    super().setup(enter(config), *args, **kwargs)

            def step(self) -> Any:
                with scrubbed(values):
                    return redact_metrics(super().step(), values)

            def reset_config(self, new_config: dict[str, Any]) -> bool:
                with scrubbed(values):
                    return bool(super().reset_config(enter(new_config)))

        _WithSecrets.__name__ = trainable.__name__
        _WithSecrets.__qualname__ = trainable.__qualname__
        return _WithSecrets

    function: Callable[..., Any] = trainable

    @functools.wraps(function)
    def trainable_with_secrets(config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        with scrubbed(values):
            return redact_metrics(function(enter(config), *args, **kwargs), values)

    return trainable_with_secrets
