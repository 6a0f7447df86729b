"""A cluster run's secrets: read by the job from the cluster's environment, shown nowhere."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from ray import tune

from radas_flows import run_experiment
from radas_flows.clusters.jobs import job_client
from radas_flows.clusters.registry import get_cluster
from radas_flows.management import get_client
from radas_flows.secrets import REDACTED
from tests import prefect_reads as pr
from tests.clusters.helpers import import_source
from tests.clusters.loopback_ray import CLUSTER_SECRET_ENV, RayHead
from tests.notify_trainables import digest

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("radas_env", "cluster_registry")]

TRAINABLES = """\
import hashlib
import os

from ray import tune


def echo(config):
    key, token = config["wandb"]["api_key"], os.environ["HF_TOKEN"]
    print(f"trainable sees key {key} and token {token}", flush=True)
    return {
        "score": config["a"],
        "key_hash": hashlib.sha256(key.encode()).hexdigest()[:16],
        "token_hash": hashlib.sha256(token.encode()).hexdigest()[:16],
        "echo_key": key,
        "max_token_len": config["max_token_len"],
    }


class PrintAndDie(tune.Callback):
    # Print the first result (it echoes the secret) as the job's last words, and die.

    def on_trial_result(self, iteration, trials, trial, result, **info):
        print(f"result echo {result.get('echo_key')}", flush=True)
        os._exit(3)
"""


def files_text(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cluster_secrets_come_from_the_job_environment_and_leak_nowhere(
    workdir: Path, ray_head: RayHead, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster_value = ray_head.cluster_secret
    worker_value = f"worker-only-{digest(cluster_value)}"  # the same variable, where the flow runs
    monkeypatch.setenv(CLUSTER_SECRET_ENV, worker_value)
    monkeypatch.setenv("RADAS_SECRET_ENV_ALLOWLIST", CLUSTER_SECRET_ENV)
    mod = import_source(workdir, TRAINABLES, "secret_trainables")
    results = asyncio.run(
        run_experiment(
            user_name="erin",
            run_with="cluster:loopback",
            trainable=mod.echo,
            experiment_name="cluster-secrets",
            param_space={
                "a": tune.grid_search([1, 2]),
                "wandb": {"api_key": {"env": CLUSTER_SECRET_ENV}},
                "max_token_len": 512,
            },
            runtime_env={"env_vars": {"HF_TOKEN": {"env": CLUSTER_SECRET_ENV}}},
            run_choice="run",
        )
    )
    df, tuner = results["df"], results["tuner"]
    # The trials got the cluster's value (read in the job), never the worker's.
    assert set(df["key_hash"]) == {digest(cluster_value)}
    assert set(df["token_hash"]) == {digest(cluster_value)}
    assert set(df["echo_key"]) == {REDACTED}
    assert set(df["config/wandb/api_key"]) == {REDACTED}
    assert set(df["max_token_len"]) == {512}
    (entry,) = [
        e
        for e in get_client("erin", "cluster:loopback").list_experiments()
        if e["experiment"].endswith("cluster_secrets")
    ]
    assert entry["status"] == "SUCCEEDED"
    client = job_client(get_cluster("loopback"))
    info = client.get_job_info(entry["job_id"])
    logs = client.get_job_logs(entry["job_id"])
    assert "trainable sees key *** and token ***" in logs
    flow_run = pr.flow_run_named("cluster-secrets")
    outputs: dict[str, bytes] = {
        "job entrypoint": info.entrypoint.encode(),
        "job runtime_env (the dashboard's env view)": json.dumps(info.runtime_env).encode(),
        "job metadata": json.dumps(info.metadata).encode(),
        "job info": repr(info).encode(),
        "job log": logs.encode(),
        "flow-run parameters": json.dumps(flow_run.parameters, default=repr).encode(),
        "task runs": json.dumps(
            [t.model_dump(mode="json") for t in pr.task_runs_of(flow_run.id)], default=repr
        ).encode(),
        "artifacts": json.dumps(
            [a.model_dump(mode="json") for a in pr.artifacts_of(flow_run.id)], default=repr
        ).encode(),
        "API logs": "\n".join(pr.logs_of(flow_run.id)).encode(),
        "returned df": df.to_csv().encode(),
        **files_text(Path(tuner.experiment_path)),
    }
    found = [
        where
        for where, data in outputs.items()
        if cluster_value.encode() in data or worker_value.encode() in data
    ]
    assert found == []


def test_a_failed_job_shows_no_secret_in_the_task_state(
    workdir: Path, ray_head: RayHead, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job log's tail travels in DriverFailedError, which Prefect stores as the task state."""
    from radas_flows.targets import DriverFailedError

    cluster_value = ray_head.cluster_secret
    monkeypatch.setenv(CLUSTER_SECRET_ENV, cluster_value)  # the worker has it too
    monkeypatch.setenv("RADAS_SECRET_ENV_ALLOWLIST", CLUSTER_SECRET_ENV)
    mod = import_source(workdir, TRAINABLES, "secret_trainables")
    with pytest.raises(DriverFailedError, match="The end of its log") as info:
        asyncio.run(
            run_experiment(
                user_name="erin",
                run_with="cluster:loopback",
                trainable=mod.echo,
                experiment_name="cluster-secret-fails",
                param_space={
                    "a": 1,
                    "wandb": {"api_key": {"env": CLUSTER_SECRET_ENV}},
                    "max_token_len": 512,
                },
                runtime_env={"env_vars": {"HF_TOKEN": {"env": CLUSTER_SECRET_ENV}}},
                tuner_init_kwargs={"run_config": tune.RunConfig(callbacks=[mod.PrintAndDie()])},
                run_choice="run",
            )
        )
    assert "result echo ***" in str(info.value)
    flow_run = pr.flow_run_named("cluster-secret-fails")
    (monitor,) = [
        t for t in pr.task_runs_of(flow_run.id) if t.name.startswith("experiment_monitor")
    ]
    assert monitor.state.is_failed()
    stored = {
        "monitor state": json.dumps(monitor.state.model_dump(mode="json"), default=repr),
        "flow state": json.dumps(flow_run.state.model_dump(mode="json"), default=repr),
        "API logs": "\n".join(pr.logs_of(flow_run.id)),
        "error": str(info.value),
    }
    assert [where for where, text in stored.items() if cluster_value in text] == []
