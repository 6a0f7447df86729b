"""The results DataFrame built column by column equals the one built trial by trial."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from radas_flows._frames import trials_frame


def per_trial_frame(
    histories: list[pd.DataFrame],
    ids: list[str],
    statuses: list[str],
    configs: list[dict[str, Any]],
    cpus: dict[str, float] | None,
) -> pd.DataFrame:
    """The plain way: copy each trial's rows, add its columns, concatenate."""
    frames = []
    for history, trial_id, status, config in zip(histories, ids, statuses, configs, strict=True):
        history = history.copy()
        history["trial_id"] = trial_id
        history["trial_status"] = status
        if cpus is not None:
            history["cpu_per_trial"] = cpus.get(trial_id)
        for key, value in config.items():
            if key not in history.columns:
                history[key] = [value] * len(history)
        frames.append(history)
    return pd.concat(frames, ignore_index=True, sort=False)


HISTORIES = [
    pd.DataFrame({"score": [1, 2], "trial_id": ["a", "a"], "config/x": [1, 1]}),
    pd.DataFrame([{"score": 5.0, "nested/q": 1}]),
    pd.DataFrame([{}]),  # errored before reporting: one row, no metrics
    pd.DataFrame({"score": [7.5, 8.5], "extra": ["e", "f"]}),
]
IDS = ["a", "b", "c", "d"]
STATUSES = ["TERMINATED", "TERMINATED", "ERROR", "RUNNING"]
CONFIGS = [
    {"config/x": 1, "config/y/z": "s"},
    {"config/x": 2, "config/y/z": "t", "config/l": [1, 2]},
    {"config/x": 3},
    {"config/x": None, "config/y/z": "u"},
]


@pytest.mark.parametrize(
    "cpus", [None, {"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0, "c": 2.0, "d": 1.0}]
)
def test_same_frame_as_trial_by_trial(cpus: dict[str, float] | None) -> None:
    fast = trials_frame(HISTORIES, IDS, STATUSES, CONFIGS, cpus.get if cpus is not None else None)
    plain = per_trial_frame(HISTORIES, IDS, STATUSES, CONFIGS, cpus)
    # Tuner.get_dataframe puts the added columns first; the reported ones keep their order.
    added = {"trial_id", "trial_status", "cpu_per_trial", *(k for c in CONFIGS for k in c)}
    assert [c for c in fast.columns if c not in added] == [
        c for c in plain.columns if c not in added
    ]
    assert_frame_equal(fast[list(plain.columns)], plain)


def test_many_uniform_trials() -> None:
    histories = [pd.DataFrame({"step": range(3), "score": [i, i + 1, i + 2]}) for i in range(50)]
    ids = [f"t{i}" for i in range(50)]
    configs = [{"config/i": i, "config/name": f"n{i % 3}"} for i in range(50)]
    fast = trials_frame(histories, ids, ["TERMINATED"] * 50, configs, None)
    plain = per_trial_frame(histories, ids, ["TERMINATED"] * 50, configs, None)
    assert_frame_equal(fast[list(plain.columns)], plain)
    assert len(fast) == 150 and fast["config/i"].tolist()[:4] == [0, 0, 0, 1]
