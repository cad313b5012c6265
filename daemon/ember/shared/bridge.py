"""`ember connect`: an editor's stdio bridged to the shared daemon's socket.

The editor may speak either framing; the socket always speaks Content-Length. So frames from the
editor are re-framed as Content-Length for the socket, and the daemon's replies are re-framed in
the editor's framing. Bodies pass through untouched: the daemon does all the JSON-RPC work, and the
bridge only peeks at them to know when it may exit.

At stdin EOF the bridge waits for the replies still owed (as `ember serve` does), then closes.
After the editor's `exit` the daemon closes this connection, and the bridge exits 0 when a
`shutdown` came first, else 1.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections import Counter
from typing import Any

from ..lifecycle import PARENT_POLL_S, pid_alive
from ..rpc.nesting import cut_deep
from ..transport.framing import FrameDecoder, FramingError, encode
from ..wire import valid_request_id


def _key(msg_id: Any) -> str:
    return json.dumps(msg_id)  # 1, 1.0 and "1" are different ids


def _loads(body: bytes) -> Any:
    # Cut as the daemon does, so a request nested 100,000 deep is still counted (it gets its reply).
    return json.loads(cut_deep(body) or body)


def _is_request(msg: Any) -> bool:
    """A well-formed request: the daemon answers it exactly once, under the same id."""
    return (isinstance(msg, dict) and msg.get("jsonrpc") == "2.0" and isinstance(msg.get("method"), str)
            and "id" in msg and valid_request_id(msg["id"])
            and ("params" not in msg or isinstance(msg["params"], (dict, list))))


class Bridge:
    def __init__(self, sock: socket.socket, in_fd: int, out_fd: int):
        self.sock = sock
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.from_client = FrameDecoder()  # framing detected from the editor's first bytes
        self.from_daemon = FrameDecoder("headers")
        self.owed: Counter[str] = Counter()  # replies the editor still waits for, by id
        self.lock = threading.Lock()
        self.out_lock = threading.Lock()
        self.stdin_done = False
        self.saw_shutdown = False
        self.saw_exit = False
        self.done = threading.Event()
        self.code = 0

    def run(self, parent_pid: int | None = None) -> int:
        threading.Thread(target=self._pump_daemon, name="ember-from-daemon", daemon=True).start()
        threading.Thread(target=self._pump_client, name="ember-from-editor", daemon=True).start()
        if parent_pid:
            threading.Thread(target=self._watch, args=(parent_pid,), name="ember-parent", daemon=True).start()
        self.done.wait()
        try:
            self.sock.close()
        except OSError:
            pass
        return self.code

    def finish(self, code: int, message: str | None = None) -> None:
        with self.lock:
            if self.done.is_set():
                return
            self.code = code
        if message:
            sys.stderr.write(f"ember: {message}\n")
            sys.stderr.flush()
        self.done.set()

    # -- editor -> daemon ----------------------------------------------------------------------

    def _pump_client(self) -> None:
        while not self.done.is_set():
            try:
                chunk = os.read(self.in_fd, 1 << 16)
            except OSError:
                chunk = b""
            frames = self.from_client.feed(chunk) if chunk else self.from_client.finish()
            for frame in frames:
                if not self._forward(frame):
                    return
            if not chunk:
                break
        with self.lock:
            self.stdin_done = True
            idle = not self.owed
        if idle:
            self.finish(0)

    def _forward(self, frame: bytes | FramingError) -> bool:
        if isinstance(frame, FramingError):
            # Not a frame, so nothing to forward: answer as the daemon would.
            error = frame.to_error()
            return self._to_client(encode({"jsonrpc": "2.0", "id": None, "error": error}, "lines")[:-1])
        self._note_request(frame)
        try:
            self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(frame) + frame)
        except OSError as exc:
            self.finish(1, f"lost the connection to the shared daemon: {exc}")
            return False
        return True

    def _note_request(self, body: bytes) -> None:
        try:
            message = _loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return  # the daemon answers with a parse error (id null), owed nothing we could track
        with self.lock:
            for msg in message if isinstance(message, list) else [message]:
                if _is_request(msg):
                    self.owed[_key(msg["id"])] += 1
                    self.saw_shutdown |= msg["method"] == "shutdown"
                elif isinstance(msg, dict) and msg.get("method") == "exit" and "id" not in msg:
                    self.saw_exit = True

    # -- daemon -> editor ----------------------------------------------------------------------

    def _pump_daemon(self) -> None:
        while not self.done.is_set():
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self.lock:
                    exited, clean = self.saw_exit, self.stdin_done and not self.owed
                if exited:
                    self.finish(0 if self.saw_shutdown else 1)
                elif clean:
                    self.finish(0)
                else:
                    self.finish(1, "the shared daemon closed the connection")
                return
            for body in self.from_daemon.feed(chunk):
                if isinstance(body, FramingError):
                    continue  # cannot happen with our own daemon; never pass garbage to the editor
                if not self._to_client(body):
                    return
                self._note_reply(body)
            with self.lock:
                idle = self.stdin_done and not self.owed
            if idle:
                self.finish(0)

    def _note_reply(self, body: bytes) -> None:
        try:
            message = _loads(body)
        except (ValueError, RecursionError):
            return
        with self.lock:
            for msg in message if isinstance(message, list) else [message]:
                if isinstance(msg, dict) and "method" not in msg and "id" in msg:
                    key = _key(msg["id"])
                    if self.owed[key] > 0:
                        self.owed[key] -= 1
                    if self.owed[key] <= 0:
                        del self.owed[key]

    def _to_client(self, body: bytes) -> bool:
        framing = self.from_client.framing or "headers"
        data = body + b"\n" if framing == "lines" else b"Content-Length: %d\r\n\r\n" % len(body) + body
        try:
            with self.out_lock:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.out_fd, view):]
        except OSError:
            self.finish(1)  # the editor is gone; closing the socket cancels its requests
            return False
        return True

    def _watch(self, pid: int) -> None:
        while not self.done.wait(PARENT_POLL_S):
            if not pid_alive(pid):
                self.finish(0, f"parent process {pid} is gone; exiting")
                return


def claim_stdout() -> int:
    """A private copy of fd 1 for the protocol, with fd 1 pointed at stderr (as `ember serve` does)."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    return protocol_fd


def run_bridge(sock: socket.socket, parent_pid: int | None = None) -> int:
    out_fd = claim_stdout()
    return Bridge(sock, sys.stdin.fileno(), out_fd).run(parent_pid)
