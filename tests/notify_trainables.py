"""Trainables for the notification and secrets flow tests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ray import tune


def scored(config: dict[str, Any]) -> None:
    """Report two epochs of ``a * b * epoch``; raise for ``a == config['fail_a']``."""
    if config["a"] == config.get("fail_a"):
        raise RuntimeError(f"trial with a={config['a']} fails on purpose")
    for epoch in (1, 2):
        tune.report({"score": config["a"] * config.get("b", 1) * epoch, "epoch": epoch})


def digest(value: str) -> str:
    """A short hash: what the secrets trainables report instead of the secret itself."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def secret_hash(config: dict[str, Any]) -> dict[str, Any]:
    """Report a hash of config['wandb']['api_key'] and of config['db_password']."""
    return {
        "score": config["a"],
        "key_hash": digest(config["wandb"]["api_key"]),
        "password_hash": digest(config["db_password"]),
    }


def secret_echo_all(config: dict[str, Any]) -> None:
    """Report hashes of every secret, and the secrets themselves as metrics (as a careless or
    hostile trainable might); print them too."""
    import os

    key, token = config["wandb"]["api_key"], os.environ.get("HF_TOKEN", "")
    print(f"trainable sees key {key} and token {token}")
    tune.report({"score": config["a"], "echo_key": key, "echo_token": f"token={token}"})
    tune.report(
        {
            "score": config["a"],
            "key_hash": digest(key),
            "token_hash": digest(token),
            "password_hash": digest(config["db_password"]),
            "echo_key": key,
            "echo_token": f"token={token}",
            "max_token_len_seen": config["max_token_len"],
        }
    )


def echo_api_key(config: dict[str, Any]) -> dict[str, Any]:
    """Return config['api_key'] as a metric."""
    return {"score": 1, "echo": config["api_key"]}


def secret_echo_fail(config: dict[str, Any]) -> None:
    """Fail with the secret in the exception text (as a library rejecting a login might)."""
    if config["a"] == config.get("fail_a"):
        raise PermissionError(f"login refused for api key {config['wandb']['api_key']!r}")
    tune.report({"score": config["a"], "key_hash": digest(config["wandb"]["api_key"])})


class SecretCounter(tune.Trainable):
    """A class trainable that reports a hash of its secret every step."""

    def setup(self, config: dict[str, Any]) -> None:
        self.key = config["wandb"]["api_key"]

    def step(self) -> dict[str, Any]:
        return {"score": self.iteration, "key_hash": digest(self.key), "done": self.iteration >= 1}

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.key = new_config["wandb"]["api_key"]
        return True


def as_text(obj: Any) -> str:
    """A JSON rendering (falling back to repr) to search for a raw value."""
    return json.dumps(obj, default=repr)
