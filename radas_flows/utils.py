"""Seeding, user name, console messages and DataFrame reductions for radas users."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

# Modules of this package shadow stdlib names (email, secrets): always import them absolutely.
from radas_flows.inputs.rules import current_user_name
from radas_flows.secrets import redact_registered

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "config_seed",
    "get_current_user_name",
    "print_error",
    "print_info",
    "print_warning",
    "reduce_by_config_cols",
    "reduce_by_reduced_col",
    "set_seed",
]

_MAX_SEED = 2**32 - 1


def set_seed(seed: int | np.integer[Any]) -> None:
    """Seed Python's ``random``, NumPy's global generator and, when installed, PyTorch.

    ``PYTHONHASHSEED`` is set too, which affects processes started afterwards (string hashing
    of the running interpreter is fixed at its start).

    Args:
        seed: An integer in ``[0, 2**32 - 1]``.

    Raises:
        TypeError: ``seed`` is not an integer.
        ValueError: ``seed`` is out of range.

    Example:
        >>> import random
        >>> set_seed(7); a = random.random()
        >>> set_seed(7); b = random.random()
        >>> a == b
        True
    """
    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} ({seed!r}).")
    seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**32 - 1], got {seed}; pick e.g. seed=0.")
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)


def config_seed(config: Mapping[str, Any], key: str = "seed") -> int:
    """Seed everything (see :func:`set_seed`) from a trial's config.

    Args:
        config: The config dict a trainable receives.
        key: The config key holding the seed.

    Returns:
        The seed used.

    Raises:
        KeyError: The config has no such key.

    Example:
        >>> config_seed({"lr": 0.1, "seed": 3})
        3
    """
    if key not in config:
        raise KeyError(
            f"config has no {key!r} key (keys: {sorted(map(str, config))}); add e.g. "
            f"'{key}': tune.grid_search([0, 1, 2]) to param_space or pass key=<your seed key>."
        )
    seed = config[key]
    set_seed(seed)
    return int(seed)


def get_current_user_name() -> str:
    """Return the name of the user running this process.

    Returns:
        The login name (``getpass.getuser()``: ``LOGNAME``, ``USER``, ... then the password
        database).

    Raises:
        RuntimeError: No user name can be determined (e.g. a container without a passwd entry).

    Example:
        >>> isinstance(get_current_user_name(), str)
        True
    """
    return current_user_name()


_COLORS = {"INFO": "\033[32m", "WARNING": "\033[33m", "ERROR": "\033[31m"}
_RESET = "\033[0m"


def _print(level: str, msg: object, stream: TextIO) -> None:
    text = redact_registered(str(msg))
    use_color = (
        hasattr(stream, "isatty")
        and stream.isatty()
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM") != "dumb"
    )
    prefix = f"{_COLORS[level]}[{level}]{_RESET}" if use_color else f"[{level}]"
    print(f"{prefix} {text}", file=stream, flush=True)


def print_info(msg: object) -> None:
    """Print an information message to stdout.

    The ``[INFO]`` prefix is green on a terminal (unless ``NO_COLOR`` is set) and plain
    otherwise; registered secrets are scrubbed from the message.

    Example:
        >>> print_info("3 trials finished")
        [INFO] 3 trials finished
    """
    _print("INFO", msg, sys.stdout)


def print_warning(msg: object) -> None:
    """Print a warning to stderr with a ``[WARNING]`` prefix (yellow on a terminal).

    Example:
        >>> import contextlib, io
        >>> err = io.StringIO()
        >>> with contextlib.redirect_stderr(err):
        ...     print_warning("cluster is busy")
        >>> err.getvalue()
        '[WARNING] cluster is busy\\n'
    """
    _print("WARNING", msg, sys.stderr)


def print_error(msg: object) -> None:
    """Print an error to stderr with an ``[ERROR]`` prefix (red on a terminal).

    Example:
        >>> import contextlib, io
        >>> err = io.StringIO()
        >>> with contextlib.redirect_stderr(err):
        ...     print_error("trial 3 failed")
        >>> err.getvalue()
        '[ERROR] trial 3 failed\\n'
    """
    _print("ERROR", msg, sys.stderr)


def _check_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(
            f"{what} {missing} not in the DataFrame; its columns are {list(df.columns)} "
            "(Tune names config columns 'config/<key>', unless renamed)."
        )


def reduce_by_config_cols(
    df: pd.DataFrame,
    metric_col: str,
    reduce_fn: Callable[[pd.Series], Any],
    config_cols: Sequence[str],
) -> pd.DataFrame:
    """Reduce a metric over the rows that share the same values of the given config columns.

    Rows are grouped by ``config_cols`` (missing values form their own group) and ``reduce_fn``
    turns each group's ``metric_col`` Series into one value. All other columns are dropped.

    Args:
        df: A results DataFrame, one row per trial (or per reported step).
        metric_col: The metric column to reduce.
        reduce_fn: Maps a Series to a scalar, e.g. ``lambda s: s.mean()``.
        config_cols: The columns that identify a configuration.

    Returns:
        One row per configuration: ``config_cols`` then ``metric_col``, sorted by the config.

    Raises:
        KeyError: A named column is not in ``df``.
        ValueError: ``config_cols`` is empty.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"config/a": [1, 1, 2, 2], "config/seed": [0, 1, 0, 1],
        ...                    "score": [1.0, 3.0, 10.0, 20.0]})
        >>> reduce_by_config_cols(df, "score", lambda s: s.mean(), ["config/a"])
           config/a  score
        0         1    2.0
        1         2   15.0
    """
    config_cols = list(config_cols)
    if not config_cols:
        raise ValueError(
            "config_cols is empty; name the columns that identify a configuration, "
            "e.g. config_cols=['config/lr']."
        )
    _check_columns(df, [metric_col, *config_cols], "Columns")
    grouped = df.groupby(config_cols, dropna=False, sort=True)[metric_col]
    reduced = grouped.agg(reduce_fn)
    return reduced.reset_index()


def reduce_by_reduced_col(
    df: pd.DataFrame,
    metric_col: str,
    reduce_fn: Callable[[pd.Series], Any],
    reduced_col: str,
    config_cols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Reduce a metric over one column (e.g. the seed), keeping every other config column.

    The complement of :func:`reduce_by_config_cols`: name the column to average away instead
    of the columns to keep. Typical use: mean score over ``config/seed`` for each combination
    of the other hyperparameters.

    Args:
        df: A results DataFrame, one row per trial (or per reported step).
        metric_col: The metric column to reduce.
        reduce_fn: Maps a Series to a scalar, e.g. ``lambda s: s.mean()``.
        reduced_col: The column to reduce over (it disappears from the result).
        config_cols: The configuration columns; by default every column whose name starts
            with ``config/``. ``reduced_col`` is removed from them.

    Returns:
        One row per combination of the remaining config columns, then ``metric_col``; a single
        row holding only ``metric_col`` when no other config column remains.

    Raises:
        KeyError: A named column is not in ``df``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"config/a": [1, 1, 2, 2], "config/b": ["x", "x", "x", "y"],
        ...                    "config/seed": [0, 1, 0, 1], "score": [1.0, 3.0, 10.0, 20.0]})
        >>> reduce_by_reduced_col(df, "score", lambda s: s.mean(), "config/seed")
           config/a config/b  score
        0         1        x    2.0
        1         2        x   10.0
        2         2        y   20.0
    """
    import pandas as pd

    _check_columns(df, [metric_col, reduced_col], "Columns")
    if config_cols is None:
        config_cols = [c for c in df.columns if isinstance(c, str) and c.startswith("config/")]
    keep = [c for c in config_cols if c != reduced_col and c != metric_col]
    if not keep:
        return pd.DataFrame({metric_col: [reduce_fn(df[metric_col])]})
    return reduce_by_config_cols(df, metric_col, reduce_fn, keep)
