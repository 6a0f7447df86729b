"""When Prefect's API goes away mid-run: tell its errors apart, and keep the flow's result.

A sweep's trials and results do not need the API; recording them in the UI does. When the
API is gone at the end, Prefect cannot record the flow's final state and its engine raises,
so the result the flow returned would be lost to a Python caller. The flow keeps it here
(per thread: a sync flow runs in its caller's thread) for ``run_experiment`` to return.
"""

from __future__ import annotations

import threading
from typing import Any

_returned = threading.local()


def api_unreachable(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is Prefect's API not answering.

    A connection that cannot be made or is dropped, a timeout, or a 5xx answer.

    Example:
        >>> import httpx
        >>> api_unreachable(httpx.ConnectError("All connection attempts failed"))
        True
        >>> api_unreachable(ValueError("bad config"))
        False
    """
    import httpx

    from radas_flows.errors import causes

    return any(
        isinstance(c, httpx.TransportError)
        or (isinstance(c, httpx.HTTPStatusError) and c.response.status_code >= 500)
        for c in causes(error)
    )


def keep_result(result: dict[str, Any]) -> None:
    """Keep what the flow returns, in case Prefect cannot record the flow's end."""
    _returned.value = result


def forget_result() -> None:
    _returned.value = None


def kept_result() -> dict[str, Any] | None:
    """What this thread's last flow returned (``None`` when it did not return)."""
    return getattr(_returned, "value", None)
