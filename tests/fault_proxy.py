"""A small real HTTP proxy on 127.0.0.1 that sits in front of an inference server and injects faults.

The remote-engine tests point Ember at it instead of at `transformers serve` to cause what a real
server cannot be told to do: answer 401, 429, 500 or 503, say the input is too long, stall (a slow
server), or check the bearer token. In `pass` mode it forwards requests and streams the answers
back byte by byte, so it also sees what Ember sends (paths, headers, bodies) and whether Ember
closed a stream before the server finished.
"""

from __future__ import annotations

import http.client
import json
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Fault:
    """What the proxy does with the next requests (`times` of them; None: all)."""

    status: int | None = None  # answer this status instead of forwarding
    body: Any = None  # the JSON body of that answer
    headers: dict[str, str] = field(default_factory=dict)
    stall: bool = False  # read the request, then answer nothing until released
    stall_after_headers: bool = False  # answer 200 and event-stream headers, then send nothing
    require_token: str | None = None  # answer 401 unless "Authorization: Bearer <token>"
    times: int | None = None
    paths: tuple[str, ...] = ()  # only requests to these paths (default: all)


class FaultProxy:
    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fault = Fault()
        self.seen: list[Seen] = []
        self.client_closed_early = 0  # streams the client closed before the server finished
        self.closed_early = threading.Event()  # set at the first of those
        self.stalled = threading.Event()  # set when a request is held by `stall`
        self.forwarded = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def set(self, **kw: Any) -> None:
        with self._lock:
            self.fault = Fault(**kw)

    def reset(self) -> None:
        self._release.set()  # let stalled handlers finish
        with self._lock:
            self.fault = Fault()
            self.seen.clear()
            self.client_closed_early = 0
            self.forwarded = 0
        self.closed_early.clear()
        self.stalled.clear()
        self._release = threading.Event()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def requests_to(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.split("?")[0] == path]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            fault = self.fault
            if fault.paths and path.split("?")[0] not in fault.paths:
                return None
            if fault.times is not None:
                if fault.times <= 0:
                    return None
                fault.times -= 1
            return fault

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._handle(None)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self._handle(self.rfile.read(length))

            def _handle(self, raw: bytes | None) -> None:
                body: Any = None
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = raw
                with proxy._lock:
                    proxy.seen.append(Seen(self.command, self.path,
                                           {k.lower(): v for k, v in self.headers.items()}, body))
                fault = proxy._take_fault(self.path)
                if fault is not None and fault.stall:
                    release = proxy._release
                    proxy.stalled.set()
                    release.wait()
                    self.close_connection = True
                    return
                if fault is not None and fault.stall_after_headers:
                    self._headers_then_silence()
                    return
                if fault is not None and fault.require_token is not None:
                    if self.headers.get("Authorization") != f"Bearer {fault.require_token}":
                        self._answer(401, {"error": "Invalid credentials in Authorization header"})
                        return
                elif fault is not None and fault.status is not None:
                    self._answer(fault.status, fault.body, fault.headers)
                    return
                self._forward(raw)

            def _headers_then_silence(self) -> None:
                """Like a server whose stream has started but whose first token never comes; the
                client closing its end counts as closing the stream early."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                release = proxy._release
                proxy.stalled.set()
                while not release.is_set():
                    readable, _, _ = select.select([self.connection], [], [], 0.1)
                    if readable:
                        try:
                            gone = not self.connection.recv(1)
                        except OSError:
                            gone = True
                        if gone:
                            with proxy._lock:
                                proxy.client_closed_early += 1
                            proxy.closed_early.set()
                            break
                self.close_connection = True

            def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body if body is not None else {"error": f"injected {status}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, raw: bytes | None) -> None:
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=600)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                try:
                    upstream.request(self.command, self.path, body=raw, headers=headers)
                    response = upstream.getresponse()
                    self.send_response(response.status)
                    for k, v in response.getheaders():
                        if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                            self.send_header(k, v)
                    self.send_header("Connection", "close")  # the body ends when we close
                    self.end_headers()
                    with proxy._lock:
                        proxy.forwarded += 1
                    while True:
                        chunk = response.read1(65536)
                        if not chunk:
                            break
                        try:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                        except OSError:  # the client closed: close upstream too
                            with proxy._lock:
                                proxy.client_closed_early += 1
                            proxy.closed_early.set()
                            break
                finally:
                    upstream.close()
                    self.close_connection = True

        return Handler
