"""A cluster's token goes to that cluster only: no redirects, a warning over plain http, and a
registry in the working directory cannot read the user's token files.

Every server here is a real HTTP server on 127.0.0.1 (tests/clusters/redirect_servers.py). The
"far" address of the plain-http tests (192.0.2.10, TEST-NET-1) is reached only through a proxy on
127.0.0.1, so nothing leaves this machine.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from radas_flows.cli import main
from radas_flows.clusters import probe_clusters
from radas_flows.clusters.credentials import (
    ClusterRedirectError,
    auth_headers,
    plain_http_warning,
)
from radas_flows.clusters.jobs import job_client
from radas_flows.clusters.registry import ClusterAuthError, get_cluster
from tests.clusters.redirect_servers import Server, serve

TOKEN = "tok-" + uuid.uuid4().hex
ROOT = Path(__file__).resolve().parents[2]
Register = Callable[..., str]


@pytest.fixture
def recorder() -> Iterator[Server]:
    """The other host: answers like a dashboard and records what it gets."""
    with serve(recorder=True) as server:
        yield server


@pytest.fixture
def head(recorder: Server) -> Iterator[Server]:
    """The cluster's head: answers the health check, redirects what a test says to `recorder`."""
    with serve(recorder=False) as server:
        server.redirect_to = recorder.url
        yield server


def _table(name: str, address: str, token_line: str) -> str:
    return (
        f'[{name}]\naddress = "{address}"\ncpu_per_node = 4\ngpu_per_node = 0\n'
        f'gpu_per_cpu = 0\nhint = "test cluster"\n{token_line}\n'
    )


