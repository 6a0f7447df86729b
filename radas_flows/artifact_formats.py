"""The file formats of cloud artifacts, chosen by a path's extension: to bytes and back."""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable
from typing import Any

__all__ = ["SUPPORTED_EXTENSIONS", "extension", "read_bytes", "write_bytes"]

#: File extensions and the format each one selects.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".pkl": "pickle (any picklable object)",
    ".json": "JSON (dicts, lists, numbers, strings)",
    ".csv": "CSV (pandas DataFrame; the index is not stored)",
    ".parquet": "Parquet (pandas DataFrame)",
    ".txt": "UTF-8 text (str)",
}


def extension(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext not in SUPPORTED_EXTENSIONS:
        supported = ", ".join(SUPPORTED_EXTENSIONS)
        raise ValueError(
            f"Unsupported artifact extension {ext or '(none)'!r} in {path!r}; use one of "
            f"{supported} (.pkl stores any picklable object)."
        )
    return ext


def _require_dataframe(obj: object, path: str) -> Any:
    import pandas as pd

    if not isinstance(obj, pd.DataFrame):
        raise TypeError(
            f"{path!r} needs a pandas DataFrame, got {type(obj).__name__}; save other objects "
            "as .pkl (or .json)."
        )
    return obj


def _to_csv(obj: object, path: str) -> bytes:
    return _require_dataframe(obj, path).to_csv(index=False).encode("utf-8")


def _to_parquet(obj: object, path: str) -> bytes:
    df = _require_dataframe(obj, path)
    buffer = io.BytesIO()
    try:
        df.to_parquet(buffer)
    except (ValueError, TypeError, ImportError) as e:
        raise TypeError(f"Cannot store {path!r} as Parquet ({e}); use .pkl instead.") from e
    return buffer.getvalue()


def _to_json(obj: object, path: str) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(f"Cannot store {path!r} as JSON ({e}); use a .pkl path instead.") from e


def _to_text(obj: object, path: str) -> bytes:
    if not isinstance(obj, str):
        raise TypeError(f"{path!r} needs a str, got {type(obj).__name__}; use .pkl for objects.")
    return obj.encode("utf-8")


def _to_pickle(obj: object, path: str) -> bytes:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise TypeError(f"Cannot pickle the object for {path!r} ({e}).") from e


_WRITERS: dict[str, tuple[Callable[[object, str], bytes], str]] = {
    ".pkl": (_to_pickle, "application/octet-stream"),
    ".json": (_to_json, "application/json"),
    ".csv": (_to_csv, "text/csv"),
    ".parquet": (_to_parquet, "application/vnd.apache.parquet"),
    ".txt": (_to_text, "text/plain; charset=utf-8"),
}


def read_bytes(ext: str, data: bytes) -> Any:
    if ext == ".pkl":
        return pickle.loads(data)  # trusted data only: see load_cloud_artifact
    if ext == ".json":
        return json.loads(data.decode("utf-8"))
    if ext == ".txt":
        return data.decode("utf-8")
    import pandas as pd

    if ext == ".csv":
        return pd.read_csv(io.BytesIO(data))
    return pd.read_parquet(io.BytesIO(data))


def write_bytes(ext: str, obj: object, path: str) -> tuple[bytes, str]:
    """Serialize ``obj`` for ``path`` (extension ``ext``): the bytes and their content type."""
    writer, content_type = _WRITERS[ext]
    return writer(obj, path), content_type
