"""Which secrets a run has, and how each reaches the trainable (resolved here, or in the job)."""

from __future__ import annotations

import inspect
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from radas_flows.errors import RadasValueError
from radas_flows.secret_refs import ENV_ALLOWLIST_ENV, check_env_reference, resolve_secret
from radas_flows.secrets import (
    Secret,
    is_secret_key,
    is_secret_reference,
    not_secret_value,
    protect_logs,
    register_secret,
    secret_strings,
    split_secrets,
)

__all__ = ["FoundSecrets", "TrialSecrets", "find_secrets", "object_secrets"]


@dataclass(frozen=True)
class FoundSecrets:
    """The secrets of a run as the user wrote them (values or references), before resolution."""

    config: dict[str, Any] = field(default_factory=dict)  # param_space path → value or ref
    environ: dict[str, Any] = field(default_factory=dict)  # runtime_env env var → value or ref

    def __repr__(self) -> str:
        return f"FoundSecrets(config={sorted(self.config)}, environ={sorted(self.environ)})"

    def resolve_here(self) -> TrialSecrets:
        """Resolve every secret in this process and protect the logs from them (a local run)."""
        config = {where: resolve_secret(where, v) for where, v in self.config.items()}
        environ = {
            name: str(resolve_secret(f"runtime_env/env_vars/{name}", v))
            for name, v in self.environ.items()
        }
        values = [*secret_strings(config), *secret_strings(environ)]
        for value in values:
            register_secret(value)
        if values:
            protect_logs()
        return TrialSecrets(config=config, environ=environ)

    def references_for_job(self, cluster: str) -> TrialSecrets:
        """The secrets as names of variables of the job's environment (a cluster run).

        Anything else would travel inside the job's package, entrypoint or ``env_vars``,
        which every user of the cluster can read; it is refused.
        """
        config_env = {w: _job_variable(w, v, cluster) for w, v in self.config.items()}
        environ_env = {
            name: _job_variable(f"runtime_env/env_vars/{name}", v, cluster)
            for name, v in self.environ.items()
        }
        return TrialSecrets(config_env=config_env, environ_env=environ_env)


def _job_variable(where: str, value: Any, cluster: str) -> str:
    from radas_flows.secret_refs import _label

    if is_secret_reference(value) and "env" in value:
        check_env_reference(where, value["env"])
        return str(value["env"])
    if where.startswith("runtime_env/env_vars/"):
        name = where.rsplit("/", 1)[1]
        raise RadasValueError(
            f"{_label(where)} looks like a secret, and a Ray job's env_vars are shown to "
            f"everyone who can open the dashboard of cluster {cluster!r} or run `ray job "
            f"list`. Set {name} on the cluster's nodes instead (every job inherits their "
            f"environment) and leave it out of runtime_env, or write {{'env': 'VAR'}} naming "
            f"a variable set on the cluster (allowed by {ENV_ALLOWLIST_ENV}): the job copies "
            "it into the trials' environment."
        )
    kind = "a Prefect Secret block" if is_secret_reference(value) else "a value"
    if is_secret_reference(value) and "secret_ref" in value:
        kind = "a value held by the calling process"
    raise RadasValueError(
        f"{_label(where)} is {kind}, which a cluster run cannot send without showing it: the "
        f"job's package, entrypoint and env_vars can be read by every user of cluster "
        f"{cluster!r}. Set the secret as an environment variable on the cluster's nodes and "
        f"write {{'env': 'VAR'}} under the key (the variable must be allowed by "
        f"{ENV_ALLOWLIST_ENV} where the flow runs); the job reads it where the trainable runs."
    )


