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