@pytest.fixture
def registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Register:
    """Write a registry (RADAS_CLUSTERS_FILE) naming one cluster with a token file."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)

    def register(address: str, name: str | None = None, token: bool = True) -> str:
        name = name or f"c-{uuid.uuid4().hex[:8]}"  # the warning is once per cluster per process
        path = tmp_path / f"{name}.toml"
        path.write_text(_table(name, address, f'token_file = "{token_file}"' if token else ""))
        monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(path))
        return name

    return register


# --- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_probe_follows_no_redirect_and_sends_the_token_nowhere_else(
    head: Server, recorder: Server, registered: Register, code: int
) -> None:
    head.redirect_paths, head.redirect_code = ("/api/cluster_status",), code
    name = registered(head.url)
    [status] = probe_clusters([name], timeout=5.0)
    assert recorder.authorizations() == []
    assert recorder.received == []
    assert [r.authorization for r in head.received if r.path == "/api/cluster_status"] == [
        f"Bearer {TOKEN}"
    ]
    assert status.online and status.cpus_total is None
    assert status.error is not None
    assert f"{name!r}" in status.error and f"{recorder.url}/api/cluster_status" in status.error
    assert f"HTTP {code}" in status.error and "follows no redirect" in status.error


def test_radas_clusters_sends_no_token_through_a_redirect(
    head: Server, recorder: Server, registered: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    head.redirect_paths = ("/api/cluster_status",)
    name = registered(head.url)
    assert main(["clusters"]) == 0
    out = capsys.readouterr().out
    assert f"[status: online] {name}: test cluster" in out
    assert recorder.authorizations() == [] and recorder.received == []


def test_a_redirected_health_check_is_offline(
    head: Server, recorder: Server, registered: Register
) -> None:
    head.redirect_paths = ("/api/gcs_healthz",)
    name = registered(head.url)
    [status] = probe_clusters([name], timeout=5.0)
    assert not status.online
    assert recorder.received == []
    assert status.error is not None and f"{recorder.url}/api/gcs_healthz" in status.error


def test_jobs_client_refuses_a_redirected_version_check(
    head: Server, recorder: Server, registered: Register
) -> None:
    head.redirect_paths, head.redirect_code = ("/api/version",), 307
    name = registered(head.url)
    error: BaseException | None = None
    try:
        job_client(get_cluster(name))
    except Exception as e:
        error = e
    assert recorder.received == []
    assert isinstance(error, ClusterRedirectError)
    assert f"Cluster {name!r}" in str(error) and f"{recorder.url}/api/version" in str(error)
    assert TOKEN not in str(error)


def test_jobs_api_submission_and_status_follow_no_redirect(
    head: Server, recorder: Server, registered: Register, tmp_path: Path
) -> None:
    head.redirect_paths, head.redirect_code = ("/api/jobs/", "/api/packages/"), 307
    name = registered(head.url)
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("SECRET_CODE = 1\n")
    client = job_client(get_cluster(name))  # /api/version is answered by the head itself
    with pytest.raises(ClusterRedirectError, match=rf"Cluster {name!r}.*{recorder.url}/api/"):
        client.submit_job(entrypoint="echo hi", runtime_env={"working_dir": str(project)})
    with pytest.raises(ClusterRedirectError, match=rf"{recorder.url}/api/jobs/radas-x"):
        client.get_job_status("radas-x")
    with pytest.raises(ClusterRedirectError):
        client.list_jobs()
    assert recorder.received == []
    assert all(r.authorization == f"Bearer {TOKEN}" for r in head.received)


def test_a_cluster_without_a_token_gets_none_of_rays_own(
    recorder: Server, registered: Register
) -> None:
    """With ``RAY_AUTH_MODE=token`` in the environment, Ray's client adds this process's Ray
    token to every request; a registry cluster gets its own token or none. (A subprocess: Ray
    reads the auth mode once per process.)"""
    name = registered(recorder.url, token=False)
    script = (
        "from radas_flows.clusters.jobs import job_client\n"
        "from radas_flows.clusters.registry import get_cluster\n"
        f"job_client(get_cluster({name!r})).get_job_status('radas-x')\n"
    )
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="r" * 32, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r.path for r in recorder.received] == ["/api/version", "/api/jobs/radas-x"]
    assert recorder.authorizations() == []


# --- plain http to a host that is not this machine ----------------------------------------

FAR = "http://192.0.2.10:8265"  # TEST-NET-1: documentation only, never routed


@pytest.fixture
def proxy(recorder: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """Route every plain-http request through `recorder`, so the far address is never contacted."""
    for var in ("NO_PROXY", "no_proxy"):  # this machine (the Prefect test API) directly
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, recorder.url)
    return recorder


def _warnings(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [m for m in messages if "plain http://" in m and name in m]


def test_token_over_plain_http_to_a_far_host_warns_once_per_cluster(
    proxy: Server, registered: Register, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    name = registered(FAR)
    job_client(get_cluster(name))
    job_client(get_cluster(name))
    assert proxy.received and {r.path.split("/api/")[0] for r in proxy.received} == {FAR}
    assert proxy.authorizations() == [f"Bearer {TOKEN}"] * 2
    [warning] = _warnings(caplog, name)
    assert "192.0.2.10" in warning and "https://" in warning and TOKEN not in warning
    # The probes go through the same proxy (urllib reads it from the environment too).
    assert urllib.request.getproxies().get("http") == proxy.url
    [status] = probe_clusters([name], timeout=5.0)
    assert status.online and status.cpus_total == 4.0
    assert {r.path.split("/api/")[0] for r in proxy.received} == {FAR}
    assert len(_warnings(caplog, name)) == 1
    other = registered(FAR)
    job_client(get_cluster(other))
    assert len(_warnings(caplog, other)) == 1


@pytest.mark.parametrize(
    ("address", "warns"),
    [
        ("http://192.0.2.10:8265", True),
        ("http://head.example.org:8265", True),
        ("http://10.0.0.5:8265", True),
        ("https://192.0.2.10:8265", False),
        ("http://127.0.0.1:8265", False),
        ("http://127.0.2.3:8265", False),
        ("http://localhost:8265", False),
        ("http://[::1]:8265", False),
    ],
)
def test_which_addresses_warn(tmp_path: Path, address: str, warns: bool) -> None:
    path = tmp_path / "r.toml"
    path.write_text(_table("c", address, 'token_env = "SOME_TOKEN"'))
    cluster = get_cluster("c", path=path)
    assert (plain_http_warning(cluster) is not None) is warns


def test_no_token_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.toml"
    name = f"c-{uuid.uuid4().hex[:8]}"
    path.write_text(_table(name, FAR, ""))
    caplog.set_level(logging.WARNING)
    assert auth_headers(get_cluster(name, path=path)) == {}
    assert _warnings(caplog, name) == []


def test_the_warning_is_in_the_run_log(
    prefect_api: None, proxy: Server, registered: Register
) -> None:
    from prefect import flow

    from tests.prefect_reads import latest_flow_run, logs_of

    name = registered(FAR)

    @flow(name=f"token-warning-{name}")
    def check() -> None:
        job_client(get_cluster(name))
        probe_clusters([name], timeout=5.0)

    check()
    logs = [m for m in logs_of(latest_flow_run().id) if "plain http://" in m]
    assert len(logs) == 1 and name in logs[0] and TOKEN not in logs[0]


# --- a registry in the working directory --------------------------------------------------


@pytest.fixture
def clone(no_registry: Path, recorder: Server) -> Path:
    """A cloned repository as cwd, whose radas_clusters.toml pairs the user's token with
    another address (`recorder`); the user's own token lies in ~/.ray."""
    (no_registry / "home" / ".ray").mkdir()
    (no_registry / "home" / ".ray" / "atol_token").write_text(TOKEN)
    work = no_registry / "work"
    (work / "radas_clusters.toml").write_text(
        _table("atol", recorder.url, 'token_file = "~/.ray/atol_token"')
    )
    return work


