"""Stable Prefect artifact keys and safe artifact creation (a no-op outside a Prefect run)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import weakref
from typing import Any

log = logging.getLogger(__name__)

# PNGs the analyze stage has drawn of a figure, by dpi, until the figure's artifact uses one.
_drawn: weakref.WeakKeyDictionary[Any, dict[int, bytes]] = weakref.WeakKeyDictionary()


def draw_png(fig: Any, dpi: int) -> bytes:
    """The figure as a PNG at ``dpi`` (tight bounding box), kept for its artifact.

    Drawing a figure is most of a small sweep's analysis (about 0.3 s a PNG here); the
    artifact shows the same PNG as the saved preview, so it is drawn once.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    data = buffer.getvalue()
    # A figure that takes no weak reference is drawn again for its artifact.
    with contextlib.suppress(TypeError):
        _drawn.setdefault(fig, {})[dpi] = data
    return data


def experiment_slug(user_name: str, experiment_name: str, max_length: int) -> str:
    """``user-experiment`` in lowercase letters, digits and dashes, at most ``max_length`` long.

    Example:
        >>> experiment_slug("yuhang", "LR sweep", 60)
        'yuhang-lr-sweep'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", f"{user_name}-{experiment_name}".lower()).strip("-")
    return slug[:max_length].strip("-")


def short_digest(text: str, length: int) -> str:
    """The first ``length`` hex digits of the SHA-1 of ``text``: a stable, short identity."""
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def artifact_key(kind: str, user_name: str, experiment_name: str) -> str:
    """A stable artifact key: lowercase letters, digits and dashes, unique per experiment.

    Example:
        >>> artifact_key("progress", "yuhang", "LR sweep")
        'radas-progress-yuhang-lr-sweep-cbc96a'
    """
    slug = experiment_slug(user_name, experiment_name, 60)
    return f"radas-{kind}-{slug}-{short_digest(f'{user_name}/{experiment_name}', 6)}"


def in_flow_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def run_logger(fallback: str) -> Any:
    """Prefect's run logger inside a flow or task run, else the standard logger ``fallback``."""
    if in_flow_run():
        from prefect import get_run_logger

        return get_run_logger()
    return logging.getLogger(fallback)


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


def figure_markdown(fig: Any, title: str, figure_path: str | None = None, *, dpi: int = 80) -> str:
    """Markdown that shows a matplotlib figure inline (a PNG as a ``data:`` URI).

    Prefect's image artifact only stores a URL, and the results folder is not served over
    HTTP, so the figure travels inside the markdown itself; the UI's Artifacts tab renders it.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> figure_markdown(plt.figure(), "demo").splitlines()[2][:32]
        '![demo](data:image/png;base64,iV'
    """
    import base64

    drawn = _drawn.pop(fig, {}).get(dpi)  # used once: the figure may change afterwards
    if drawn is None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        drawn = buffer.getvalue()
    data = base64.b64encode(drawn).decode("ascii")
    lines = [f"# {title}", "", f"![{title}](data:image/png;base64,{data})"]
    if figure_path:
        lines += ["", f"Saved as `{figure_path}`"]
    return "\n".join(lines) + "\n"


def create_figure(key: str, fig: Any, title: str, figure_path: str | None = None) -> None:
    """Record a figure as a markdown artifact (a no-op outside a Prefect run)."""
    if not in_flow_run():
        return
    try:
        markdown = figure_markdown(fig, title, figure_path)
    except Exception as e:  # a figure that cannot be drawn must not fail the run
        log.warning("could not render the figure artifact %s: %s", key, e)
        return
    create_markdown(key, markdown, f"Figure of {title!r}")
