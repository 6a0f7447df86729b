"""The cluster registry: where it is found, what it accepts, and the errors for what it rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from radas_flows.clusters import addresses
from radas_flows.clusters.registry import (
    ClusterAuthError,
    ClusterConfig,
    RegistryError,
    get_cluster,
    load_registry,
    registry_path,
)

GOOD = """\
[atol-gpu-5090]
address = "http://10.0.0.5:8265"      # Ray dashboard / Jobs API
cpu_per_node = 64
gpu_per_node = 8
gpu_per_cpu = 0.125
hint = "32G GRAM per GPU, choose as the default choice"
token_file = "~/.ray/atol_token"
results_root = "/mnt/data/nfs/ray-results"

[gcp-cpu]
address = "https://gcp.example.org:443/"
cpu_per_node = 32
gpu_per_node = 0
gpu_per_cpu = 0
hint = "CPU-only work"
token_env = "GCP_RAY_TOKEN"
"""


def write(tmp_path: Path, text: str, name: str = "clusters.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_registry_reads_every_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(tmp_path, GOOD)
    clusters = load_registry(path)
    assert list(clusters) == ["atol-gpu-5090", "gcp-cpu"]
    gpu = clusters["atol-gpu-5090"]
    assert gpu == ClusterConfig(
        name="atol-gpu-5090",
        address="http://10.0.0.5:8265",
        cpu_per_node=64,
        gpu_per_node=8,
        gpu_per_cpu=0.125,
        hint="32G GRAM per GPU, choose as the default choice",
        token_file=str(tmp_path / ".ray" / "atol_token"),
        token_env=None,
        results_root="/mnt/data/nfs/ray-results",
        source=path,
    )
    cpu = clusters["gcp-cpu"]
    assert cpu.address == "https://gcp.example.org:443"  # trailing slash dropped
    assert cpu.gpu_per_cpu == 0.0 and isinstance(cpu.gpu_per_cpu, float)
    assert (cpu.token_file, cpu.token_env, cpu.results_root) == (None, "GCP_RAY_TOKEN", None)


def test_relative_token_file_is_relative_to_the_registry(tmp_path: Path) -> None:
    text = GOOD.replace('"~/.ray/atol_token"', '"tokens/atol"')
    path = write(tmp_path, text)
    assert get_cluster("atol-gpu-5090", path=path).token_file == str(tmp_path / "tokens/atol")


def test_registry_path_order(no_registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry_path() is None
    assert load_registry() == {}
    user = no_registry / "home" / ".config" / "radas" / "clusters.toml"
    user.parent.mkdir(parents=True)
    user.write_text(GOOD)
    assert registry_path() == user
    project = Path.cwd() / "radas_clusters.toml"
    project.write_text(GOOD)
    assert registry_path() == project
    explicit = write(no_registry, GOOD, "explicit.toml")
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(explicit))
    assert registry_path() == explicit
    assert get_cluster("gcp-cpu").source == explicit


def test_env_var_naming_a_missing_file_is_an_error(
    no_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(no_registry / "nope.toml"))
    with pytest.raises(RegistryError, match=r"RADAS_CLUSTERS_FILE=.*nope\.toml.*does not name"):
        registry_path()


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[atol-gpu-5090\naddress = 'x'\n")
    with pytest.raises(RegistryError, match=r"clusters\.toml is not valid TOML") as info:
        load_registry(path)
    assert "cpu_per_node = 64" in str(info.value)  # shows how a table should look


def test_missing_key_names_cluster_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("cpu_per_node = 64\n", ""))
    with pytest.raises(
        RegistryError,
        match=r"cluster 'atol-gpu-5090' in .*clusters\.toml: missing key 'cpu_per_node'; add",
    ):
        load_registry(path)


def test_mistyped_value_names_cluster_key_and_expected_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("gpu_per_node = 8", 'gpu_per_node = "8"'))
    with pytest.raises(
        RegistryError,
        match=r"cluster 'atol-gpu-5090' in .*: key 'gpu_per_node' is '8' \(str\); it must be an "
        r"integer",
    ):
        load_registry(path)


def test_boolean_is_not_an_integer(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("cpu_per_node = 32", "cpu_per_node = true"))
    with pytest.raises(RegistryError, match=r"'gcp-cpu'.*key 'cpu_per_node' is True \(bool\)"):
        load_registry(path)


def test_misspelled_key_is_unknown(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("gpu_per_cpu = 0.125", "gpus_per_cpu = 0.125"))
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    message = str(info.value)
    assert "unknown key 'gpus_per_cpu'" in message
    assert "missing key 'gpu_per_cpu'" in message
    assert "2 problem(s)" in message


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("10.0.0.5:8265", "must start with http:// or https://"),
        ("ray://10.0.0.5:10001", "must start with http:// or https://"),
        ("http://10.0.0.5", "has no port"),
        ("http://10.0.0.5:8265/api", r"must be only scheme, host and port \(no path"),
        ("http://:8265", "has no host"),
    ],
)
def test_bad_address(tmp_path: Path, address: str, problem: str) -> None:
    path = write(tmp_path, GOOD.replace("http://10.0.0.5:8265", address))
    with pytest.raises(RegistryError, match=rf"key 'address' = '{address}' {problem}"):
        load_registry(path)


def test_gpu_share_above_the_node_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("gpu_per_cpu = 0.125", "gpu_per_cpu = 0.25"))
    with pytest.raises(
        RegistryError,
        match=r"gpu_per_cpu \* cpu_per_node = 0.25 \* 64 = 16 is more than gpu_per_node = 8; "
        r"lower gpu_per_cpu to at most 0.125",
    ):
        load_registry(path)


def test_token_file_and_token_env_together_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path, GOOD.replace('token_env = "GCP_RAY_TOKEN"', 'token_env = "A"\ntoken_file = "b"')
    )
    with pytest.raises(RegistryError, match=r"'gcp-cpu'.*set only one of 'token_file' and"):
        load_registry(path)


@pytest.mark.parametrize("name", ["local", "bad name"])
def test_reserved_or_odd_names(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, GOOD.replace("[gcp-cpu]", f'["{name}"]'))
    with pytest.raises(RegistryError, match=rf"cluster '{name}'.*rename the table"):
        load_registry(path)


def test_top_level_value_that_is_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'default = "atol-gpu-5090"\n' + GOOD)
    with pytest.raises(RegistryError, match=r"'default' in .* is not a table"):
        load_registry(path)


def test_unknown_cluster_lists_known_names_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(
        RegistryError,
        match=r"Unknown cluster 'atol-gpu-9999'\. Clusters in .*clusters\.toml: "
        r"'atol-gpu-5090', 'gcp-cpu'\. Use one of these",
    ):
        get_cluster("atol-gpu-9999", path=path)


def test_unknown_cluster_without_any_registry(no_registry: Path) -> None:
    with pytest.raises(RegistryError, match=r"no cluster registry found .*RADAS_CLUSTERS_FILE"):
        get_cluster("atol-gpu-5090")


def test_read_token_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_path = tmp_path / "token"
    token_path.write_text("  s3cr3t-token\n")
    path = write(tmp_path, GOOD.replace('"~/.ray/atol_token"', f'"{token_path}"'))
    clusters = load_registry(path)
    assert clusters["atol-gpu-5090"].read_token() == "s3cr3t-token"
    monkeypatch.setenv("GCP_RAY_TOKEN", "env-token")
    assert clusters["gcp-cpu"].read_token() == "env-token"


def test_read_token_errors_name_the_source_not_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, GOOD.replace('"~/.ray/atol_token"', f'"{tmp_path / "missing"}"'))
    clusters = load_registry(path)
    with pytest.raises(ClusterAuthError, match=r"token_file '.*missing' does not exist"):
        clusters["atol-gpu-5090"].read_token()
    (tmp_path / "missing").write_text("\n")
    with pytest.raises(ClusterAuthError, match=r"token_file '.*missing' is empty"):
        clusters["atol-gpu-5090"].read_token()
    monkeypatch.delenv("GCP_RAY_TOKEN", raising=False)
    with pytest.raises(ClusterAuthError, match=r"environment variable GCP_RAY_TOKEN .* unset"):
        clusters["gcp-cpu"].read_token()
    monkeypatch.setenv("GCP_RAY_TOKEN", "")
    with pytest.raises(ClusterAuthError, match=r"GCP_RAY_TOKEN .*unset or empty"):
        clusters["gcp-cpu"].read_token()


def test_no_token_configured_reads_none(tmp_path: Path) -> None:
    text = GOOD.replace('token_file = "~/.ray/atol_token"\n', "")
    assert load_registry(write(tmp_path, text))["atol-gpu-5090"].read_token() is None


def test_addresses_dicts_follow_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from radas_flows.clusters.addresses import cpu_per_node, gpu_per_cpu, gpu_per_node

    path = write(tmp_path, GOOD)
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(path))
    assert gpu_per_cpu["atol-gpu-5090"] == 0.125
    assert cpu_per_node["atol-gpu-5090"] == 64
    assert gpu_per_node["atol-gpu-5090"] == 8
    assert dict(gpu_per_node) == {"atol-gpu-5090": 8, "gcp-cpu": 0}
    assert "gcp-cpu" in cpu_per_node and len(cpu_per_node) == 2
    with pytest.raises(KeyError, match=r"Unknown cluster 'nope' for gpu_per_cpu"):
        gpu_per_cpu["nope"]
    other = write(tmp_path, GOOD.replace("cpu_per_node = 64", "cpu_per_node = 16"), "other.toml")
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(other))
    assert addresses.cpu_per_node["atol-gpu-5090"] == 16
    bad = write(tmp_path, GOOD.replace('hint = "CPU-only work"\n', ""), "bad.toml")
    monkeypatch.setenv("RADAS_CLUSTERS_FILE", str(bad))
    with pytest.raises(RegistryError, match="missing key 'hint'"):
        gpu_per_cpu["atol-gpu-5090"]
