"""The results DataFrame of many trials, built column by column (one concat, no per-trial copy)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["trials_frame"]

_MISSING = object()


def _column(values: Sequence[Any], rows: Any) -> Any:
    """Per-trial values repeated over each trial's rows, typed as a per-trial column would be.

    A column of one trial's repeated value takes that value's type; a trial whose value is
    None makes it an object column (as concatenating such per-trial columns does).
    """
    import pandas as pd

    series = pd.Series(list(values), dtype=object if any(v is None for v in values) else None)
    return series.iloc[rows].reset_index(drop=True)


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic garbage collection while the frame is built.

    Concatenating 10,000 per-trial frames allocates enough objects to start many full
    collections, each walking every object of those frames: at 10,000 trials x 20 rows that
    was 60% of the concat's time here. Cycles made meanwhile are collected once it resumes.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_no_collection()
def trials_frame(
    histories: Sequence[Any],
    trial_ids: Sequence[str],
    statuses: Sequence[str],
    configs: Sequence[Mapping[str, Any]],
    cpus: Callable[[str], Any] | None,
) -> Any:
    """One DataFrame of every trial's rows, with ``trial_id``, ``trial_status``, ``config/*``.

    ``histories[i]`` holds trial ``i``'s reported rows; a flattened config key becomes a
    column where that trial's rows lack it; ``cpus`` (if given) fills ``cpu_per_trial``.
    Columns come out as :meth:`radas_flows.tuner.Tuner.get_dataframe` documents them.
    """
    import numpy as np
    import pandas as pd

    if not histories:
        return pd.DataFrame()
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories)), lengths)
    df = pd.concat(histories, ignore_index=True, sort=False)
    df["trial_id"] = _column(trial_ids, rows)
    df["trial_status"] = _column(statuses, rows)
    if cpus is not None:
        df["cpu_per_trial"] = _column([cpus(t) for t in trial_ids], rows)
    keys: dict[str, None] = {}
    for config in configs:
        keys.update(dict.fromkeys(config))
    for key in keys:
        had = np.fromiter((key in h.columns for h in histories), dtype=bool, count=len(histories))
        values = [config.get(key, _MISSING) for config in configs]
        fill = ~had & np.fromiter((v is not _MISSING for v in values), dtype=bool)
        if not fill.any():
            continue
        if fill.all():
            df[key] = _column(values, rows)
            continue
        picked = [v if f else np.nan for v, f in zip(values, fill, strict=True)]
        column = _column(picked, rows)
        df[key] = df[key].where(~fill[rows], column) if key in df.columns else column
    return df
