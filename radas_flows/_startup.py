"""Starting what a run needs side by side: the temporary Prefect server, the target, imports."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.server.api.server import SubprocessASGIServer

    from radas_flows.inputs.spec import ExperimentSpec

__all__ = ["start_side_by_side", "start_temporary_server", "stop_side_by_side_at_exit"]


def _start_side_by_side(spec: ExperimentSpec) -> None:
    """Start Prefect's temporary server as ``get_client()`` would, and the target beside it.

    The server's process is the longest start (5 to 9 s on 2 CPUs), so it is spawned first;
    the target's start (a local Ray and Tune's imports) overlaps its boot.
    """
    from radas_flows.targets import target_for

    server = None
    try:
        from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

        if not PREFECT_API_URL.value() and PREFECT_SERVER_EPHEMERAL_ENABLED.value():
            from prefect.server.api.server import SubprocessASGIServer

            server = SubprocessASGIServer()  # the instance get_client() uses; started once
    except Exception as e:
        logging.getLogger(__name__).debug("no temporary Prefect server ahead: %r", e)
    target_for(spec.target).prepare(spec)
    if server is None:
        return
    try:
        start_temporary_server(server)
    except Exception as e:  # the flow starts it again and raises the reason there
        logging.getLogger(__name__).debug("starting the temporary Prefect server failed: %r", e)


def start_temporary_server(server: SubprocessASGIServer) -> None:
    """``server.start()``, without the block-type registration it does not need.

    Prefect passes the settings in effect to the server's process.
    """
    from prefect.settings import temporary_settings

    with temporary_settings(updates=_quick_server_settings()):
        server.start()


def _quick_server_settings() -> dict[Any, bool]:
    """Skip block-type auto-registration on the temporary server's start, unless the user set it.

    On start a server imports every installed Prefect collection (prefect-aws, prefect-ray,
    prefect-email) to register their block types: about 1 s of CPU on each run here. Prefect
    registers a block's type whenever a block is saved, and a dedicated server registers
    them all on its own start, so a temporary server does not need to.
    """
    from prefect.settings import (
        PREFECT_API_BLOCKS_REGISTER_ON_START,
        PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION,
        get_current_settings,
    )

    chosen = get_current_settings().server.model_fields_set
    if chosen & {"register_blocks_on_start", "memoize_block_auto_registration"}:
        return {}  # the user's choice stands
    return {
        PREFECT_API_BLOCKS_REGISTER_ON_START: False,
        PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION: False,
    }


def start_side_by_side(spec: ExperimentSpec) -> Callable[[], None]:
    """Start the temporary Prefect server and the target's runtime (a local Ray) at once.

    Returns a function that waits until the Prefect API answers; the flow can start then.
    Nothing here raises: whatever fails to start is started again, and reported, by the
    stage that needs it.
    """
    thread = threading.Thread(
        target=_start_side_by_side, args=(spec,), name="radas-startup", daemon=True
    )
    thread.start()
    return thread.join


_exit_registered = False


def stop_side_by_side_at_exit() -> None:
    """At exit, let the temporary Prefect server shut down while Ray shuts down.

    Both are stopped at exit by their own handlers, one after the other (about 1.5 s each).
    Registered after them, this handler runs first and only signals the server, so its
    shutdown overlaps Ray's; Prefect's handler then waits for it as before. Prefect's log
    and event workers have sent everything by then (they drain before exit handlers run).
    """
    global _exit_registered
    if _exit_registered:
        return
    _exit_registered = True
    import atexit

    atexit.register(_signal_temporary_server)


def _signal_temporary_server() -> None:
    try:
        from prefect.server.api.server import SubprocessASGIServer

        for server in list(SubprocessASGIServer._instances.values()):
            process = server.server_process
            if process is not None and process.poll() is None:
                process.terminate()
    except Exception as e:  # Prefect's own handler stops it as before
        logging.getLogger(__name__).debug("could not signal the temporary server: %r", e)
