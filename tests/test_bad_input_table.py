"""Bad input, one table: every case fails with an error naming the value and the fix, and nothing
is submitted (no Ray job on the loopback cluster, no results folder, no experiment lock held).

The entry points: ``run_experiment`` (``api``), the radas flow called with JSON parameters as a
deployment gets them (``flow``; tests/deployments/test_bad_input_deployment.py sends a subset
through a real deployment run), the cluster registry file (``registry``), ``RADAS_*``
variables (``env``) and the ``radas`` command line (``cli``). Value errors the existing tests
cover (tests/test_validation.py, tests/test_parameters.py) are not repeated here.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from radas_flows import run_experiment
from radas_flows.clusters.jobs import job_client
from radas_flows.clusters.registry import get_cluster
from radas_flows.origin import origin_record, read_origin, record_origin
from tests.clusters.helpers import loopback_variant
from tests.clusters.loopback_ray import RayHead

pytestmark = pytest.mark.cluster

USER = "badin"
TRAINABLE = "tests.trainables_for_tests:returning"
ROOT = Path(__file__).resolve().parents[1]
SMTP_VARS = ("RADAS_SMTP_BLOCK", "RADAS_SMTP_HOST", "RADAS_SMTP_PORT", "RADAS_SMTP_SECURITY")


@dataclass(frozen=True)
class Case:
    """One bad input: where it enters, what is bad, and what the error must say."""

    id: str
    kind: str  # api | flow | registry | env | cli
    match: str  # a regular expression the error (or the CLI's stderr) must match
    args: dict[str, Any] = field(default_factory=dict)  # run_experiment / flow arguments
    argv: tuple[str, ...] = ()  # cli
    env: dict[str, str] = field(default_factory=dict)
    registry: dict[str, Any] | str | None = None  # loopback entry overrides, or the file text
    exit_code: int = 2  # cli


LONG = "x" * 300
CASES: list[Case] = [
    # --- run_experiment ---------------------------------------------------------------------
    Case("name-nul", "api", r"experiment_name='a\\x00b' contains the non-printing "
         r"character '\\x00'",
         {"experiment_name": "a\x00b"}),
    Case("name-newline", "api", r"experiment_name='lr\\nsweep' contains the non-printing character",
         {"experiment_name": "lr\nsweep"}),
    Case("name-escape", "api", r"contains the non-printing character '\\x1b' at position 1: .*"
         r"printable characters only", {"experiment_name": "a\x1b[31mred"}),
    Case("name-zero-width", "api", r"non-printing character '\\u200b'",
         {"experiment_name": "lr\u200bsweep"}),
    Case("name-300", "api", r"\(300 characters\) makes the results folder name .* radas "
         r"allows 240 .*: use an experiment_name of at most \d+ characters",
         {"experiment_name": LONG}),
    Case("user-newline", "api", r"Invalid user_name 'alice\\n'", {"user_name": "alice\n"}),
    Case("user-65", "api", r"Invalid user_name 'u{65}': use 1-64 characters",
         {"user_name": "u" * 65}),
    Case("email-header-injection", "api", r"email_notification_to_address='a@b\.c\\nBcc: x@y\.z' "
         r"is not an email address", {"email_notification_to_address": "a@b.c\nBcc: x@y.z"}),
    Case("param-space-list", "api", r"param_space=\[1, 2\] must be a dict",
         {"param_space": [1, 2]}),
    Case("tune-config-dict", "api", r"tuner_init_kwargs\['tune_config'\]=\{'num_samples': 2\} "
         r"must be a ray.tune.TuneConfig",
         {"tuner_init_kwargs": {"tune_config": {"num_samples": 2}}}),
    Case("yes-string", "api", r"yes='yes' must be True or False", {"yes": "yes"}),
    Case("cpu-nan", "api", r"cpu_per_trial=nan must be greater than 0",
         {"cpu_per_trial": float("nan")}),
    Case("cpu-bool", "api", r"cpu_per_trial=True is not a number", {"cpu_per_trial": True}),
    Case("plot-kwargs-list", "api", r"plot_kwargs=\['x'\] must be a dict", {"plot_kwargs": ["x"]}),
    Case("cluster-cpu-above-node", "api", r"cpu_per_trial=3(\.0)? is more than cpu_per_node of "
         r"loopback \(2\)",
         {"run_with": "cluster:loopback", "cpu_per_trial": 3}),
    # --- the flow's JSON parameters -------------------------------------------------------
    Case("json-name-newline", "flow", r"experiment_name='x\\ny' contains the non-printing "
         r"character",
         {"experiment_name": "x\ny"}),
    Case("json-name-300", "flow", r"\(300 characters\) makes the results folder name",
         {"experiment_name": LONG}),
    Case("json-run-with", "flow", r"run_with: String should match pattern", {"run_with": "gpu"}),
    Case("json-run-choice", "flow", r"run_choice: Input should be 'run'",
         {"run_choice": "fresh"}),
    Case("json-dos", "flow", r"dos\.0: Input should be 'run' or 'analyze'", {"dos": ["plot"]}),
    Case("json-cpu", "flow", r"cpu_per_trial: Input should be greater than 0",
         {"cpu_per_trial": -2}),
    Case("json-grammar", "flow", r'param_space\.lr: "uniform" needs lo < hi',
         {"param_space": {"lr": {"uniform": [1, 0]}}}),
    Case("json-tuner-mode", "flow", r"tuner: Value error, metric is set without mode",
         {"tuner": {"metric": "score"}}),
    Case("json-stdlib-trainable", "flow", r"trainable='os:system': module 'os' is the standard "
         r"library", {"trainable": "os:system"}),
    Case("json-user", "flow", r"Invalid user_name '\.\./x'", {"user_name": "../x"}),
    Case("json-unknown-cluster", "flow", r"Unknown cluster 'nope'\. Clusters in .*: 'loopback'",
         {"run_with": "cluster:nope"}),
    # --- the cluster registry file ----------------------------------------------------------
    Case("registry-no-scheme", "registry", r"key 'address' = '127\.0\.0\.1:8265' must start "
         r"with http:// or https://", registry={"address": "127.0.0.1:8265"}),
    Case("registry-cpu-string", "registry", r"key 'cpu_per_node' is '2' \(str\); it must be an "
         r"integer", registry={"cpu_per_node": "2"}),
    Case("registry-gpu-share", "registry", r"lower gpu_per_cpu to at most 1",
         registry={"gpu_per_cpu": 5}),
    Case("registry-unknown-key", "registry", r"unknown key 'adress'.*fix its spelling",
         registry={"adress": "http://127.0.0.1:1"}),
    Case("registry-missing-key", "registry", r"missing key 'hint'; add hint = a string",
         registry='[loopback]\naddress = "http://127.0.0.1:1"\ncpu_per_node = 2\n'
         "gpu_per_node = 0\ngpu_per_cpu = 0\n"),
    Case("registry-reserved-name", "registry", r"the name 'local' is reserved",
         registry='[local]\naddress = "http://127.0.0.1:1"\ncpu_per_node = 2\n'
         'gpu_per_node = 0\ngpu_per_cpu = 0\nhint = "x"\n'),
    Case("registry-token-file-missing", "registry", r"/no/such/token",
         registry={"token_file": "/no/such/token"}),
    Case("registry-relative-results", "registry", r"key 'results_root' = 'ray-results' is a "
         r"relative path", registry={"results_root": "ray-results"}),
    # --- RADAS_* environment variables ------------------------------------------------------
    Case("env-local-cpus", "env", r"RADAS_LOCAL_NUM_CPUS='two' is not an integer",
         env={"RADAS_LOCAL_NUM_CPUS": "two"}),
    Case("env-lock-wait", "env", r"RADAS_EXPERIMENT_LOCK_WAIT_S='-1' must be >= 0",
         env={"RADAS_EXPERIMENT_LOCK_WAIT_S": "-1"}),
    Case("env-oom-rounds", "env", r"RADAS_MAX_OOM_ROUNDS='many' is not a whole number",
         env={"RADAS_MAX_OOM_ROUNDS": "many"}),
    Case("env-keep-job", "env", r"RADAS_KEEP_JOB_ON_EXIT='ture' is neither on nor off",
         env={"RADAS_KEEP_JOB_ON_EXIT": "ture"}),
    Case("env-reuse-actors", "env", r"RADAS_REUSE_ACTORS='off' is not 0 or 1",
         env={"RADAS_REUSE_ACTORS": "off"}),
    Case("env-results-relative", "env", r"RADAS_RESULTS_ROOT='results' is a relative path",
         env={"RADAS_RESULTS_ROOT": "results"}),
    Case("env-results-control", "env", r"RADAS_RESULTS_ROOT='/tmp/a\\nb' contains the control",
         env={"RADAS_RESULTS_ROOT": "/tmp/a\nb"}),
    Case("env-clusters-file", "env", r"RADAS_CLUSTERS_FILE='/no/such/clusters\.toml' does not "
         r"name an existing file", {"run_with": "cluster:loopback"},
         env={"RADAS_CLUSTERS_FILE": "/no/such/clusters.toml"}),
    Case("env-notify-retries", "env", r"RADAS_NOTIFY_RETRIES='twice' is not a whole number >= 0:"
         r" set it to a valid value or unset it", {"email_notification_to_address": "a@b.com"},
         env={"RADAS_NOTIFY_RETRIES": "twice"}),
    Case("env-notify-delay", "env", r"RADAS_NOTIFY_RETRY_DELAY_S='-5' is not a number of "
         r"seconds >= 0", {"email_notification_to_address": "a@b.com"},
         env={"RADAS_NOTIFY_RETRY_DELAY_S": "-5"}),
    Case("env-smtp-port", "env", r"RADAS_SMTP_PORT='smtp' is not a port number",
         {"email_notification_to_address": "a@example.com"},
         env={"RADAS_SMTP_HOST": "127.0.0.1", "RADAS_SMTP_PORT": "smtp"}),
    Case("env-smtp-none", "env", r"RADAS_SMTP_HOST",
         {"email_notification_to_address": "a@example.com"}),
    # --- the radas command line ---------------------------------------------------------------
    Case("cli-timeout-inf", "cli", r"argument --timeout: 'inf' is not a number of seconds "
         r"greater than 0", argv=("clusters", "--timeout", "inf")),
    Case("cli-timeout-negative", "cli", r"argument --timeout: '-1' is not a number of seconds",
         argv=("clusters", "--timeout", "-1")),
    Case("cli-timeout-nan", "cli", r"argument --timeout: 'nan' is not a number",
         argv=("experiments", "--cluster", "loopback", "--timeout", "nan")),
    Case("cli-user-path", "cli", r"argument --user: Invalid user_name '\.\./x'",
         argv=("experiments", "--cluster", "loopback", "--user", "../x")),
    Case("cli-user-newline", "cli", r"argument --user: Invalid user_name 'a\\nb'",
         argv=("stop", "radas-x", "--cluster", "loopback", "--user", "a\nb")),
    Case("cli-cluster-name", "cli", r"argument --cluster: 'bad name!' is not a cluster name",
         argv=("experiments", "--cluster", "bad name!")),
    Case("cli-broken-registry", "cli", r"radas clusters: error: Cluster registry .* has 1 "
         r"problem\(s\):\n- cluster 'loopback' .* key 'cpu_per_node' is '2'",
         argv=("clusters",), registry={"cpu_per_node": "2"}, exit_code=1),
]  # fmt: skip


def test_the_table_has_forty_cases_of_every_kind() -> None:
    kinds = {c.kind for c in CASES}
    assert len(CASES) >= 40 and kinds == {"api", "flow", "registry", "env", "cli"}
    assert len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------------------------------------
# What "nothing is submitted" means, checked after every case
# ---------------------------------------------------------------------------------------------


def _jobs(head: RayHead) -> set[str]:
    client = job_client(get_cluster("loopback", path=head.registry))
    return {str(j.submission_id) for j in client.list_jobs()}


def _held_locks() -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limits = client.read_global_concurrency_limits(limit=200)
    return [f"{lim.name} ({lim.active_slots})" for lim in limits if lim.active_slots]


def _folders(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def sandbox(
    prefect_api: None, ray_head: RayHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A private results root and working directory; afterwards, proof nothing was submitted."""
    root = tmp_path / "results"
    monkeypatch.setenv("RADAS_RESULTS_ROOT", str(root))
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(ray_head.registry))
    for name in (*SMTP_VARS, "RADAS_EXPERIMENT_LOCK_WAIT_S", "RADAS_KEEP_JOB_ON_EXIT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(ROOT)  # trainable references resolve from the repository, as deployed
    jobs = _jobs(ray_head)
    before = _folders(root)
    # Locks held before (a run SIGKILLed by an earlier test keeps its own until taken over).
    held = set(_held_locks())
    yield root
    assert _jobs(ray_head) == jobs, "a Ray job was submitted"
    assert _folders(root) == before, "a results folder was created or changed"
    assert set(_held_locks()) <= held, "an experiment lock is still held"


def _run(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        user_name=USER,
        trainable=TRAINABLE,
        experiment_name="bad-input",
        param_space={"a": 1},
        run_choice="run",
    )
    kwargs.update(overrides)
    return asyncio.run(run_experiment(**kwargs))


def _flow(**overrides: Any) -> Any:
    from radas_flows.flows import radas

    parameters: dict[str, Any] = dict(
        user_name=USER,
        trainable=TRAINABLE,
        experiment_name="bad-input",
        param_space={"a": 1},
        run_choice="run",
    )
    parameters.update(overrides)
    return radas(**parameters)


def _registry_file(case: Case, head: RayHead, folder: Path) -> Path:
    path = folder / "clusters.toml"
    if isinstance(case.registry, str):
        path.write_text(case.registry)
        return path
    return loopback_variant(head, path, "loopback", **(case.registry or {}))


def _setup(case: Case, head: RayHead, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    if case.registry is not None:
        monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(_registry_file(case, head, folder)))


RUN_CASES = [c for c in CASES if c.kind != "cli"]
CLI_CASES = [c for c in CASES if c.kind == "cli"]


@pytest.mark.parametrize("case", RUN_CASES, ids=[c.id for c in RUN_CASES])
def test_bad_input_is_refused_before_anything_is_submitted(
    case: Case, sandbox: Path, ray_head: RayHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(case, ray_head, tmp_path, monkeypatch)
    args = dict(case.args)
    if case.kind == "registry":
        cluster = "local" if "[local]" in str(case.registry) else "loopback"
        args.setdefault("run_with", f"cluster:{cluster}")
    with pytest.raises(Exception, match=case.match):
        if case.kind == "flow":
            _flow(**args)
        else:
            _run(**args)


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_bad_command_lines_are_refused(
    case: Case,
    sandbox: Path,
    ray_head: RayHead,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from radas_flows.cli import main

    _setup(case, ray_head, tmp_path, monkeypatch)
    try:
        code = main(list(case.argv))
    except SystemExit as e:
        code = int(e.code or 0)
    err = capsys.readouterr().err
    assert code == case.exit_code, err
    assert re.search(case.match, err), err


# ---------------------------------------------------------------------------------------------
# Experiment names that become one results folder
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(prefect_api: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real stored experiment: 'a-b' run from a project folder."""
    from tests.trainables_for_tests import returning

    base = tmp_path_factory.mktemp("collide")
    root, proj = base / "results", base / "proj"
    (proj / "a").mkdir(parents=True)
    saved, cwd = os.environ.get("RADAS_RESULTS_ROOT"), os.getcwd()
    os.environ["RADAS_RESULTS_ROOT"] = str(root)
    os.chdir(proj)
    try:
        _run(trainable=returning, experiment_name="a-b", param_space={"a": {"grid_search": [1, 2]}})
    finally:
        os.chdir(cwd)
        if saved is None:
            os.environ.pop("RADAS_RESULTS_ROOT", None)
        else:
            os.environ["RADAS_RESULTS_ROOT"] = saved
    (folder,) = [p for p in (root / USER).iterdir() if p.is_dir()]
    assert read_origin(str(folder)) == origin_record(str(proj), "a-b")
    return {"root": root, "proj": proj, "folder": folder}


@pytest.mark.parametrize(
    ("cwd", "name", "other"),
    [
        ("", "a/b", "a-b"),  # one folder, two names
        ("a", "b", "a_b"),  # a sub-folder, and a name with '_' in the folder above
    ],
)
@pytest.mark.parametrize("choice", ["run", "restore", "analyze"])
def test_names_that_collide_after_sanitizing_are_refused(
    stored: dict[str, Path],
    cwd: str,
    name: str,
    other: str,
    choice: str,
    monkeypatch: pytest.MonkeyPatch,
    ray_head: RayHead,
) -> None:
    from radas_flows.inputs.spec import sanitize_experiment_name
    from tests.trainables_for_tests import returning

    root, proj, folder = stored["root"], stored["proj"], stored["folder"]
    workdir = proj / cwd if cwd else proj
    assert sanitize_experiment_name(name, str(workdir)) == folder.name
    # The folder holds real Tune results of `other`, run from proj.
    record_origin(str(folder), origin_record(str(proj), other))
    monkeypatch.setenv("RADAS_RESULTS_ROOT", str(root))
    monkeypatch.chdir(workdir)
    before = {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}
    jobs, held = _jobs(ray_head), set(_held_locks())
    extra: dict[str, Any] = (
        {"dos": ["analyze"], "run_choice": None} if choice == "analyze" else {"run_choice": choice}
    )
    expected = (
        rf"experiment_name={name!r} \(from '{workdir}'\) and experiment_name={other!r} "
        rf"\(from '{proj}'\) both become the results folder {folder}, .* Give this experiment "
        "a name that differs"
    )
    with pytest.raises(Exception, match=expected):
        _run(trainable=returning, experiment_name=name, **extra)
    after = {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert after == before  # the other experiment's results are untouched
    assert read_origin(str(folder)) == origin_record(str(proj), other)
    assert _jobs(ray_head) == jobs and set(_held_locks()) <= held


def test_the_same_name_from_the_same_folder_is_the_same_experiment(
    stored: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.trainables_for_tests import returning

    root, proj, folder = stored["root"], stored["proj"], stored["folder"]
    record_origin(str(folder), origin_record(str(proj), "a-b"))
    monkeypatch.setenv("RADAS_RESULTS_ROOT", str(root))
    monkeypatch.chdir(proj)
    result = _run(trainable=returning, experiment_name="a-b", dos=["analyze"], run_choice=None)
    assert sorted(result["df"]["config/a"]) == [1, 2]
