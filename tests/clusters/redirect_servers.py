"""Two HTTP servers on 127.0.0.1: a cluster head that redirects, and the host it redirects to.

The recorder stands in for the other host of a redirect: it answers like a Ray dashboard and
Jobs API (health, cluster status, version, packages, jobs) and records every request it gets,
with its ``Authorization`` header. It also answers as an HTTP proxy (``HTTP_PROXY`` pointing at
it), so a request for a far address never leaves this machine. The head redirects the paths it
is told to (keeping the path) to the recorder, and answers the health check and version itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

CLUSTER_STATUS = {
    "result": True,
    "data": {
        "clusterStatus": {"loadMetricsReport": {"usage": {"CPU": [0.0, 4.0], "GPU": [0.0, 0.0]}}}
    },
}
VERSION = {"version": "4", "ray_version": "2.60.0", "ray_commit": "0" * 40}


@dataclass(frozen=True)
class Received:
    """One request a server got."""

    method: str
    path: str
    authorization: str | None
    body: bytes


@dataclass
class Server:
    """A running server: its base URL and every request it got."""

    url: str
    received: list[Received] = field(default_factory=list)
    redirect_to: str | None = None
    redirect_code: int = 302
    redirect_paths: tuple[str, ...] = ()

    def authorizations(self) -> list[str]:
        return [r.authorization for r in self.received if r.authorization is not None]


def _handler(server: Server, recorder: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _answer(self, code: int, payload: Any = None, location: str | None = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(code)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.received.append(
                Received(self.command, self.path, self.headers.get("Authorization"), body)
            )
            # As a proxy (HTTP_PROXY pointing here), the request line holds the full URL.
            path = urlsplit(self.path).path if "://" in self.path else self.path.split("?")[0]
            redirected = any(path.startswith(p) for p in server.redirect_paths)
            if not recorder and server.redirect_to and redirected:
                return self._answer(server.redirect_code, location=server.redirect_to + self.path)
            if path == "/api/gcs_healthz":
                return self._answer(200, "success")
            if not recorder:
                if path == "/api/version":
                    return self._answer(200, VERSION)
                return self._answer(404, {"error": "not here"})
            if path == "/api/cluster_status":
                return self._answer(200, CLUSTER_STATUS)
            if path == "/api/version":
                return self._answer(200, VERSION)
            if path.startswith("/api/packages/"):
                return self._answer(404 if self.command == "GET" else 200, {})
            if path == "/api/jobs/" and self.command == "POST":
                sid = json.loads(body or b"{}").get("submission_id") or "raysubmit_x"
                return self._answer(200, {"job_id": None, "submission_id": sid})
            if path.startswith("/api/jobs/"):
                sid = path.rstrip("/").rsplit("/", 1)[-1]
                return self._answer(
                    200,
                    {
                        "type": "SUBMISSION",
                        "submission_id": sid,
                        "job_id": None,
                        "status": "RUNNING",
                        "entrypoint": "echo",
                    },
                )
            return self._answer(404, {"error": "not here"})

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


@contextmanager
def serve(recorder: bool) -> Iterator[Server]:
    """Run one server on 127.0.0.1 (an ephemeral port) in a thread; stop it on exit."""
    server = Server(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server, recorder))
    httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
