"""Per-user data directories under RADAS_DATA_ROOT / RADAS_COLD_DATA_ROOT."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from radas_flows.data import get_cold_data_dir, get_data_dir, validate_user_name


@pytest.mark.parametrize(
    ("getter", "env_var"),
    [(get_data_dir, "RADAS_DATA_ROOT"), (get_cold_data_dir, "RADAS_COLD_DATA_ROOT")],
)
def test_created_on_demand_under_the_root(
    getter: Callable[[str], str], env_var: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "shared" / "nested"
    monkeypatch.setenv(env_var, str(root))

    path = getter("alice")

    assert path == str(root / "alice")
    assert os.path.isdir(path)
    with open(os.path.join(path, "test_file.txt"), "w") as f:
        f.write("This is a test file.")
    assert getter("alice") == path  # existing directory: same path, content kept
    assert (root / "alice" / "test_file.txt").read_text() == "This is a test file."


def test_hot_and_cold_roots_are_separate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADAS_DATA_ROOT", str(tmp_path / "hot"))
    monkeypatch.setenv("RADAS_COLD_DATA_ROOT", str(tmp_path / "cold"))
    assert get_data_dir("bob") == str(tmp_path / "hot" / "bob")
    assert get_cold_data_dir("bob") == str(tmp_path / "cold" / "bob")


def test_defaults_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RADAS_DATA_ROOT", raising=False)
    monkeypatch.delenv("RADAS_COLD_DATA_ROOT", raising=False)
    assert get_data_dir("alice") == str(tmp_path / "radas-data" / "alice")
    assert get_cold_data_dir("alice") == str(tmp_path / "radas-cold-data" / "alice")


def test_tilde_in_root_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RADAS_DATA_ROOT", "~/data")
    assert get_data_dir("alice") == str(tmp_path / "data" / "alice")


def test_relative_root_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RADAS_DATA_ROOT", "relative/data")
    with pytest.raises(ValueError, match=r"RADAS_DATA_ROOT='relative/data' is a relative path"):
        get_data_dir("alice")
    assert not (tmp_path / "relative").exists()


def test_unwritable_root_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("RADAS_COLD_DATA_ROOT", str(blocker))
    with pytest.raises(OSError, match=r"Cannot create the data directory.*RADAS_COLD_DATA_ROOT"):
        get_cold_data_dir("alice")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        ".",
        "../alice",
        "alice/../bob",
        "/abs",
        "a b",
        "al\nice",
        ".hidden",
        "-rf",
        "é",
        "a" * 65,
        "a\\b",
    ],
)
def test_invalid_user_names_create_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADAS_DATA_ROOT", str(tmp_path / "root"))
    with pytest.raises(ValueError, match=r"Invalid user_name"):
        get_data_dir(name)
    assert not (tmp_path / "root").exists()


def test_user_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match=r"user_name must be a string, got int"):
        validate_user_name(42)


@pytest.mark.parametrize("name", ["alice", "Bob_2", "a.b-c", "x" * 64, "0"])
def test_valid_user_names_are_returned_unchanged(name: str) -> None:
    assert validate_user_name(name) == name


def test_the_local_copy_of_a_remote_run_follows_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from radas_flows.storage import Storage

    remote = Storage("s3://bucket/ray-results/ann/exp")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert remote.output_dir("ann", "exp") == str(tmp_path / "xdg" / "radas" / "ann" / "exp")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec says
    assert remote.output_dir("ann", "exp") == str(Path.home() / ".cache/radas/ann/exp")
    assert Storage(str(tmp_path / "local")).output_dir("ann", "exp") == str(tmp_path / "local")
