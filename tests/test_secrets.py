"""Secret detection, redaction, restoration and log scrubbing."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest

from radas_flows.secrets import (
    REDACTED,
    SecretFilter,
    install_secret_filter,
    is_secret_key,
    redact,
    redact_registered,
    redact_text,
    register_secret,
    registered_secrets,
    restore_secrets,
    split_secrets,
)


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "API_KEY",
        "apiKey",
        "api-key",
        "wandb_api_key",
        "apikey",
        "password",
        "DB_Password",
        "passwd",
        "token",
        "hf_token",
        "access_token",
        "client_secret",
        "aws_secret_access_key",
        "access_key",
        "AccessKey",
        "private_key",
        "credential",
        "gcp_credentials",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "lr",
        "max_tokens",
        "num_tokens",
        "tokenizer",
        "tokenize_fn",
        "key",
        "monkey",
        "seed",
        3,
        None,
    ],
)
def test_ordinary_keys(key: Any) -> None:
    assert not is_secret_key(key)


def test_redact_copies_nested_containers_and_keeps_leaves() -> None:
    marker = object()
    space = {
        "lr": 0.1,
        "obj": marker,
        "wandb": {"enable": True, "api_key": "wb-key-1", "init_kwargs": {"project": "p"}},
        "stores": [{"name": "s3", "secret_access_key": "sk-2"}, ("x", {"token": "t-3"})],
        "credentials": {"user": "u", "password": "nested-pw"},
        "password": None,
        "token": "",
    }

    out = redact(space)

    assert out == {
        "lr": 0.1,
        "obj": marker,
        "wandb": {"enable": True, "api_key": REDACTED, "init_kwargs": {"project": "p"}},
        "stores": [{"name": "s3", "secret_access_key": REDACTED}, ("x", {"token": REDACTED})],
        "credentials": {"user": REDACTED, "password": REDACTED},  # strings below a secret key
        "password": None,
        "token": "",
    }
    assert out["obj"] is marker
    assert space["wandb"]["api_key"] == "wb-key-1"  # the input is untouched
    assert out["wandb"] is not space["wandb"]


def test_split_and_restore_round_trip() -> None:
    space = {
        "a": 1,
        "wandb": {"enable": True, "api_key": "wb-key-9"},
        "dbs": [{"host": "h", "password": "pw-0"}, {"host": "g", "password": "pw-1"}],
        "hf_token": "hf-abc",
    }

    redacted, found = split_secrets(space)

    assert found == {
        "wandb/api_key": "wb-key-9",
        "dbs/0/password": "pw-0",
        "dbs/1/password": "pw-1",
        "hf_token": "hf-abc",
    }
    assert redacted["wandb"]["api_key"] == REDACTED
    assert redacted["dbs"][1] == {"host": "g", "password": REDACTED}
    assert "wb-key-9" not in repr(redacted) and "pw-0" not in repr(redacted)
    assert restore_secrets(redacted, found) == space
    assert redacted["wandb"]["api_key"] == REDACTED  # restore copies


def test_split_keeps_search_space_objects() -> None:
    from ray import tune

    lr = tune.loguniform(1e-4, 1e-1)
    redacted, found = split_secrets({"lr": lr, "b": tune.grid_search([1, 2]), "token": "t"})
    assert redacted["lr"] is lr
    assert redacted["b"] == {"grid_search": [1, 2]}
    assert found == {"token": "t"}


def test_split_refuses_searching_over_a_secret() -> None:
    from ray import tune

    with pytest.raises(ValueError, match=r"param_space\['wandb/api_key'\].*search space"):
        split_secrets({"wandb": {"api_key": tune.grid_search(["k1", "k2"])}})
    with pytest.raises(ValueError, match=r"param_space\['token'\]"):
        split_secrets({"token": tune.choice(["a", "b"])})


def test_restore_creates_missing_parents_and_rejects_bad_paths() -> None:
    assert restore_secrets({"a": 1}, {"wandb/api_key": "k"}) == {"a": 1, "wandb": {"api_key": "k"}}
    with pytest.raises(ValueError, match=r"'a/api_key'.*holds a int"):
        restore_secrets({"a": 1}, {"a/api_key": "k"})
    with pytest.raises(ValueError, match=r"'dbs/5/password'.*'5' is not an index"):
        restore_secrets({"dbs": [{}]}, {"dbs/5/password": "p"})


def test_split_rejects_non_mappings() -> None:
    with pytest.raises(TypeError, match=r"param_space must be a dict, got list"):
        split_secrets([1, 2])  # type: ignore[arg-type]


def test_redact_text_longest_first_and_only_strings() -> None:
    text = "key=abcdef short=abc n=42"
    assert redact_text(text, ["abc", "abcdef", 42, None, ""]) == "key=*** short=*** n=42"


def test_register_secret_accepts_secret_str_and_rejects_other_types() -> None:
    from pydantic import SecretStr

    register_secret(SecretStr("pydantic-secret-7731"))
    register_secret(None)
    register_secret("")
    assert "pydantic-secret-7731" in registered_secrets()
    assert "" not in registered_secrets()
    with pytest.raises(TypeError, match=r"expects a string secret, got int"):
        register_secret(1234)
    assert redact_registered("x pydantic-secret-7731 y") == "x *** y"


def _logger_with_stream(name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger(name)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)
    return log, stream, handler


def test_secret_filter_scrubs_messages_arguments_tracebacks_and_stacks() -> None:
    secret = "log-secret-51c3e0"
    register_secret(secret)
    log, stream, handler = _logger_with_stream("radas_flows.tests.secretfilter")
    handler.addFilter(SecretFilter())
    try:
        log.info("direct %s", secret)
        log.info(f"formatted {secret}")
        log.info("dict %s", {"api_key": secret})
        try:
            raise RuntimeError(f"failed with {secret}")
        except RuntimeError:
            log.exception("boom")
        log.warning("where", stack_info=True, extra={"unrelated": 1})
    finally:
        log.removeHandler(handler)

    output = stream.getvalue()
    assert secret not in output
    assert "direct ***" in output
    assert "formatted ***" in output
    assert "RuntimeError: failed with ***" in output
    assert "Stack (most recent call last)" in output


def test_secret_filter_extra_values_and_untouched_records() -> None:
    log, stream, handler = _logger_with_stream("radas_flows.tests.secretfilter.extra")
    handler.addFilter(SecretFilter(["only-this-filter-4242"]))
    try:
        log.info("a %s b", "only-this-filter-4242")
        log.info("plain %d%%", 5)
    finally:
        log.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["INFO a *** b", "INFO plain 5%"]


def test_install_secret_filter_covers_child_loggers_once() -> None:
    secret = "child-secret-98e1"
    register_secret(secret)
    parent, stream, handler = _logger_with_stream("radas_flows.tests.install")
    try:
        first = install_secret_filter(parent)
        second = install_secret_filter(parent)
        logging.getLogger("radas_flows.tests.install.child").error("token %s", secret)
    finally:
        parent.removeHandler(handler)
        parent.removeFilter(first)
    assert first is second
    assert sum(isinstance(f, SecretFilter) for f in handler.filters) == 1
    assert stream.getvalue() == "ERROR token ***\n"


# -- what is a secret (issue 11, item 4) --------------------------------------------------------


def test_ordinary_hyperparameters_under_secret_looking_keys_pass_through() -> None:
    from ray import tune

    budget = tune.grid_search([1000, 2000])
    space = {
        "max_token_len": 512,
        "token_budget": budget,
        "special_token_id": 7,
        "private_key_size": 2048,
        "use_auth_token": True,
        "password_min_length": tune.choice([8, 12]),
    }
    redacted, found = split_secrets(space)
    assert found == {}
    assert redacted["max_token_len"] == 512 and redacted["special_token_id"] == 7
    assert redacted["private_key_size"] == 2048 and redacted["use_auth_token"] is True
    assert redacted["token_budget"] == {"grid_search": [1000, 2000]}
    assert redacted["password_min_length"] is space["password_min_length"]
    assert redact(space)["max_token_len"] == 512


def test_secret_and_not_secret_marks() -> None:
    from radas_flows.secrets import NotSecret, Secret

    redacted, found = split_secrets(
        {
            "project_key": Secret("pk-1"),  # not a secret-looking key, marked by the user
            "token_type": NotSecret("bpe"),  # secret-looking, marked ordinary
            "hf_token": {"not_secret": "public-model"},  # the JSON form of NotSecret
            "nested": {"access_token": NotSecret({"kind": "none"})},
        }
    )
    assert redacted == {
        "project_key": REDACTED,
        "token_type": "bpe",
        "hf_token": "public-model",
        "nested": {"access_token": {"kind": "none"}},
    }
    assert list(found) == ["project_key"]
    assert found["project_key"].get_secret_value() == "pk-1"
    assert "pk-1" not in repr(found) and "pk-1" not in str(found["project_key"])
    assert restore_secrets(redacted, found)["project_key"] == "pk-1"
    with pytest.raises(TypeError, match="numbers and booleans are not secrets"):
        Secret(512)  # type: ignore[arg-type]


def test_a_search_space_holding_a_secret_is_refused_naming_its_key() -> None:
    from ray import tune

    from radas_flows.inputs.space import parse_param_space
    from radas_flows.secrets import Secret

    cases = {
        "creds": {"creds": tune.grid_search([{"api_key": "k-a"}, {"api_key": "k-b"}])},
        "token": {"token": tune.choice(["t-a", "t-b"])},
        "wandb/api_key": {"wandb": {"api_key": {"grid_search": ["k1", "k2"]}}},
        "json": parse_param_space({"json": {"choice": [{"password": "p-1"}, {"password": "p-2"}]}}),
        "marked": {"marked": tune.choice([Secret("s-1"), Secret("s-2")])},
    }
    for key, space in cases.items():
        with pytest.raises(ValueError, match=rf"param_space\['{key}'\] is a search space holding "):
            split_secrets(space)


# -- references: the operator's allowlist --------------------------------------------------------


def spec_with(param_space: dict[str, Any], run_with: str = "local", **kwargs: Any) -> Any:
    from radas_flows.inputs.spec import build_spec

    return build_spec(
        user_name="u",
        experiment_name="e",
        trainable=lambda config: {},
        param_space=param_space,
        run_with=run_with,
        cwd="/p",
        **kwargs,
    )


def test_env_references_read_only_what_the_operator_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from radas_flows.errors import RadasValueError

    monkeypatch.setenv("RADAS_SMTP_PASSWORD", "smtp-pass-9f1c")
    monkeypatch.setenv("WANDB_API_KEY", "wb-env-77")
    monkeypatch.delenv("RADAS_SECRET_ENV_ALLOWLIST", raising=False)
    with pytest.raises(
        RadasValueError,
        match=r"param_space\['api_key'\] refers to the environment variable "
        r"'RADAS_SMTP_PASSWORD', which references may not read: RADAS_SECRET_ENV_ALLOWLIST "
        r"allows nothing",
    ):
        spec_with({"api_key": {"env": "RADAS_SMTP_PASSWORD"}})
    monkeypatch.setenv("RADAS_SECRET_ENV_ALLOWLIST", "WANDB_*, HF_TOKEN")
    with pytest.raises(RadasValueError, match="allows WANDB_\\*, HF_TOKEN"):
        spec_with({"api_key": {"env": "RADAS_SMTP_PASSWORD"}})
    spec = spec_with({"api_key": {"env": "WANDB_API_KEY"}})
    assert spec.secrets.config == {"api_key": "wb-env-77"}
    assert spec.param_space == {"api_key": REDACTED}
    # Under an ordinary key a {"env": ...} dict is a plain value, never read.
    assert spec_with({"opts": {"env": "RADAS_SMTP_PASSWORD"}}).param_space == {
        "opts": {"env": "RADAS_SMTP_PASSWORD"}
    }


# -- what a cluster job receives (issue 11, item 3) -------------------------------------------


def cluster_driver_spec(spec: Any) -> Any:
    from radas_flows.stages.submit import driver_spec_for
    from radas_flows.targets import TargetCheck

    check = TargetCheck("cluster:c", True, 4, 0, 4.0, 0.0, "/results", [])
    return driver_spec_for(spec.replace(trainable_ref="m:f"), "run", cpu_per_trial=1, check=check)


def test_a_cluster_job_spec_carries_variable_names_never_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from radas_flows.driver import encode_spec
    from radas_flows.errors import RadasValueError
    from radas_flows.secret_refs import stash_secrets

    monkeypatch.setenv("RADAS_SECRET_ENV_ALLOWLIST", "CLUSTER_WANDB_KEY")
    monkeypatch.setenv("CLUSTER_WANDB_KEY", "wb-here-5e2a")  # the worker's own value
    spec = spec_with({"a": 1, "wandb": {"api_key": {"env": "CLUSTER_WANDB_KEY"}}}, "cluster:c")
    driver_spec = cluster_driver_spec(spec)
    import base64

    assert b"wb-here-5e2a" not in base64.b64decode(encode_spec(driver_spec))
    assert driver_spec.secrets.config_env == {"wandb/api_key": "CLUSTER_WANDB_KEY"}
    env_spec = spec_with(
        {},
        run_with="cluster:c",
        runtime_env={"env_vars": {"HF_TOKEN": {"env": "CLUSTER_WANDB_KEY"}, "OMP": "1"}},
    )
    assert env_spec.runtime_env == {"env_vars": {"OMP": "1"}}
    assert cluster_driver_spec(env_spec).secrets.environ_env == {"HF_TOKEN": "CLUSTER_WANDB_KEY"}
    # Values cannot go to a cluster at all: literals, stashed values, Secret blocks.
    stashed, _tokens = stash_secrets({"api_key": "literal-6b1d"})
    for space, said in [
        ({"api_key": "literal-6b1d"}, "is a value, which a cluster run cannot send"),
        (stashed, "is a value held by the calling process"),
        ({"api_key": {"secret_block": "b"}}, "is a Prefect Secret block"),
    ]:
        with pytest.raises(RadasValueError, match=rf"param_space\['api_key'\] {said}") as info:
            spec_with(space, run_with="cluster:c")
        assert "write {'env': 'VAR'}" in str(info.value)
        assert "literal-6b1d" not in str(info.value)
    with pytest.raises(
        RadasValueError, match=r"runtime_env\['env_vars'\]\['HF_TOKEN'\] looks like a secret.*"
    ):
        spec_with({}, run_with="cluster:c", runtime_env={"env_vars": {"HF_TOKEN": "hf-3"}})


def test_a_callback_holding_an_api_key_is_refused() -> None:
    """Tune pickles run_config, callbacks included, into tuner.pkl in the results folder."""
    from ray import tune

    from radas_flows.errors import RadasValueError

    class Logger(tune.Callback):
        def __init__(self) -> None:
            self.api_key = "cb-key-41aa"
            self.max_token_len = 512

    kwargs = {"tuner_init_kwargs": {"run_config": tune.RunConfig(callbacks=[Logger()])}}
    for run_with in ("local", "cluster:c"):
        with pytest.raises(
            RadasValueError,
            match=r"tuner_init_kwargs \['run_config'\]\.callbacks\[0\]\.api_key looks like a "
            r"secret, and Tune pickles its run_config .* into tuner.pkl",
        ) as info:
            spec_with({}, run_with=run_with, **kwargs)
        assert "cb-key-41aa" not in str(info.value)


def test_secret_env_vars_of_a_local_run_reach_only_the_trial() -> None:
    from radas_flows.secrets import with_secrets

    spec = spec_with({}, runtime_env={"env_vars": {"HF_TOKEN": "hf-loc-2b", "OMP": "1"}})
    assert spec.runtime_env == {"env_vars": {"OMP": "1"}}  # what Ray gets
    assert spec.secrets.environ == {"HF_TOKEN": "hf-loc-2b"}
    import os

    def trainable(config: dict[str, Any]) -> dict[str, Any]:
        return {"seen": os.environ["HF_TOKEN"] == "hf-loc-2b", "echo": os.environ["HF_TOKEN"]}

    try:
        out = with_secrets(trainable, {}, spec.secrets.environ)({})
    finally:
        os.environ.pop("HF_TOKEN", None)
    assert out == {"seen": True, "echo": REDACTED}


def test_results_tables_redact_values_equal_to_a_registered_secret() -> None:
    import pandas as pd

    from radas_flows.analysis import redact_frame

    register_secret("smtp-pass-equal-71")
    df = pd.DataFrame(
        {"echo": ["smtp-pass-equal-71", "ok"], "n": [1, 2], "note": ["pw=smtp-pass-equal-71", None]}
    )
    out = redact_frame(df)
    assert out["echo"].tolist() == [REDACTED, "ok"]
    assert out["note"][0] == "pw=***" and out["note"].isna()[1]
    assert out["n"].tolist() == [1, 2]
    assert df["echo"][0] == "smtp-pass-equal-71"  # a copy


def test_not_secret_env_vars_pass_to_a_cluster_job_as_they_are() -> None:
    from radas_flows.secret_refs import refuse_literal_parameters, stash_runtime_env
    from radas_flows.secrets import NotSecret

    env, tokens = stash_runtime_env({"env_vars": {"AWS_ACCESS_KEY_ID": NotSecret("moto-id")}})
    assert tokens == [] and env == {"env_vars": {"AWS_ACCESS_KEY_ID": {"not_secret": "moto-id"}}}
    refuse_literal_parameters({}, env)  # what the flow receives is marked, not a literal secret
    spec = spec_with({}, run_with="cluster:c", runtime_env=env)
    assert spec.runtime_env == {"env_vars": {"AWS_ACCESS_KEY_ID": "moto-id"}}
    assert not spec.secrets
