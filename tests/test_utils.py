"""Seeding, user name, console messages and DataFrame reductions."""

from __future__ import annotations

import getpass
import os
import random
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from radas_flows.secrets import register_secret
from radas_flows.utils import (
    config_seed,
    get_current_user_name,
    print_error,
    print_info,
    print_warning,
    reduce_by_config_cols,
    reduce_by_reduced_col,
    set_seed,
)


@pytest.fixture(autouse=True)
def _restore_hash_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """set_seed sets PYTHONHASHSEED; put the previous value back after each test."""
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)


def _draws() -> tuple[float, float]:
    return random.random(), float(np.random.rand())


def test_set_seed_makes_random_and_numpy_repeatable() -> None:
    set_seed(123)
    first = _draws()
    set_seed(123)
    assert _draws() == first
    set_seed(124)
    assert _draws() != first
    assert os.environ["PYTHONHASHSEED"] == "124"


def test_set_seed_accepts_numpy_integers() -> None:
    set_seed(np.int64(5))
    first = _draws()
    set_seed(5)
    assert _draws() == first


@pytest.mark.parametrize(
    ("seed", "error", "match"),
    [
        (-1, ValueError, r"seed must be in \[0, 2\*\*32 - 1\], got -1"),
        (2**32, ValueError, r"got 4294967296"),
        (1.5, TypeError, r"seed must be an integer, got float"),
        (True, TypeError, r"got bool"),
        ("3", TypeError, r"got str"),
    ],
)
def test_set_seed_rejects_bad_seeds(seed: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        set_seed(seed)


def test_set_seed_seeds_torch_when_installed() -> None:
    torch = pytest.importorskip("torch")
    set_seed(9)
    a = torch.rand(3)
    set_seed(9)
    assert torch.equal(torch.rand(3), a)


def test_config_seed_reads_the_key() -> None:
    assert config_seed({"lr": 0.1, "seed": 7}) == 7
    first = _draws()
    assert config_seed({"rng": 7}, key="rng") == 7
    assert _draws() == first


def test_config_seed_missing_key_lists_keys() -> None:
    with pytest.raises(KeyError, match=r"no 'seed' key \(keys: \['a', 'lr'\]\).*grid_search"):
        config_seed({"lr": 0.1, "a": 1})


def test_get_current_user_name_follows_login_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "radas-tester")
    assert get_current_user_name() == "radas-tester"


def test_get_current_user_name_without_any_user_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A stand-in for getpass: every account here has a passwd entry, and a process under an
    # unknown uid cannot start this environment's interpreter (it lives under /root).
    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_user)
    with pytest.raises(RuntimeError, match=r"Cannot determine the current user name.*USER"):
        get_current_user_name()


def test_print_functions_plain_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    print_info("3 trials done")
    print_warning("cluster busy")
    print_error("trial 2 failed")
    captured = capsys.readouterr()
    assert captured.out == "[INFO] 3 trials done\n"
    assert captured.err == "[WARNING] cluster busy\n[ERROR] trial 2 failed\n"


def _read_all(master: int) -> str:
    """Everything written to a pseudo-terminal whose other end is closed (one read may be short)."""
    chunks = []
    try:
        while chunk := os.read(master, 4096):
            chunks.append(chunk)
    except OSError:  # EIO: the other end is closed and everything was read
        pass
    finally:
        os.close(master)
    return b"".join(chunks).decode()


def test_print_functions_coloured_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        print_warning("careful")
        monkeypatch.setenv("NO_COLOR", "1")
        print_error("plain")
    data = _read_all(master)
    assert "\033[33m[WARNING]\033[0m careful" in data
    assert "[ERROR] plain" in data and "\033[31m" not in data


def test_print_functions_scrub_registered_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    register_secret("printed-secret-6b1f")
    print_error("login failed with printed-secret-6b1f")
    assert capsys.readouterr().err == "[ERROR] login failed with ***\n"


@pytest.fixture
def sweep_df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "config/lr": [0.1, 0.1, 0.01, 0.01, 0.01, None],
            "config/depth": [2, 2, 2, 2, 3, 3],
            "config/seed": [0, 1, 0, 1, 0, 0],
            "score": [1.0, 3.0, 5.0, 7.0, 9.0, 11.0],
            "time_total_s": [1.0] * 6,
        }
    )


def test_reduce_by_config_cols_mean_and_max(sweep_df: pd.DataFrame) -> None:
    mean = reduce_by_config_cols(sweep_df, "score", lambda s: s.mean(), ["config/lr"])
    assert list(mean.columns) == ["config/lr", "score"]
    assert mean["config/lr"].tolist()[:2] == [0.01, 0.1]
    assert mean["score"].tolist()[:2] == [7.0, 2.0]
    assert np.isnan(mean["config/lr"].iloc[2]) and mean["score"].iloc[2] == 11.0

    best = reduce_by_config_cols(sweep_df, "score", max, ["config/lr", "config/depth"])
    assert best.to_dict("records")[:3] == [
        {"config/lr": 0.01, "config/depth": 2, "score": 7.0},
        {"config/lr": 0.01, "config/depth": 3, "score": 9.0},
        {"config/lr": 0.1, "config/depth": 2, "score": 3.0},
    ]


def test_reduce_by_config_cols_errors(sweep_df: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match=r"\['config/a'\] not in the DataFrame.*'config/lr'"):
        reduce_by_config_cols(sweep_df, "score", np.mean, ["config/a"])
    with pytest.raises(KeyError, match=r"\['loss'\]"):
        reduce_by_config_cols(sweep_df, "loss", np.mean, ["config/lr"])
    with pytest.raises(ValueError, match=r"config_cols is empty"):
        reduce_by_config_cols(sweep_df, "score", np.mean, [])


def test_reduce_by_reduced_col_keeps_other_config_columns(sweep_df: pd.DataFrame) -> None:
    out = reduce_by_reduced_col(sweep_df, "score", lambda s: s.mean(), "config/seed")
    assert list(out.columns) == ["config/lr", "config/depth", "score"]
    assert out.dropna().to_dict("records") == [
        {"config/lr": 0.01, "config/depth": 2, "score": 6.0},
        {"config/lr": 0.01, "config/depth": 3, "score": 9.0},
        {"config/lr": 0.1, "config/depth": 2, "score": 2.0},
    ]
    assert len(out) == 4  # the row with a missing lr is its own group


def test_reduce_by_reduced_col_explicit_columns(sweep_df: pd.DataFrame) -> None:
    renamed = sweep_df.rename(columns={"config/lr": "lr", "config/seed": "seed"})
    out = reduce_by_reduced_col(renamed, "score", max, "seed", config_cols=["lr", "seed"])
    assert list(out.columns) == ["lr", "score"]
    assert out["score"].tolist() == [9.0, 3.0, 11.0]


def test_reduce_by_reduced_col_only_config_column_gives_one_row() -> None:
    df = pd.DataFrame({"config/seed": [0, 1, 2], "score": [1.0, 2.0, 6.0]})
    out = reduce_by_reduced_col(df, "score", lambda s: s.mean(), "config/seed")
    assert out.to_dict("records") == [{"score": 3.0}]


def test_reduce_by_reduced_col_missing_column(sweep_df: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match=r"\['config/rng'\] not in the DataFrame"):
        reduce_by_reduced_col(sweep_df, "score", np.mean, "config/rng")
