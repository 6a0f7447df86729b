"""Small helpers shared by the cluster tests."""

from __future__ import annotations

import importlib
import sys
import tomllib
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.clusters.loopback_ray import RayHead


def import_source(workdir: Path, source: str, prefix: str) -> ModuleType:
    """Write ``source`` as a uniquely named module of the working dir and import it.

    A cluster job imports the trainable by reference from the uploaded working dir, so the
    trainable must live in a file there, not in the test module.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    (workdir / f"{name}.py").write_text(source)
    sys.path.insert(0, str(workdir))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(workdir))


def loopback_variant(head: RayHead, path: Path, name: str, **overrides: Any) -> Path:
    """Write a registry naming the loopback cluster once more, as ``name``, with ``overrides``."""
    entry = {**tomllib.loads(head.registry.read_text())["loopback"], **overrides}
    lines = [f"[{name}]"]
    for key, value in entry.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    path.write_text("\n".join(lines) + "\n")
    return path