def test_working_directory_registry_cannot_send_the_users_token(
    clone: Path, recorder: Server
) -> None:
    [status] = probe_clusters(["atol"], timeout=5.0)
    assert recorder.authorizations() == []
    cluster = get_cluster("atol")
    with pytest.raises(ClusterAuthError) as info:
        cluster.read_token()
    message = str(info.value)
    for part in (
        "'atol'",
        str(clone / "radas_clusters.toml"),
        str(clone.parent / "home" / ".ray" / "atol_token"),
        "~/.config/radas/clusters.toml",
        "RADAS_CLUSTERS_FILE",
    ):
        assert part in message, part
    assert TOKEN not in message
    assert status.error == message
    with pytest.raises(ClusterAuthError, match="outside"):
        job_client(cluster)
    assert recorder.authorizations() == []


def test_a_symlink_out_of_the_working_directory_is_outside(clone: Path, recorder: Server) -> None:
    (clone / "tokens").mkdir()
    os.symlink(clone.parent / "home" / ".ray" / "atol_token", clone / "tokens" / "atol")
    (clone / "radas_clusters.toml").write_text(
        _table("atol", recorder.url, 'token_file = "tokens/atol"')
    )
    with pytest.raises(ClusterAuthError, match="outside"):
        get_cluster("atol").read_token()


def test_working_directory_registry_cannot_send_an_environment_variable(
    clone: Path, recorder: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_SECRET", TOKEN)
    (clone / "radas_clusters.toml").write_text(
        _table("atol", recorder.url, 'token_env = "SOME_SECRET"')
    )
    probe_clusters(["atol"], timeout=5.0)
    assert recorder.authorizations() == []
    with pytest.raises(ClusterAuthError, match=r"token_env SOME_SECRET.*RADAS_CLUSTERS_FILE"):
        get_cluster("atol").read_token()


def test_a_token_file_inside_the_working_directory_is_read(clone: Path, recorder: Server) -> None:
    (clone / "team_token").write_text("team-token")
    (clone / "radas_clusters.toml").write_text(
        _table("atol", recorder.url, 'token_file = "team_token"')
    )
    assert get_cluster("atol").read_token() == "team-token"


def test_the_users_registry_allows_the_same_pairing(clone: Path, recorder: Server) -> None:
    user = clone.parent / "home" / ".config" / "radas" / "clusters.toml"
    user.parent.mkdir(parents=True)
    user.write_text(_table("mine", recorder.url + "/", 'token_file = "~/.ray/atol_token"'))
    assert get_cluster("atol").read_token() == TOKEN
    [status] = probe_clusters(["atol"], timeout=5.0)
    assert status.cpus_total == 4.0 and recorder.authorizations() == [f"Bearer {TOKEN}"]


def test_the_users_registry_pairing_another_address_allows_nothing(
    clone: Path, recorder: Server
) -> None:
    user = clone.parent / "home" / ".config" / "radas" / "clusters.toml"
    user.parent.mkdir(parents=True)
    user.write_text(_table("atol", "http://10.0.0.5:8265", 'token_file = "~/.ray/atol_token"'))
    with pytest.raises(ClusterAuthError, match=r"outside.*http://10\.0\.0\.5:8265"):
        get_cluster("atol").read_token()


def test_radas_clusters_file_naming_the_registry_allows_it(
    clone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(clone / "radas_clusters.toml"))
    assert get_cluster("atol").read_token() == TOKEN
