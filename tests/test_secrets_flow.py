"""Secrets in param_space reach the trainable and no output of a real run shows them."""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import seaborn as sns
from ray import tune

from radas_flows import run_experiment
from radas_flows.errors import RadasValueError
from radas_flows.flows import radas  # configures Prefect's logging now, not inside capfd
from radas_flows.secrets import REDACTED, split_secrets, with_secrets
from tests import notify_trainables as nt
from tests import prefect_reads as pr
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.usefixtures("radas_env")

TO = "ops@example.com"


def new_secret(kind: str) -> str:
    """A value found nowhere else (hex makes accidental matches impossible)."""
    return f"{kind}-{uuid.uuid4().hex}"


def files_under(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def ray_session_logs() -> Path:
    """The log folder of this process's Ray (workers' stdout/stderr, raylet, GCS)."""
    import ray

    # Ray exposes the session folder only through its node object; /tmp/ray/session_latest
    # may belong to another Ray on this machine.
    node = ray._private.worker._global_node  # type: ignore[attr-defined]
    return Path(node.get_session_dir_path()) / "logs"


def leaks(outputs: dict[str, str | bytes], *values: str) -> list[str]:
    """Where any of ``values`` appears."""
    found = []
    for where, text in outputs.items():
        data = text if isinstance(text, bytes) else text.encode()
        if any(v.encode() in data for v in values):
            found.append(where)
    return found


def prefect_outputs(experiment_name: str) -> dict[str, str | bytes]:
    """Everything Prefect stored about the latest run of an experiment (task states too)."""
    flow_run = pr.flow_run_named(experiment_name)
    return {
        "task run states": nt.as_text(
            [t.state.model_dump(mode="json") for t in pr.task_runs_of(flow_run.id) if t.state]
        ),
        "flow-run parameters": nt.as_text(flow_run.parameters),
        "flow run": nt.as_text(flow_run.model_dump(mode="json")),
        "task runs": nt.as_text([t.model_dump(mode="json") for t in pr.task_runs_of(flow_run.id)]),
        "artifacts": nt.as_text([a.model_dump(mode="json") for a in pr.artifacts_of(flow_run.id)]),
        "API logs": "\n".join(pr.logs_of(flow_run.id)),
    }


def file_outputs(root: Path) -> dict[str, str | bytes]:
    return {f"file {p}": p.read_bytes() for p in files_under(root)}


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


class KeyHolder(tune.Callback):
    """A logger callback holding an API key, as ``WandbLoggerCallback(api_key=...)`` does."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key


def test_secrets_reach_the_trainable_and_no_output(
    workdir: Path,
    smtp_server: SmtpServer,
    smtp_env: Callable[..., None],
    logged: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    api_key, password = new_secret("wandb-key"), new_secret("db-pass")
    hf_token = new_secret("hf-token")
    smtp_env(smtp_server)
    results = asyncio.run(
        run_experiment(
            user_name="secrets",
            trainable=nt.secret_echo_all,  # reports and prints the secrets too
            experiment_name="secret-ok",
            param_space={
                "a": tune.grid_search([1, 2]),
                "wandb": {"api_key": api_key, "project": "demo"},
                "db_password": password,
                "max_token_len": 512,  # ordinary hyperparameters under secret-looking keys
                "token_budget": tune.grid_search([1000]),
            },
            runtime_env={"env_vars": {"HF_TOKEN": hf_token, "OMP_NUM_THREADS": "1"}},
            tuner_init_kwargs={
                "tune_config": tune.TuneConfig(metric="score", mode="max"),
                "run_config": tune.RunConfig(callbacks=[KeyHolder("")]),  # objects by reference
            },
            plot_fn=sns.scatterplot,
            plot_kwargs={"x": "config/a", "y": "score", "hue": "config/wandb/api_key"},
            plot_format="svg",  # text in the figure file too
            run_choice="run",
            email_notification_to_address=TO,
        )
    )
    df, tuner = results["df"], results["tuner"]

    def seen(column: str) -> set[Any]:
        return set(df[column].dropna())  # a row per report; the first one has fewer metrics

    # The trainable saw the real values...
    assert seen("key_hash") == {nt.digest(api_key)}
    assert seen("password_hash") == {nt.digest(password)}
    assert seen("token_hash") == {nt.digest(hf_token)}
    # ...everything else the placeholder, metrics equal to a secret included.
    assert seen("config/wandb/api_key") == {REDACTED}
    assert seen("config/db_password") == {REDACTED}
    assert seen("echo_key") == {REDACTED}
    assert seen("echo_token") == {"token=***"}
    assert seen("config/wandb/project") == {"demo"}
    assert seen("config/max_token_len") == {512} and seen("max_token_len_seen") == {512}
    assert seen("config/token_budget") == {1000}
    results_dir = Path(tuner.experiment_path)
    assert (results_dir / "radas_figure.svg").is_file()
    assert (results_dir / "radas_results.csv").is_file()
    flow_run = pr.flow_run_named("secret-ok")
    # Prefect stored a reference to a value held by the calling process, not the value.
    stored_key = flow_run.parameters["param_space"]["wandb"]["api_key"]
    assert set(stored_key) == {"secret_ref"}
    assert set(flow_run.parameters["runtime_env"]["env_vars"]["HF_TOKEN"]) == {"secret_ref"}
    assert set(flow_run.parameters["tuner_init_kwargs"]) == {"secret_ref"}
    assert {t.state.type.value for t in pr.task_runs_of(flow_run.id)} == {"COMPLETED"}
    email = smtp_server.messages[0]
    assert "'wandb': {'api_key': '***', 'project': 'demo'}" in (
        email.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    )

    out, err = capfd.readouterr()
    outputs: dict[str, str | bytes] = {
        "returned df": df.to_csv(),
        "full df": tuner.get_dataframe().to_csv(),
        "trial outcomes": nt.as_text(tuner.trial_outcomes()),
        "email": email.as_bytes(),
        "caplog": logged.text,
        "stdout and stderr": out + err,
        **file_outputs(results_dir),
        **file_outputs(ray_session_logs()),
        **prefect_outputs("secret-ok"),
    }
    assert len(outputs) > 20  # the results folder, Ray's logs and Prefect were all searched
    assert leaks(outputs, api_key, password, hf_token) == []


def dump_rows_and_fail(df: Any) -> Any:
    """An analysis step that fails and quotes the table (configs included) in its error."""
    raise ValueError(f"cannot process rows {df.to_dict(orient='records')}")


def test_a_failing_run_shows_no_secret(
    workdir: Path,
    smtp_server: SmtpServer,
    smtp_env: Callable[..., None],
    logged: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    api_key, password = new_secret("wandb-key"), new_secret("db-pass")
    smtp_env(smtp_server)
    with pytest.raises(ValueError, match=r"cannot process rows .*'config/wandb/api_key': '\*\*\*'"):
        asyncio.run(
            run_experiment(
                user_name="secrets",
                trainable=nt.secret_hash,
                experiment_name="secret-fails",
                param_space={
                    "a": tune.grid_search([1, 2]),
                    "wandb": {"api_key": api_key},
                    "db_password": password,
                },
                process_df_fn=dump_rows_and_fail,
                run_choice="run",
                email_notification_to_address=TO,
            )
        )
    error_text = "".join(traceback.format_exception(logged_exception(logged)))
    flow_run = pr.flow_run_named("secret-fails")
    assert flow_run.state.is_failed()
    assert "cannot process rows" in (flow_run.state.message or "")
    body = smtp_server.messages[0].get_body(preferencelist=("plain",))
    assert "Error: ValueError: cannot process rows" in body.get_content()  # type: ignore[union-attr]
    out, err = capfd.readouterr()
    results_dir = Path(os.environ["RADAS_RESULTS_ROOT"], "secrets")
    from radas_flows.events import experiment_resource_id
    from radas_flows.inputs.spec import sanitize_experiment_name

    resource = experiment_resource_id(
        "secrets", sanitize_experiment_name("secret-fails", str(workdir))
    )
    events = pr.events_about(resource, {"radas.experiment.started", "radas.experiment.failed"})
    assert [e.event for e in events][-1] == "radas.experiment.failed"
    assert "cannot process rows" in events[-1].payload["error"]
    outputs: dict[str, str | bytes] = {
        "events": "\n".join(e.model_dump_json() for e in events),
        "exception": error_text,
        "email": smtp_server.messages[0].as_bytes(),
        "caplog": logged.text,
        "stdout and stderr": out + err,
        **file_outputs(results_dir),
        **prefect_outputs("secret-fails"),
    }
    assert leaks(outputs, api_key, password) == []


def logged_exception(caplog: pytest.LogCaptureFixture) -> BaseException:
    """The exception Prefect logged when the flow failed (the one run_experiment raised)."""
    for record in reversed(caplog.records):
        if record.exc_info and record.exc_info[1] is not None:
            return record.exc_info[1]
    raise AssertionError("no exception was logged")


def test_references_for_deployments_env_and_secret_block(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    api_key, password = new_secret("env-key"), new_secret("block-pass")
    block_name = f"radas-test-{uuid.uuid4().hex[:8]}"
    Secret(value=password).save(block_name)
    monkeypatch.setenv("RADAS_TEST_WANDB_KEY", api_key)
    monkeypatch.setenv("RADAS_SECRET_ENV_ALLOWLIST", "RADAS_TEST_*")
    # References from parameters name project modules: the working directory exposes it.
    (workdir / "secret_ref_trainables.py").write_text(
        "from tests.notify_trainables import secret_hash\n"
    )
    results = radas(
        user_name="secrets",
        trainable="secret_ref_trainables:secret_hash",
        experiment_name="secret-refs",
        param_space={
            "a": {"grid_search": [1]},
            "wandb": {"api_key": {"env": "RADAS_TEST_WANDB_KEY"}},
            "db_password": {"secret_block": block_name},
        },
        run_choice="run",
    )
    df = results["df"]
    assert df["key_hash"].tolist() == [nt.digest(api_key)]
    assert df["password_hash"].tolist() == [nt.digest(password)]
    assert df["config/wandb/api_key"].tolist() == [REDACTED]
    stored = pr.flow_run_named("secret-refs").parameters["param_space"]
    assert stored["wandb"] == {"api_key": {"env": "RADAS_TEST_WANDB_KEY"}}
    assert stored["db_password"] == {"secret_block": block_name}
    outputs = {**file_outputs(Path(results["tuner"].experiment_path))}
    outputs.update(prefect_outputs("secret-refs"))
    assert leaks(outputs, api_key, password) == []


def test_unresolvable_references_are_clear_errors(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RADAS_TEST_UNSET_KEY", raising=False)
    monkeypatch.setenv("RADAS_SECRET_ENV_ALLOWLIST", "RADAS_TEST_*")
    base: dict[str, Any] = dict(
        user_name="secrets",
        trainable=nt.secret_hash,
        experiment_name="secret-bad",
        run_choice="run",
    )
    with pytest.raises(
        RadasValueError,
        match=r"param_space\['wandb/api_key'\] refers to the environment variable "
        r"'RADAS_TEST_UNSET_KEY', which is not set",
    ):
        asyncio.run(
            run_experiment(
                **base, param_space={"wandb": {"api_key": {"env": "RADAS_TEST_UNSET_KEY"}}}
            )
        )
    with pytest.raises(RadasValueError, match=r"Prefect Secret block 'no-such-block'"):
        asyncio.run(
            run_experiment(**base, param_space={"token": {"secret_block": "no-such-block"}})
        )
    with pytest.raises(RadasValueError, match=r"secret reference of another process"):
        asyncio.run(run_experiment(**base, param_space={"token": {"secret_ref": "0" * 32}}))


def test_a_secret_cannot_be_a_search_space(workdir: Path) -> None:
    first, second = new_secret("k1"), new_secret("k2")
    with pytest.raises(
        RadasValueError, match=r"param_space\['api_key'\] is a search space holding"
    ) as info:
        asyncio.run(
            run_experiment(
                user_name="secrets",
                trainable=nt.secret_hash,
                experiment_name="secret-grid",
                param_space={"api_key": tune.grid_search([first, second])},
                run_choice="run",
            )
        )
    text = "".join(traceback.format_exception(info.value))
    assert first not in text and second not in text


def test_trial_errors_are_scrubbed_at_the_source(tmp_path: Path) -> None:
    """``with_secrets`` on a real Tune run: error texts and error files hold no secret."""
    from radas_flows.targets.local import ensure_local_ray

    ensure_local_ray({})
    api_key = new_secret("trial-key")
    space, found = split_secrets(
        {"a": tune.grid_search([1, 2]), "fail_a": 2, "wandb": {"api_key": api_key}}
    )
    grid = tune.Tuner(
        with_secrets(nt.secret_echo_fail, found),
        param_space=space,
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="fn", verbose=0),
    ).fit()
    ok = [r for r in grid if r.error is None]
    failed = [r for r in grid if r.error is not None]
    assert [r.metrics["key_hash"] for r in ok] == [nt.digest(api_key)]
    assert len(failed) == 1
    error_text = "".join(traceback.format_exception(failed[0].error))
    assert "login refused for api key '***'" in error_text
    class_grid = tune.Tuner(
        with_secrets(nt.SecretCounter, found),
        param_space=space,
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="cls", verbose=0),
    ).fit()
    assert {r.metrics["key_hash"] for r in class_grid} == {nt.digest(api_key)}
    outputs = {"error": error_text, **file_outputs(tmp_path)}
    assert any("error.txt" in where for where in outputs)
    assert leaks(outputs, api_key) == []


def fail_with_the_secret(df: Any) -> Any:
    """An analysis step that fails quoting a secret it read itself (as a library might)."""
    raise ValueError(f"upload refused for key {os.environ['RADAS_TEST_TASK_KEY']}")


def expose_echo_api_key(workdir: Path) -> str:
    """References from parameters name project modules: the working directory re-exports it.

    One module name per test: a module imported from an earlier test's folder stays in
    ``sys.modules``, and that folder is not this run's project.
    """
    module = "echo_" + "".join(c if c.isalnum() else "_" for c in workdir.name)
    (workdir / f"{module}.py").write_text("from tests.notify_trainables import echo_api_key\n")
    return f"{module}:echo_api_key"


def test_a_failed_task_records_no_secret_in_its_state(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, logged: pytest.LogCaptureFixture
) -> None:
    """Prefect stores a failed task's exception text in its state, not through logging."""
    secret = new_secret("task-key")
    monkeypatch.setenv("RADAS_TEST_TASK_KEY", secret)
    monkeypatch.setenv("RADAS_SECRET_ENV_ALLOWLIST", "RADAS_TEST_TASK_KEY")
    with pytest.raises(ValueError, match=r"upload refused for key \*\*\*"):
        radas(
            user_name="secrets",
            trainable=expose_echo_api_key(workdir),
            experiment_name="secret-task-fails",
            param_space={"api_key": {"env": "RADAS_TEST_TASK_KEY"}},
            process_df_fn=fail_with_the_secret,
            run_choice="run",
        )
    flow_run = pr.flow_run_named("secret-task-fails")
    (analyze,) = [t for t in pr.task_runs_of(flow_run.id) if t.name.startswith("results_analyze")]
    assert analyze.state.is_failed()
    assert "upload refused for key ***" in (analyze.state.message or "")
    outputs = {"caplog": logged.text, **prefect_outputs("secret-task-fails")}
    assert leaks(outputs, secret) == []


def test_env_references_read_only_allowlisted_variables(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_password = new_secret("smtp-pass")
    monkeypatch.setenv("RADAS_SMTP_PASSWORD", smtp_password)
    monkeypatch.delenv("RADAS_SECRET_ENV_ALLOWLIST", raising=False)
    base: dict[str, Any] = dict(
        user_name="secrets",
        trainable=expose_echo_api_key(workdir),
        experiment_name="secret-allowlist",
        param_space={"api_key": {"env": "RADAS_SMTP_PASSWORD"}},
        run_choice="run",
    )
    with pytest.raises(
        RadasValueError,
        match=r"param_space\['api_key'\] refers to the environment variable "
        r"'RADAS_SMTP_PASSWORD', which references may not read",
    ):
        radas(**base)
    # The operator allows it: the trainable gets it, and its echo is redacted.
    monkeypatch.setenv("RADAS_SECRET_ENV_ALLOWLIST", "RADAS_SMTP_PASSWORD")
    df = radas(**base)["df"]
    assert df["echo"].tolist() == [REDACTED]
    assert leaks(prefect_outputs("secret-allowlist"), smtp_password) == []


def test_a_callback_holding_a_key_is_refused_before_anything_runs(workdir: Path) -> None:
    key = new_secret("callback-key")
    with pytest.raises(RadasValueError, match=r"callbacks\[0\]\.api_key looks like a secret"):
        asyncio.run(
            run_experiment(
                user_name="secrets",
                trainable=nt.echo_api_key,
                experiment_name="secret-callback",
                param_space={"api_key": new_secret("k")},
                tuner_init_kwargs={"run_config": tune.RunConfig(callbacks=[KeyHolder(key)])},
                run_choice="run",
            )
        )


def test_a_secret_in_clear_as_a_flow_parameter_is_refused(workdir: Path) -> None:
    with pytest.raises(
        RadasValueError,
        match=r"param_space\['api_key'\] is a secret given in clear as a flow parameter",
    ):
        radas(
            user_name="secrets",
            trainable=expose_echo_api_key(workdir),
            experiment_name="secret-literal",
            param_space={"api_key": "literal-in-the-ui"},
            run_choice="run",
        )
    with pytest.raises(
        RadasValueError, match=r"runtime_env\['env_vars'\]\['HF_TOKEN'\] is a secret given"
    ):
        radas(
            user_name="secrets",
            trainable=expose_echo_api_key(workdir),
            experiment_name="secret-literal",
            param_space={"api_key": {"secret_block": "x"}},
            runtime_env={"env_vars": {"HF_TOKEN": "hf-in-the-ui"}},
            run_choice="run",
        )


def test_a_search_space_over_secrets_is_refused_naming_its_key(workdir: Path) -> None:
    first, second = new_secret("k1"), new_secret("k2")
    with pytest.raises(
        RadasValueError, match=r"param_space\['creds'\] is a search space holding secret"
    ) as info:
        asyncio.run(
            run_experiment(
                user_name="secrets",
                trainable=nt.echo_api_key,
                experiment_name="secret-grid-dicts",
                param_space={"creds": tune.grid_search([{"api_key": first}, {"api_key": second}])},
                run_choice="run",
            )
        )
    text = "".join(traceback.format_exception(info.value))
    assert first not in text and second not in text