@dataclass(frozen=True)
class TrialSecrets:
    """What the trainable receives: resolved values, or variables the job reads on the cluster."""

    config: dict[str, Any] = field(default_factory=dict)  # param_space path → value
    environ: dict[str, str] = field(default_factory=dict)  # trial env var → value
    config_env: dict[str, str] = field(default_factory=dict)  # path → job variable
    environ_env: dict[str, str] = field(default_factory=dict)  # trial env var → job variable

    def __bool__(self) -> bool:
        return bool(self.config or self.environ or self.config_env or self.environ_env)

    def __repr__(self) -> str:
        return f"TrialSecrets(paths={sorted({*self.config, *self.config_env})})"

    def values(self) -> list[str]:
        return [*secret_strings(self.config), *secret_strings(self.environ)]

    def in_job(self) -> TrialSecrets:
        """Read the job's variables (where the driver runs) and protect its output from them."""
        if not (self.config_env or self.environ_env):
            return self
        config, environ = dict(self.config), dict(self.environ)
        for wanted, into in ((self.config_env, config), (self.environ_env, environ)):
            for where, name in wanted.items():
                found = os.environ.get(name)
                if not found:
                    raise RadasValueError(
                        f"secret {where!r} refers to the environment variable {name!r}, which "
                        "is not set in the job's environment on the cluster: set it on the "
                        "cluster's nodes (every job inherits their environment)."
                    )
                into[where] = found
        resolved = TrialSecrets(config=config, environ=environ)
        for value in resolved.values():
            register_secret(value)
        # The job's driver is this run's own process: it gets the variables too (Tune's
        # storage, for one, writes an s3:// results root from here).
        os.environ.update(environ)
        from radas_flows._redaction import redact_process_output

        redact_process_output()
        protect_logs()
        return resolved


def _split_env_vars(runtime_env: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    env = dict(runtime_env)
    env_vars = env.get("env_vars")
    if not isinstance(env_vars, Mapping):
        return env, {}
    kept: dict[Any, Any] = {}
    found: dict[str, Any] = {}
    for name, value in env_vars.items():
        plain, unwrapped = not_secret_value(value)
        if plain:
            kept[name] = unwrapped
        elif (
            isinstance(value, Secret)
            or is_secret_reference(value)
            or (is_secret_key(name) and isinstance(value, str) and value)
        ):
            found[str(name)] = value
        else:
            kept[name] = value
    env["env_vars"] = kept
    if not kept:
        del env["env_vars"]
    return env, found


def object_secrets(obj: Any, label: str = "") -> dict[str, str]:
    """Strings under secret-looking attribute names inside Python objects (Tune's configs).

    Example:
        >>> class Callback:
        ...     def __init__(self):
        ...         self.api_key, self.project, self.max_token_len = "wb-1", "p", 512
        >>> object_secrets({"run_config": [Callback()]})
        {"['run_config'][0].api_key": 'wb-1'}
    """
    found: dict[str, str] = {}
    seen: set[int] = set()

    def walk(node: Any, path: str, secret: bool, depth: int) -> None:
        getter = getattr(node, "get_secret_value", None)
        if callable(getter) and not isinstance(node, type):
            found[path] = str(getter())
            return
        if isinstance(node, str):
            if secret and node:
                found[path] = node
            return
        if node is None or isinstance(node, int | float | bytes) or depth > 6 or id(node) in seen:
            return
        if isinstance(node, type | types.ModuleType) or inspect.isroutine(node):
            return
        seen.add(id(node))
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{path}[{k!r}]", secret or is_secret_key(k), depth + 1)
        elif isinstance(node, list | tuple | set | frozenset):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]", secret, depth + 1)
        else:
            try:
                attributes = dict(vars(node))
            except TypeError:
                return
            for k, v in attributes.items():
                walk(v, f"{path}.{k}", secret or is_secret_key(k), depth + 1)

    walk(obj, label, False, 0)
    return found


def find_secrets(
    param_space: Mapping[str, Any],
    runtime_env: Mapping[str, Any],
    tuner_init_kwargs: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], FoundSecrets]:
    """Split a run's secrets off: ``(redacted space, runtime_env without them, found)``.

    Raises:
        RadasValueError: A search space holds a secret (the message names its key), or an
            object of ``tuner_init_kwargs`` holds one.
    """
    try:
        space, config = split_secrets(param_space)
    except ValueError as e:
        raise RadasValueError(str(e)) from e
    env, environ = _split_env_vars(runtime_env)
    objects = object_secrets(dict(tuner_init_kwargs))
    if objects:
        raise RadasValueError(
            f"tuner_init_kwargs {next(iter(objects))} looks like a secret, and Tune pickles "
            "its run_config (callbacks included) into tuner.pkl in the results folder, which "
            "every user who can read the results root can open (and a cluster job carries it "
            "in its package). Leave it unset and let the callback read it from the environment "
            "of the process it runs in (WandbLoggerCallback reads WANDB_API_KEY): the flow's "
            "process for a local run, the cluster's nodes for a cluster run."
        )
    return space, env, FoundSecrets(config=config, environ=environ)
