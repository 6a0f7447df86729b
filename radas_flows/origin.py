"""Which working directory and ``experiment_name`` an experiment folder belongs to.

The folder's name is the sanitized ``<working directory>/<experiment_name>`` (the radas rule),
so different names can share a folder: ``a/b`` and ``a-b`` from one directory, or ``b`` from
``/p/a`` and ``a_b`` from ``/p``. Each folder records the unsanitized pair in
:data:`ORIGIN_FILE`; a run, restore or analysis from another pair is refused before anything
is submitted, instead of replacing or reading the other experiment's results.
"""

from __future__ import annotations

import json
from typing import Any

from radas_flows.errors import ExperimentStateError
from radas_flows.storage import Storage

__all__ = ["ORIGIN_FILE", "check_origin", "origin_record", "read_origin", "record_origin"]

#: The file in an experiment folder that names the directory and experiment_name it belongs to.
ORIGIN_FILE = "radas_origin.json"


def origin_record(cwd: str, experiment_name: str) -> dict[str, str]:
    """What :data:`ORIGIN_FILE` holds for an experiment.

    Example:
        >>> origin_record("/home/u/proj", "a/b")
        {'cwd': '/home/u/proj', 'experiment_name': 'a/b'}
    """
    return {"cwd": cwd, "experiment_name": experiment_name}


def read_origin(path: str, filesystem: Any = None) -> dict[str, str] | None:
    """The origin recorded in the experiment folder ``path``; None when none is (or unreadable)."""
    text = Storage(path, filesystem).child(ORIGIN_FILE).read_text()
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), str) for key in ("cwd", "experiment_name")
    ):
        return None
    return {"cwd": data["cwd"], "experiment_name": data["experiment_name"]}


def record_origin(path: str, origin: dict[str, str], filesystem: Any = None) -> None:
    """Write ``origin`` into the experiment folder ``path`` (creating the folder)."""
    Storage(path, filesystem).child(ORIGIN_FILE).write_text(json.dumps(origin, sort_keys=True))


def check_origin(path: str, cwd: str, experiment_name: str) -> None:
    """Refuse to use the folder ``path`` when it records another directory or experiment_name.

    A folder without a record (written before radas recorded origins) is accepted.

    Raises:
        ExperimentStateError: Naming both experiments, the shared folder and the fix.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> record_origin(folder, origin_record("/p", "a/b"))
        >>> check_origin(folder, "/p", "a/b")  # the same experiment: accepted
        >>> try:
        ...     check_origin(folder, "/p", "a-b")
        ... except ExperimentStateError as e:
        ...     print(str(e)[:60])
        experiment_name='a-b' (from '/p') and experiment_name='a/b'
    """
    stored = read_origin(path)
    if stored is None or stored == origin_record(cwd, experiment_name):
        return
    raise ExperimentStateError(
        f"experiment_name={experiment_name!r} (from {cwd!r}) and experiment_name="
        f"{stored['experiment_name']!r} (from {stored['cwd']!r}) both become the results folder "
        f"{path}, which holds the results of the second. Nothing was started, so they are kept. "
        "Give this experiment a name that differs in letters or digits, for example "
        f"experiment_name={_suggestion(experiment_name)!r} (radas replaces every other character "
        "of the working directory and the name with '_'), or run it from its own directory."
    )


def _suggestion(experiment_name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in experiment_name).strip("-")
    return f"{cleaned or 'experiment'}-2"
