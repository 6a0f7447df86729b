"""Stable Prefect artifact keys and safe artifact creation (a no-op outside a Prefect run)."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

log = logging.getLogger(__name__)


def artifact_key(kind: str, user_name: str, experiment_name: str) -> str:
    """A stable artifact key: lowercase letters, digits and dashes, unique per experiment.

    Example:
        >>> artifact_key("progress", "yuhang", "LR sweep")
        'radas-progress-yuhang-lr-sweep-cbc96a'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", f"{user_name}-{experiment_name}".lower()).strip("-")
    digest = hashlib.sha1(f"{user_name}/{experiment_name}".encode()).hexdigest()[:6]
    return f"radas-{kind}-{slug[:60].strip('-')}-{digest}"


def in_flow_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def create_table(key: str, table: Any, description: str) -> None:
    if not in_flow_run():
        return
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=table, key=key, description=description)


def create_markdown(key: str, markdown: str, description: str) -> None:
    if not in_flow_run():
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=key, description=description)


class ProgressArtifact:
    """A Prefect progress artifact (finished / total trials) updated as trials end."""

    def __init__(self, key: str, description: str) -> None:
        self.key = key
        self.description = description
        self.artifact_id: Any = None
        self.last: float | None = None

    def update(self, percent: float) -> None:
        percent = max(0.0, min(100.0, percent))
        if not in_flow_run() or percent == self.last:
            return
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(
                    progress=percent, key=self.key, description=self.description
                )
            else:
                update_progress_artifact(artifact_id=self.artifact_id, progress=percent)
            self.last = percent
        except Exception as e:  # progress display must never break a run
            log.warning("could not update the progress artifact %s: %s", self.key, e)
