"""Turn list-valued columns and tensors into long (tidy) DataFrames for plotting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["explode", "explode_dict_of_tensors", "explode_tensor"]


def _is_list_like(value: object) -> bool:
    import numpy as np

    return isinstance(value, list | tuple | np.ndarray) or _is_torch_tensor(value)


def _is_torch_tensor(value: object) -> bool:
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def _to_numpy(tensor: Any) -> np.ndarray:
    import numpy as np

    if _is_torch_tensor(tensor):
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def explode(
    df: pd.DataFrame,
    columns: str | Sequence[str] | None = None,
    *,
    index_col: str | None = "step",
) -> pd.DataFrame:
    """Give each element of list-valued cells its own row, with its position in the list.

    Trainables often report whole curves (``{"loss_curve": [0.9, 0.5, 0.3]}``); exploding makes
    one row per point so that seaborn can draw learning curves (``x="step"``). Several columns
    are exploded together and must then hold lists of the same length in each row. Cells that
    are not lists are repeated; an empty list gives one row with a missing value. The original
    index is dropped (call ``reset_index()`` first to keep it as a column).

    Args:
        df: The DataFrame, e.g. the results of a sweep.
        columns: The column(s) to explode; by default every column whose first non-missing
            value is a list, tuple, NumPy array or torch tensor.
        index_col: Name of the new column holding each element's position (0, 1, ...);
            ``None`` adds no such column.

    Returns:
        A new DataFrame with a fresh ``RangeIndex``.

    Raises:
        KeyError: A named column is not in ``df``.
        ValueError: No column to explode, ``index_col`` already exists, or the lists of a row
            differ in length.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"config/lr": [0.1, 0.01], "loss": [[0.9, 0.5], [0.8, 0.7]]})
        >>> explode(df)
           config/lr  loss  step
        0       0.10   0.9     0
        1       0.10   0.5     1
        2       0.01   0.8     0
        3       0.01   0.7     1
    """
    if columns is None:
        cols = [c for c in df.columns if _first_is_list_like(df[c])]
        if not cols:
            raise ValueError(
                "No column holds lists to explode; name them with columns=[...] "
                f"(columns: {list(df.columns)})."
            )
    else:
        cols = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise KeyError(
                f"Columns {missing} not in the DataFrame; its columns are {list(df.columns)}."
            )
    if index_col is not None and index_col in df.columns:
        raise ValueError(
            f"index_col {index_col!r} is already a column; pass another name, e.g. "
            f"index_col='{index_col}_index', or index_col=None."
        )
    work = df.reset_index(drop=True)
    for c in cols:
        work[c] = work[c].map(lambda v: list(_to_numpy(v)) if _is_torch_tensor(v) else v)
    try:
        out = work.explode(cols if len(cols) > 1 else cols[0])
    except ValueError as e:
        raise ValueError(
            f"Columns {cols} hold lists of different lengths in the same row; explode them "
            "one at a time (explode(df, 'a', index_col='a_step')) or make the lengths match."
        ) from e
    if index_col is not None:
        out[index_col] = out.groupby(level=0).cumcount()
    out = out.reset_index(drop=True)
    for c in cols:
        out[c] = _infer(out[c])
    return out


def _first_is_list_like(series: pd.Series) -> bool:
    non_missing = series.dropna()
    return not non_missing.empty and _is_list_like(non_missing.iloc[0])


def _infer(series: pd.Series) -> pd.Series:
    import numpy as np

    series = series.map(lambda v: v.item() if isinstance(v, np.generic) else v)
    return series.infer_objects()


def explode_tensor(
    tensor: Any,
    *,
    dim_names: Sequence[str] | None = None,
    value_name: str = "value",
) -> pd.DataFrame:
    """Turn an n-dimensional array into a long DataFrame: one row per element.

    Args:
        tensor: A NumPy array, a torch tensor (moved to the CPU) or anything ``numpy.asarray``
            accepts.
        dim_names: One column name per dimension; ``dim_0``, ``dim_1``, ... by default.
        value_name: Name of the column holding the elements.

    Returns:
        Columns ``dim_names`` (the element's index along each dimension) then ``value_name``,
        in C (row-major) order.

    Raises:
        ValueError: ``dim_names`` does not have one name per dimension, or repeats a name.

    Example:
        >>> import numpy as np
        >>> explode_tensor(np.array([[1, 2], [3, 4]]), dim_names=["row", "col"])
           row  col  value
        0    0    0      1
        1    0    1      2
        2    1    0      3
        3    1    1      4
    """
    import numpy as np
    import pandas as pd

    array = _to_numpy(tensor)
    names = _dim_names(array.ndim, dim_names)
    if value_name in names:
        raise ValueError(
            f"value_name {value_name!r} is also a dimension name; pick another value_name."
        )
    if array.ndim == 0:
        return pd.DataFrame({value_name: [array.item()]})
    index = np.indices(array.shape).reshape(array.ndim, -1)
    data: dict[str, Any] = {name: index[i] for i, name in enumerate(names)}
    data[value_name] = array.reshape(-1)
    return pd.DataFrame(data)


def _dim_names(ndim: int, dim_names: Sequence[str] | None) -> list[str]:
    if dim_names is None:
        return [f"dim_{i}" for i in range(ndim)]
    names = [dim_names] if isinstance(dim_names, str) else list(dim_names)
    if len(names) != ndim:
        raise ValueError(
            f"dim_names {names} has {len(names)} names but the tensor has {ndim} dimensions; "
            "give one name per dimension."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"dim_names {names} repeats a name; give each dimension its own name.")
    return names


def explode_dict_of_tensors(
    tensors: Mapping[str, Any],
    *,
    dim_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Explode several tensors of the same dimensionality and join them on their indices.

    Each tensor becomes a value column named by its key (see :func:`explode_tensor`). Tensors of
    different shapes are outer-joined: positions a tensor lacks hold missing values.

    Args:
        tensors: ``{name: tensor}``; every tensor must have the same number of dimensions.
        dim_names: One column name per dimension; ``dim_0``, ``dim_1``, ... by default.

    Returns:
        Columns ``dim_names`` then one column per key, sorted by the indices.

    Raises:
        ValueError: The dict is empty, the tensors differ in dimensionality, or a key is also a
            dimension name.

    Example:
        >>> import numpy as np
        >>> explode_dict_of_tensors({"w": np.array([0.5, 0.25]), "grad": np.array([1, -1])},
        ...                         dim_names=["i"])
           i     w  grad
        0  0  0.50     1
        1  1  0.25    -1
    """
    import pandas as pd

    if not tensors:
        raise ValueError("tensors is empty; pass e.g. {'weights': w, 'grads': g}.")
    arrays = {str(k): _to_numpy(v) for k, v in tensors.items()}
    ndims = {k: a.ndim for k, a in arrays.items()}
    if len(set(ndims.values())) != 1:
        raise ValueError(
            f"The tensors differ in dimensionality {ndims}; explode them separately with "
            "explode_tensor."
        )
    ndim = next(iter(ndims.values()))
    names = _dim_names(ndim, dim_names)
    clash = [k for k in arrays if k in names]
    if clash:
        raise ValueError(f"Keys {clash} are also dimension names {names}; rename them.")
    if ndim == 0:
        return pd.DataFrame({k: [a.item()] for k, a in arrays.items()})
    frames = [
        explode_tensor(a, dim_names=names, value_name=k).set_index(names) for k, a in arrays.items()
    ]
    joined = pd.concat(frames, axis=1, join="outer", sort=True)
    return joined.reset_index()
