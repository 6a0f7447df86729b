"""A real HTTP proxy on 127.0.0.1 in front of a Ray dashboard that fails chosen requests once.

It stands for a network that drops a connection at the worst moment: before a request reaches
the Jobs API (``"drop_request"``), or after the API acted on it but before its answer gets back
(``"lose_answer"``). Every other request is forwarded unchanged, one request per connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

Failure = Literal["drop_request", "lose_answer"]


@dataclass
class Rule:
    method: str
    path: str
    failure: Failure
    times: int = 1
    hits: int = 0  # how many matching requests were failed
    prefix: bool = False  # match every path that starts with ``path``

    def matches(self, method: str, path: str) -> bool:
        same = path.startswith(self.path) if self.prefix else path == self.path
        return method == self.method and same and self.hits < self.times


@dataclass
class FlakyProxy:
    upstream: str  # http://host:port
    rules: list[Rule] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) seen

    def __post_init__(self) -> None:
        target = urlsplit(self.upstream)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="flaky-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
        self._server.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self._lock:
            self.requests.append((method, path))
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(60)
            request = _read_request(client.recv)
            if request is None:
                return
            head, body = request
            method, path = head.split(b" ", 2)[:2]
            rule = self._rule_for(method.decode(), path.decode())
            if rule is not None and rule.failure == "drop_request":
                return  # the connection closes: nothing reached the API
            with socket.create_connection(self._target, timeout=60) as upstream:
                upstream.sendall(_with_connection_close(head) + body)
                answer = bytearray()
                while chunk := upstream.recv(65536):
                    answer += chunk
            if rule is not None:  # "lose_answer": the API acted, the client hears nothing
                return
            client.sendall(bytes(answer))


def _read_request(recv: Callable[[int], bytes]) -> tuple[bytes, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n", body


def _with_connection_close(head: bytes) -> bytes:
    lines = [
        line
        for line in head.rstrip(b"\r\n").split(b"\r\n")
        if not line.lower().startswith(b"connection:")
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"
