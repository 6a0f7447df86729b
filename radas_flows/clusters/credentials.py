"""A cluster's token goes to that cluster only: its header, no redirects, a plain-http warning.

Every request that carries a registry cluster's token (availability probes, the Jobs API
client) gets its headers from :func:`auth_headers` and follows no redirect: an answer that
redirects (HTTP 301, 302, 303, 307, 308) is refused with :class:`ClusterRedirectError`, which
names the cluster and the ``Location``. A cluster's dashboard does not redirect its API, so a
redirect means that the registry's address is out of date, or that something between radas and
the cluster sends the requests elsewhere; either way the operator fixes the registry's address,
and the token never reaches a host the registry does not name.
"""

from __future__ import annotations

import ipaddress
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urljoin, urlsplit

from radas_flows._artifacts import run_logger
from radas_flows.clusters.config import ClusterConfig
from radas_flows.errors import RadasError

__all__ = [
    "REDIRECT_CODES",
    "ClusterRedirectError",
    "auth_headers",
    "get",
    "is_loopback_host",
    "plain_http_warning",
    "redirect_error",
]

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
"""The HTTP answers that HTTP clients follow to another URL, and radas refuses."""

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


class ClusterRedirectError(RadasError, RuntimeError):
    """A cluster answered a request with a redirect, which radas does not follow."""


def is_loopback_host(host: str) -> bool:
    """Whether a URL's host is this machine (``localhost``, ``127.0.0.0/8``, ``::1``).

    Names are not resolved: any other name counts as another machine.

    Example:
        >>> [is_loopback_host(h) for h in ("127.0.0.1", "localhost", "::1", "10.0.0.5")]
        [True, True, True, False]
    """
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_http_warning(cluster: ClusterConfig) -> str | None:
    """The warning for a token sent over plain ``http://`` to another machine, else ``None``.

    Example:
        >>> from pathlib import Path
        >>> far = ClusterConfig("far", "http://10.0.0.5:8265", 8, 0, 0.0, "", None, "T", None,
        ...                     Path("clusters.toml"))
        >>> plain_http_warning(far).split(":")[0]
        "Cluster 'far'"
    """
    parts = urlsplit(cluster.address)
    if parts.scheme != "http" or is_loopback_host(parts.hostname or ""):
        return None
    return (
        f"Cluster {cluster.name!r}: radas sends its Ray auth token over plain http:// to "
        f"{parts.hostname}, which is not this machine, so anyone on the network path (and any "
        f"HTTP proxy set in the environment) can read it. Serve the dashboard over https:// "
        f"and write that address in {cluster.where}, or reach "
        f"the cluster through an SSH tunnel to 127.0.0.1."
    )


def auth_headers(cluster: ClusterConfig) -> dict[str, str]:
    """The headers for a request to a registry cluster: its token, when it has one.

    The first time in a process that a cluster's token is to go over plain ``http://`` to
    another machine, :func:`plain_http_warning` is logged as a warning (to the Prefect run's
    log inside a flow or task run).

    Raises:
        ClusterAuthError: The token cannot be read, or this registry entry may not read it.

    Example:
        >>> auth_headers(get_cluster("atol-gpu-5090"))  # doctest: +SKIP
        {'Authorization': 'Bearer ...'}
    """
    token = cluster.read_token()
    if token is None:
        return {}
    warning = plain_http_warning(cluster)
    if warning is not None:
        key = (cluster.name, cluster.address)
        with _warned_lock:
            first = key not in _warned
            _warned.add(key)
        if first:
            run_logger(__name__).warning(warning)
    return {"Authorization": f"Bearer {token}"}


def redirect_error(
    cluster: ClusterConfig, url: str, code: int, location: str | None
) -> ClusterRedirectError:
    """The error for a redirect from a cluster: the cluster, the URL asked, the ``Location``."""
    if location:
        target = urljoin(url, location)
        parts = urlsplit(target)
        where = f"a redirect to {target}"
        fix = (
            f"If the cluster's dashboard now answers at {parts.scheme}://{parts.netloc}, write "
            f"that address in {cluster.where}; otherwise ask the "
            f"cluster's operator why it redirects."
        )
    else:
        where = "a redirect without a Location"
        fix = f"Ask the cluster's operator why it redirects {url}."
    return ClusterRedirectError(
        f"Cluster {cluster.name!r}: {url} answered HTTP {code}, {where}. radas follows no "
        f"redirect from a cluster, so that the cluster's token goes only to the address in the "
        f"registry ({cluster.address}). {fix}"
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the redirect's code


def get(
    cluster: ClusterConfig, url: str, headers: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    """GET ``url`` of a cluster without following redirects; return the status and body.

    Raises:
        ClusterRedirectError: The answer is a redirect.
        OSError: No answer (connection refused, timed out...).
    """
    opener = urllib.request.build_opener(_NoRedirect)  # proxies as the environment sets them
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        with e:
            if e.code in REDIRECT_CODES:
                raise redirect_error(cluster, url, e.code, e.headers.get("Location")) from None
            return e.code, e.read()
