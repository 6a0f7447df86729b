"""Small trainables used by the tests (importable, as cluster runs require)."""

from __future__ import annotations

import os
import time
from typing import Any

from ray import tune

NOT_A_FUNCTION = "a module attribute that is not callable"


def count_run(config: dict[str, Any]) -> None:
    """Append this trial's config to config['count_file'] (O_APPEND, safe across processes)."""
    path = config.get("count_file")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{config.get('a')}\n".encode())
        finally:
            os.close(fd)


def returning(config: dict[str, Any]) -> dict[str, Any]:
    """Return a dict of metrics at the end."""
    count_run(config)
    return {"score": config["a"] * config.get("b", 1)}


def reporting(config: dict[str, Any]) -> None:
    """Report every epoch with ray.tune.report."""
    count_run(config)
    for epoch in range(config.get("epochs", 3)):
        tune.report({"score": config["a"] * (epoch + 1), "epoch": epoch})


def session_reporting(config: dict[str, Any]) -> None:
    """Report with ray.air.session.report, as the radas user guide shows."""
    from ray.air import session

    for epoch in range(3):
        session.report({"score": config["a"] + epoch})


def slow(config: dict[str, Any]) -> dict[str, Any]:
    """Sleep config['sleep'] seconds, then return."""
    count_run(config)
    time.sleep(config.get("sleep", 1.0))
    return {"score": config["a"]}


def gated(config: dict[str, Any]) -> dict[str, Any]:
    """Return at once when a < config['open_below']; else wait for the config['gate'] file.

    The wait ends after config['wait_s'] seconds (120 by default) at the latest.
    """
    count_run(config)
    deadline = time.monotonic() + config.get("wait_s", 120.0)
    while config["a"] >= config["open_below"] and not os.path.exists(config["gate"]):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return {"score": config["a"]}


def fails_once(config: dict[str, Any]) -> dict[str, Any]:
    """Raise while config['gate'] file does not exist; succeed once it does."""
    count_run(config)
    if config["a"] == config.get("fail_a") and not os.path.exists(config["gate"]):
        raise RuntimeError(f"gate closed for a={config['a']}")
    return {"score": config["a"]}


class Counter(tune.Trainable):
    """A class trainable with checkpoints."""

    def setup(self, config: dict[str, Any]) -> None:
        self.total = 0.0
        self.step_size = config["a"]

    def step(self) -> dict[str, Any]:
        self.total += self.step_size
        return {"score": self.total, "done": self.iteration >= 2}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"total": self.total}

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        if isinstance(checkpoint, dict):
            self.total = checkpoint["total"]


def env_reader(config: dict[str, Any]) -> dict[str, Any]:
    """Return the RADAS_TEST_MARKER environment variable seen by the trial."""
    return {"marker": os.environ.get("RADAS_TEST_MARKER", "")}


def marked(config: dict[str, Any]) -> dict[str, Any]:
    """Leave a ``start-<a>-...`` marker in config['marks'], sleep, then append to ``done-<a>``.

    Each execution of a config leaves one start marker, so the markers count how often each
    config ran; a done marker says it finished. While a ``hold`` file is in the folder, no
    trial finishes.
    """
    marks = config["marks"]
    a = config["a"]
    with open(os.path.join(marks, f"start-{a}-{os.getpid()}-{time.time_ns()}"), "w"):
        pass
    time.sleep(config.get("sleep", 1.0))
    held_until = time.time() + 600
    while os.path.exists(os.path.join(marks, "hold")) and time.time() < held_until:
        time.sleep(0.1)  # a test holds the sweep until it has checked what it runs beside
    with open(os.path.join(marks, f"done-{a}"), "a") as f:
        f.write(f"{time.time()}\n")
    return {"score": a}


def lost_once_or_failing(config: dict[str, Any]) -> dict[str, Any]:
    """Config ``a=0``: its worker process dies on the first execution (a lost worker), then it
    completes. Any other ``a``: raises ``ValueError``. Each execution leaves a marker in
    config['marks'].
    """
    marks, a = config["marks"], config["a"]
    first = not any(name.startswith(f"start-{a}-") for name in os.listdir(marks))
    with open(os.path.join(marks, f"start-{a}-{os.getpid()}-{time.time_ns()}"), "w"):
        pass
    if a != 0:
        raise ValueError(f"the trial's own error for a={a}")
    if first:
        os._exit(1)  # the worker is gone, as on a node that stopped
    return {"score": a}
