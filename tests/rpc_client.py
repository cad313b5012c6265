"""A small test client for a real `ember serve` subprocess, in either framing."""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

EMBER = str(Path(sys.executable).parent / "ember")
TIMEOUT = 120.0


class Daemon:
    def __init__(self, framing: str, args: list[str], env: dict[str, str], preexec_fn=None):
        self.framing = framing
        self.proc = subprocess.Popen(
            [EMBER, "serve", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, preexec_fn=preexec_fn,
        )
        self.messages: queue.Queue[Any] = queue.Queue()
        self.notifications: list[dict[str, Any]] = []
        self.stderr_lines: list[str] = []
        self._ids = itertools.count(1)
        self._replies: dict[Any, Any] = {}
        self.raw_out = bytearray()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # -- io ------------------------------------------------------------------------------------

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:  # always drain: a full pipe would block the daemon
            self.stderr_lines.append(line.decode(errors="replace"))

    def _read_stdout(self) -> None:
        out = self.proc.stdout
        while True:
            if self.framing == "lines":
                line = out.readline()
                if not line:
                    break
                self.raw_out += line
                self.messages.put(json.loads(line))
            else:
                headers = b""
                while not headers.endswith(b"\r\n\r\n"):
                    ch = out.read(1)
                    if not ch:
                        self.messages.put(None)
                        return
                    headers += ch
                self.raw_out += headers
                length = int(headers.split(b":")[1].split(b"\r\n")[0])
                body = out.read(length)
                self.raw_out += body
                self.messages.put(json.loads(body))
        self.messages.put(None)

    def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def frame(self, body: bytes) -> bytes:
        if self.framing == "lines":
            return body + b"\n"
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    def send(self, message: Any) -> None:
        self.send_raw(self.frame(json.dumps(message).encode()))

    def close_stdin(self) -> None:
        self.proc.stdin.close()

    # -- messages ------------------------------------------------------------------------------

    def next_message(self, timeout: float = TIMEOUT) -> Any:
        msg = self.messages.get(timeout=timeout)
        if isinstance(msg, dict) and "method" in msg and "id" not in msg:
            self.notifications.append(msg)
        return msg

    def reply(self, msg_id: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while msg_id not in self._replies:
            msg = self.next_message(max(0.1, deadline - time.monotonic()))
            if msg is None:
                raise EOFError(f"daemon closed stdout before replying to {msg_id!r}; stderr:\n"
                               + "".join(self.stderr_lines[-30:]))
            if isinstance(msg, dict) and "id" in msg and "method" not in msg:
                self._replies[msg["id"]] = msg
        return self._replies.pop(msg_id)

    def request(self, method: str, params: Any = None, msg_id: Any = None, **kw: Any) -> dict[str, Any]:
        msg_id = next(self._ids) if msg_id is None else msg_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self.reply(msg_id, **kw)

    def start_request(self, method: str, params: Any = None) -> int:
        msg_id = next(self._ids)
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
        self.send(message)
        return msg_id

    def call(self, method: str, params: Any = None) -> Any:
        """The result, checked here too against wire.py/results.py (the daemon checks it first)."""
        from ember.wire import METHODS, check_payload

        reply = self.request(method, params)
        assert "result" in reply, reply
        if method in METHODS:
            check_payload(METHODS[method].result, reply["result"], f"the result of {method}")
        return reply["result"]

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def stream_deltas(self, msg_id: Any) -> list[str]:
        items = [n["params"] for n in self.notifications
                 if n["method"] == "ember/stream" and n["params"]["id"] == msg_id]
        return [p["delta"] for p in sorted(items, key=lambda p: p["index"])]

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class SocketPeer:
    """A raw Content-Length client on the shared daemon's socket, for bytes no library would send.

    With `read=False` nobody reads the replies (a stuck client); `start_reading()` begins later.
    """

    def __init__(self, path: str | Path, read: bool = True):
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.messages: queue.Queue[Any] = queue.Queue()
        self._replies: dict[Any, Any] = {}
        self._ids = itertools.count(1)
        self.arrivals: list[Any] = []  # reply ids in the order they arrived
        if read:
            self.start_reading()

    def start_reading(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        from ember.transport.framing import FrameDecoder

        decoder = FrameDecoder("headers")
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self.messages.put(None)
                return
            for body in decoder.feed(chunk):
                value = json.loads(body)
                for msg in value if isinstance(value, list) else [value]:
                    if isinstance(msg, dict) and "method" not in msg:
                        self.arrivals.append(msg.get("id"))
                self.messages.put(value)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: Any) -> None:
        body = json.dumps(message).encode()
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def start_request(self, method: str, params: Any = None) -> int:
        msg_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return msg_id

    def next_message(self, timeout: float = TIMEOUT) -> Any:
        return self.messages.get(timeout=timeout)

    def reply(self, msg_id: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while msg_id not in self._replies:
            msg = self.next_message(max(0.1, deadline - time.monotonic()))
            if msg is None:
                raise EOFError(f"the daemon closed the connection before replying to {msg_id!r}")
            for m in msg if isinstance(msg, list) else [msg]:
                if isinstance(m, dict) and "id" in m and "method" not in m:
                    self._replies[m["id"]] = m
        return self._replies.pop(msg_id)

    def call(self, method: str, params: Any = None) -> Any:
        reply = self.reply(self.start_request(method, params))
        assert "result" in reply, reply
        return reply["result"]

    def close(self) -> None:
        import socket

        try:  # close() alone would not end a socket our reader thread is blocked on
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
