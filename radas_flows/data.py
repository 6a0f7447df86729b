"""Per-user data directories on shared (hot) and cold storage."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "COLD_DATA_ROOT_ENV",
    "DATA_ROOT_ENV",
    "DEFAULT_COLD_DATA_ROOT",
    "DEFAULT_DATA_ROOT",
    "get_cold_data_dir",
    "get_data_dir",
    "validate_user_name",
]

#: Environment variable naming the root of the per-user data directories.
DATA_ROOT_ENV = "RADAS_DATA_ROOT"
#: Environment variable naming the root of the per-user cold-storage directories.
COLD_DATA_ROOT_ENV = "RADAS_COLD_DATA_ROOT"
#: Data root when ``RADAS_DATA_ROOT`` is unset (``~`` is the user's home directory).
DEFAULT_DATA_ROOT = "~/radas-data"
#: Cold-storage root when ``RADAS_COLD_DATA_ROOT`` is unset.
DEFAULT_COLD_DATA_ROOT = "~/radas-cold-data"

_USER_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_USER_NAME_MAX_LEN = 64


def validate_user_name(name: object) -> str:
    """Check that a user name is safe to use as one path component.

    A valid name is 1 to 64 characters from ``A-Z a-z 0-9 . _ -`` and does not start with
    ``.`` or ``-`` (so it is never ``.``, ``..``, a hidden name or a command-line option).

    Args:
        name: The user name to check.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: The name is empty, too long, or has a forbidden character or start.
        TypeError: The name is not a string.

    Example:
        >>> validate_user_name("alice_01")
        'alice_01'
        >>> validate_user_name("../bob")
        Traceback (most recent call last):
        ...
        ValueError: Invalid user_name '../bob': use 1-64 characters from A-Z a-z 0-9 . _ - \
not starting with '.' or '-', e.g. user_name='alice'.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"user_name must be a string, got {type(name).__name__} ({name!r}); "
            "pass your user name, e.g. user_name='alice'."
        )
    if (
        not name
        or len(name) > _USER_NAME_MAX_LEN
        or _USER_NAME_RE.fullmatch(name) is None
        or name[0] in ".-"
    ):
        raise ValueError(
            f"Invalid user_name {name!r}: use 1-{_USER_NAME_MAX_LEN} characters from "
            "A-Z a-z 0-9 . _ - not starting with '.' or '-', e.g. user_name='alice'."
        )
    return name


def _root(env_var: str, default: str) -> Path:
    raw = os.environ.get(env_var) or default
    root = Path(raw).expanduser()
    if not root.is_absolute():
        raise ValueError(
            f"{env_var}={raw!r} is a relative path; set it to an absolute directory that every "
            f"node can reach (e.g. {env_var}=/mnt/shared/radas-data)."
        )
    return root


def _user_dir(user_name: str, env_var: str, default: str) -> str:
    name = validate_user_name(user_name)
    path = _root(env_var, default) / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(
            f"Cannot create the data directory {str(path)!r} ({e.strerror or e}); set "
            f"{env_var} to a writable directory."
        ) from e
    return str(path)


def get_data_dir(user_name: str) -> str:
    """Return the user's data directory, creating it when missing.

    The directory is ``$RADAS_DATA_ROOT/<user_name>`` (default root ``~/radas-data``). On a
    cluster, point ``RADAS_DATA_ROOT`` at a shared (e.g. NFS) mount so that the driver and every
    worker see the same files.

    Args:
        user_name: The user's name (see :func:`validate_user_name`).

    Returns:
        The absolute path of the directory, as a string.

    Raises:
        ValueError: Invalid user name, or a relative ``RADAS_DATA_ROOT``.
        OSError: The directory cannot be created.

    Example:
        >>> import os, tempfile
        >>> os.environ["RADAS_DATA_ROOT"] = tempfile.mkdtemp()
        >>> data_dir = get_data_dir(user_name="alice")
        >>> with open(os.path.join(data_dir, "note.txt"), "w") as f:
        ...     _ = f.write("hello")
        >>> os.path.basename(data_dir), os.listdir(data_dir)
        ('alice', ['note.txt'])
    """
    return _user_dir(user_name, DATA_ROOT_ENV, DEFAULT_DATA_ROOT)


def get_cold_data_dir(user_name: str) -> str:
    """Return the user's cold-storage directory, creating it when missing.

    The directory is ``$RADAS_COLD_DATA_ROOT/<user_name>`` (default root ``~/radas-cold-data``),
    meant for large data that is read rarely (archives, raw data sets).

    Args:
        user_name: The user's name (see :func:`validate_user_name`).

    Returns:
        The absolute path of the directory, as a string.

    Raises:
        ValueError: Invalid user name, or a relative ``RADAS_COLD_DATA_ROOT``.
        OSError: The directory cannot be created.

    Example:
        >>> import os, tempfile
        >>> os.environ["RADAS_COLD_DATA_ROOT"] = tempfile.mkdtemp()
        >>> os.path.isdir(get_cold_data_dir(user_name="alice"))
        True
    """
    return _user_dir(user_name, COLD_DATA_ROOT_ENV, DEFAULT_COLD_DATA_ROOT)
