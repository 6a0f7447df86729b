"""Secrets by reference: environment variables (allowlisted), Prefect Secret blocks, memory."""

from __future__ import annotations

import fnmatch
import os
import secrets as _stdlib_secrets
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from radas_flows.errors import RadasValueError
from radas_flows.secrets import (
    REFERENCE_KEYS,
    Secret,
    is_secret_key,
    is_secret_reference,
    not_secret_value,
    walk_secrets,
)

__all__ = [
    "ENV_ALLOWLIST_ENV",
    "REFERENCE_KEYS",
    "check_env_reference",
    "env_allowlist",
    "is_secret_reference",
    "refuse_literal_parameters",
    "release_secrets",
    "resolve_secret",
    "resolve_stashed",
    "stash_objects",
    "stash_runtime_env",
    "stash_secrets",
]

#: The operator's list of environment variables a ``{"env": "VAR"}`` reference may read:
#: comma-separated names, each may end in ``*`` (``WANDB_API_KEY,HF_*``). Unset or empty: none.
ENV_ALLOWLIST_ENV = "RADAS_SECRET_ENV_ALLOWLIST"

_stash: dict[str, Any] = {}
_stash_lock = threading.Lock()


def env_allowlist() -> list[str]:
    """The patterns of :data:`ENV_ALLOWLIST_ENV`.

    Example:
        >>> import os
        >>> os.environ["RADAS_SECRET_ENV_ALLOWLIST"] = "WANDB_API_KEY, HF_*"
        >>> env_allowlist()
        ['WANDB_API_KEY', 'HF_*']
        >>> del os.environ["RADAS_SECRET_ENV_ALLOWLIST"]
    """
    raw = os.environ.get(ENV_ALLOWLIST_ENV, "")
    return [item.strip() for item in raw.split(",") if item.strip()]


def check_env_reference(where: str, name: str) -> None:
    """Refuse an environment reference the operator has not allowed (see :data:`ENV_ALLOWLIST_ENV`).

    Whoever starts a run chooses its parameters, and the trainable may report what it is
    given; without the allowlist a run could read any variable of the worker, such as the
    SMTP password or the Prefect API key.

    Example:
        >>> import os
        >>> os.environ["RADAS_SECRET_ENV_ALLOWLIST"] = "HF_*"
        >>> check_env_reference("hf_token", "HF_TOKEN")
        >>> try:
        ...     check_env_reference("api_key", "RADAS_SMTP_PASSWORD")
        ... except RadasValueError as e:
        ...     print(str(e)[:72])
        param_space['api_key'] refers to the environment variable 'RADAS_SMTP_PA
        >>> del os.environ["RADAS_SECRET_ENV_ALLOWLIST"]
    """
    allowed = env_allowlist()
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed):
        return
    listed = ", ".join(allowed) if allowed else "nothing: it is unset"
    raise RadasValueError(
        f"{_label(where)} refers to the environment variable {name!r}, which references may "
        f"not read: {ENV_ALLOWLIST_ENV} allows {listed}. The operator of the worker (and of "
        f"the cluster) names the variables runs may read, e.g. {ENV_ALLOWLIST_ENV}={name} in "
        "the worker's environment; or store the value in a Prefect Secret block and write "
        "{'secret_block': '<name>'}."
    )


def _label(where: str) -> str:
    if where == "tuner_init_kwargs":
        return where
    if where.startswith("runtime_env/env_vars/"):
        return f"runtime_env['env_vars'][{where.rsplit('/', 1)[1]!r}]"
    return f"param_space[{where!r}]"


def _stash_value(value: Any) -> dict[str, str]:
    token = _stdlib_secrets.token_hex(16)
    with _stash_lock:
        _stash[token] = value
    return {"secret_ref": token}


