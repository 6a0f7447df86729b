"""The results DataFrame built column by column equals the one built trial by trial."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from radas_flows._frames import _concat, _concat_alike, trials_frame


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


def _reported(i: int, rows: int = 3) -> pd.DataFrame:
    """A trial's frame with a column of each kind Tune's frames and users' metrics hold."""
    return pd.DataFrame(
        {
            "score": [i + 0.5 * r for r in range(rows)],
            "step": list(range(rows)),
            "checkpoint_dir_name": [None] * rows,
            "done": [r == rows - 1 for r in range(rows)],
            "hostname": pd.Series(([f"h{i}"] * rows + [None])[1:], dtype="str"),
            "when": pd.date_range("2026-01-01", periods=rows, freq="s", tz="UTC"),
            "kind": pd.Categorical(["a"] * rows),
            "count": pd.array([i] * rows, dtype="Int64"),
            "note": [{"k": i}] * rows,
        }
    )


LAYOUTS = {
    "alike": [_reported(i) for i in range(6)],
    "one frame": [_reported(0)],
    "an empty frame among them": [_reported(0), _reported(1, rows=0), _reported(2)],
    "another column order": [_reported(0), _reported(1)[["step", "score"]], _reported(2)],
    "a missing column": [_reported(0), _reported(1).drop(columns="done"), _reported(2)],
    "another dtype": [_reported(0), _reported(1).astype({"step": "float64"}), _reported(2)],
    "another layout": [_reported(0), pd.concat([_reported(1)], axis=1).copy(), _reported(2)],
    "repeated column names": [
        pd.DataFrame([[1, 2.0]], columns=["a", "a"]),
        pd.DataFrame([[3, 4.0]], columns=["a", "a"]),
    ],
    "errored trials (one empty row)": [_reported(0), pd.DataFrame([{}]), _reported(2)],
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_the_join_is_pandas_concat(name: str) -> None:
    frames = LAYOUTS[name]
    originals = [f.copy() for f in frames]
    joined = _concat(frames)
    assert_frame_equal(joined, pd.concat(frames, ignore_index=True, sort=False), check_exact=True)
    for frame, original in zip(frames, originals, strict=True):
        assert_frame_equal(frame, original)  # the trials' own frames are left as they were
    joined.iloc[0, 0] = None  # and share no memory with the result
    assert_frame_equal(frames[0], originals[0])


def test_alike_frames_are_joined_block_by_block() -> None:
    """The quick path is taken for alike frames (so the test above compares it with pandas)."""
    assert _concat_alike(LAYOUTS["alike"]) is not None
    assert _concat_alike(LAYOUTS["another column order"]) is None
