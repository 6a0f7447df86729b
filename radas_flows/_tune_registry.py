"""Ray Tune's trainable registry, made safe for several local runs in one process.

Each ``Tuner.fit`` registers its trainable in Tune's process-wide registry, which iterates a
dict that another thread may be adding to: two local runs started at once in one process
(``asyncio.gather`` of ``run_experiment`` calls, a nightly suite run in parallel) failed with
``RuntimeError: dictionary changed size during iteration``. One lock serializes the
registry's methods; they are short (a pickle and a key-value put each).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_lock = threading.RLock()  # register() calls flush_values()
_METHODS = ("register", "flush_values", "unregister", "unregister_all")


def make_registry_thread_safe() -> None:
    """Wrap the methods of Tune's ``_Registry`` in one lock (once per process)."""
    from ray.tune import registry

    cls: Any = registry._Registry
    with _lock:
        if getattr(cls, "_radas_locked", False):
            return
        for name in _METHODS:
            original = getattr(cls, name)

            @functools.wraps(original)
            def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
                with _lock:
                    return __original(self, *args, **kwargs)

            setattr(cls, name, locked)
        cls._radas_locked = True