def stash_secrets(param_space: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Replace each literal secret by a ``{"secret_ref": token}`` held in this process.

    ``run_experiment`` passes the result to the ``radas`` flow, so Prefect stores references
    as the flow run's parameters, never the secrets. References already in the space stay;
    ``NotSecret(v)`` becomes its JSON form ``{"not_secret": v}``.

    Returns:
        ``(space with references, tokens)``; give the tokens to :func:`release_secrets` once
        the flow has ended.

    Example:
        >>> space, tokens = stash_secrets({"lr": 0.1, "wandb": {"api_key": "k-1"}})
        >>> space["wandb"]["api_key"] == {"secret_ref": tokens[0]}
        True
        >>> resolve_secret("wandb/api_key", space["wandb"]["api_key"])
        'k-1'
        >>> release_secrets(tokens)
    """
    tokens: list[str] = []

    def stash(_where: str, value: Any) -> Any:
        if is_secret_reference(value):
            return value
        ref = _stash_value(value)
        tokens.append(ref["secret_ref"])
        return ref

    return _with_json_marks(walk_secrets(dict(param_space), stash, on_search=None)), tokens


def _with_json_marks(obj: Any) -> Any:
    from radas_flows.secrets import NOT_SECRET_KEY, NotSecret

    if isinstance(obj, NotSecret):
        return {NOT_SECRET_KEY: obj.value}
    if isinstance(obj, Mapping):
        return {k: _with_json_marks(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        items = [_with_json_marks(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def stash_runtime_env(runtime_env: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Replace the values of secret-named ``env_vars`` by references held in this process.

    Example:
        >>> env, tokens = stash_runtime_env({"env_vars": {"HF_TOKEN": "hf-1", "OMP": "1"}})
        >>> sorted(env["env_vars"]["HF_TOKEN"]), env["env_vars"]["OMP"]
        (['secret_ref'], '1')
        >>> release_secrets(tokens)
    """
    env = dict(runtime_env or {})
    env_vars = env.get("env_vars")
    tokens: list[str] = []
    if not isinstance(env_vars, Mapping):
        return env, tokens
    out: dict[Any, Any] = {}
    for name, value in env_vars.items():
        if not_secret_value(value)[0]:
            out[name] = _with_json_marks(value)  # stays marked: the flow checks env_vars again
        elif isinstance(value, Secret) or (
            is_secret_key(name) and isinstance(value, str) and value
        ):
            ref = _stash_value(value)
            tokens.append(ref["secret_ref"])
            out[name] = ref
        else:
            out[name] = value
    env["env_vars"] = out
    return env, tokens


def stash_objects(tuner_init_kwargs: Mapping[str, Any] | None) -> tuple[Any, list[str]]:
    """Hold Tune's config objects in this process; the flow gets ``{"secret_ref": token}``.

    Prefect stores a flow run's parameters as JSON, and its encoder copies every attribute of
    an object (a logger callback's ``api_key`` included); a reference keeps them out.

    Example:
        >>> ref, tokens = stash_objects({"tune_config": "a TuneConfig"})
        >>> resolve_stashed(ref) == {"tune_config": "a TuneConfig"}
        True
        >>> release_secrets(tokens)
    """
    if not tuner_init_kwargs:
        return tuner_init_kwargs, []
    ref = _stash_value(dict(tuner_init_kwargs))
    return ref, [ref["secret_ref"]]


def resolve_stashed(value: Any) -> Any:
    """The objects :func:`stash_objects` held, or ``value`` itself when it is no reference."""
    if not (is_secret_reference(value) and "secret_ref" in value):
        return value
    return resolve_secret("tuner_init_kwargs", value)


def release_secrets(tokens: Iterable[str]) -> None:
    """Forget the values stashed by :func:`stash_secrets` (unknown tokens are ignored).

    Example:
        >>> release_secrets(["no-such-token"])
    """
    with _stash_lock:
        for token in tokens:
            _stash.pop(token, None)


def resolve_secret(where: str, value: Any) -> Any:
    """The value a secret stands for, read in this process.

    A literal string or :class:`~radas_flows.secrets.Secret` is itself; ``{"env": VAR}`` reads
    an allowlisted variable of this process's environment; ``{"secret_block": name}`` loads a
    Prefect Secret block; ``{"secret_ref": token}`` is a value ``run_experiment`` holds.

    Raises:
        RadasValueError: A reference cannot be resolved (the message names the key and the
            variable or block, never a value).

    Example:
        >>> import os
        >>> os.environ.update(DOC_TOKEN="t-9", RADAS_SECRET_ENV_ALLOWLIST="DOC_*")
        >>> resolve_secret("hf_token", {"env": "DOC_TOKEN"})
        't-9'
        >>> del os.environ["RADAS_SECRET_ENV_ALLOWLIST"], os.environ["DOC_TOKEN"]
    """
    if not is_secret_reference(value):
        getter = getattr(value, "get_secret_value", None)
        return getter() if callable(getter) else value
    kind, name = next(iter(value.items()))
    if kind == "env":
        check_env_reference(where, name)
        found = os.environ.get(name)
        if not found:
            raise RadasValueError(
                f"{_label(where)} refers to the environment variable {name!r}, which is "
                "not set where the flow runs. Set it in that environment (the worker's, or the "
                "deployment's job_variables env), or use {'secret_block': '<name>'}."
            )
        return found
    if kind == "secret_block":
        from prefect.blocks.system import Secret as SecretBlock

        try:
            block: SecretBlock = SecretBlock.load(name, _sync=True)  # type: ignore[call-arg, assignment]
        except Exception as e:
            raise RadasValueError(
                f"{_label(where)} refers to the Prefect Secret block {name!r}, which "
                f"cannot be loaded ({type(e).__name__}). Create it first, e.g. "
                f"`Secret(value=...).save({name!r})` or in the UI under Blocks."
            ) from e
        return block.get()
    with _stash_lock:
        if name in _stash:
            held = _stash[name]
            getter = getattr(held, "get_secret_value", None)
            return getter() if callable(getter) else held
    raise RadasValueError(
        f"{_label(where)} holds a secret reference of another process: secrets given "
        "to run_experiment live only in the calling process for the length of its run, so a "
        "deployment run or a retried flow run cannot see them. Give such runs "
        "{'env': 'VARIABLE'} or {'secret_block': '<name>'} under the secret key instead."
    )


def refuse_literal_parameters(param_space: Any, runtime_env: Any) -> None:
    """Refuse secrets given in clear as flow parameters (Prefect stores and shows those).

    ``run_experiment`` passes references; deployments, the UI and direct calls of the flow
    must too.

    Raises:
        RadasValueError: Naming the first secret given in clear, and what to pass instead.
    """
    found: list[str] = []

    def leaf(where: str, value: Any) -> Any:
        if not is_secret_reference(value):
            found.append(where)
        return value

    if isinstance(param_space, Mapping):
        walk_secrets(dict(param_space), leaf, on_search=None)
    env_vars = runtime_env.get("env_vars") if isinstance(runtime_env, Mapping) else None
    if isinstance(env_vars, Mapping):
        for name, value in env_vars.items():
            if not_secret_value(value)[0] or is_secret_reference(value):
                continue
            if isinstance(value, Secret) or (is_secret_key(name) and value):
                found.append(f"runtime_env/env_vars/{name}")
    if found:
        raise RadasValueError(
            f"{_label(found[0])} is a secret given in clear as a flow parameter: Prefect "
            "stores a flow run's parameters and shows them in its UI and API, so the value is "
            "stored there now (replace it). Pass a reference instead: "
            "{'secret_block': '<name>'} (a Prefect Secret block) or {'env': 'VAR'} (a variable "
            f"listed in {ENV_ALLOWLIST_ENV}); or call radas_flows.run_experiment, which gives the "
            "flow a reference to the value it holds in its own process."
        )
