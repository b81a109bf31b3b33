"""A real HTTP server on 127.0.0.1 that responds like a carrier API.

Each test programs the replies per method and path: a status, a JSON body
or raw bytes, headers, and a delay. Replies for a route are used in order
and the last one repeats. Every request is recorded for assertions. The
server only listens on loopback, answers at most ``MAX_REQUESTS`` requests
and sleeps at most ``MAX_DELAY`` seconds, so a broken test ends by itself.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_REQUESTS = 200
MAX_DELAY = 2.0


@dataclass(frozen=True)
class Reply:
    """One programmed response."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def payload(self) -> bytes:
        if self.body is not None:
            return self.body
        if self.json is None:
            return b""
        return json.dumps(self.json).encode()


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeCarrierServer:
    """A threaded HTTP server on a free loopback port."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], list[Reply]] = {}
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        # A short poll interval lets close() return quickly.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-carrier",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def reply(self, method: str, path: str, *replies: Reply) -> None:
        """Program the replies to ``method path``, used in order."""
        if not replies:
            raise ValueError("program at least one reply")
        with self._lock:
            self._routes[(method.upper(), path)] = list(replies)

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        """Return the recorded requests to ``method path``."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == method.upper() and r.path == path
            ]

    def _next_reply(self, request: Recorded) -> Reply:
        with self._lock:
            if len(self.requests) >= MAX_REQUESTS:
                return Reply(status=503, json={"error": "fake server request limit"})
            self.requests.append(request)
            queue = self._routes.get((request.method, request.path))
            if not queue:
                return Reply(
                    status=418,
                    json={"error": f"no reply for {request.method} {request.path}"},
                )
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = server._next_reply(recorded)
                if reply.delay:
                    time.sleep(min(reply.delay, MAX_DELAY))
                payload = reply.payload()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": "application/json", **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up first (the timeout test).
                    pass

        return Handler
