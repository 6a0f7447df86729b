"""Trainables and Prefect API readers for the notification and secrets flow tests."""

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


def flow_run_named(name: str) -> Any:
    """The latest flow run called ``name`` (runs are named after their experiment)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    assert runs, f"no flow run named {name!r}"
    return runs[0]


def task_runs_of(flow_run_id: Any) -> list[Any]:
    """Every task run of a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return list(
            client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        )


def artifacts_of(flow_run_id: Any) -> list[Any]:
    """Every artifact a flow run created (tables, markdown, progress)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return list(
            client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        )


def logs_of(flow_run_id: Any) -> list[str]:
    """The messages the Prefect API stored for a flow run and its task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    messages: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=200,
                offset=len(messages),
            )
            messages += [log.message for log in page]
            if len(page) < 200:
                return messages


def as_text(obj: Any) -> str:
    """A JSON rendering (falling back to repr) to search for a raw value."""
    return json.dumps(obj, default=repr)
