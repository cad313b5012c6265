"""A small Python client for the shared Ember daemon (`ember daemon start`), sync and asyncio.

    from ember.client import Client, RpcError

    with Client.connect() as client:                  # starts the shared daemon if needed
        print(client.summarize("long text ...", max_tokens=64)["text"])
        client.call("complete", {"prompt": "def add(a, b):"}, on_delta=print)  # streams

    async with await AsyncClient.connect() as client:
        result = await client.classify("great", labels=["good", "bad"])

Errors the daemon answers raise `RpcError(code, message, data)`; a daemon that cannot be started or
reached, or a connection that drops, raises `DaemonUnavailable`. Results are plain dicts, typed by
the protocol's own TypedDicts (ember.results). Importing this module is cheap: no torch, no pygls,
no pydantic.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from .results import (
    ClassifyResult,
    CompleteResult,
    DetokenizeResult,
    ModelsListResult,
    StatusResult,
    SummarizeResult,
    TokenizeResult,
    TranslateResult,
)
from .shared.launch import DaemonUnavailable, ensure_running, log_path, try_connect
from .shared.paths import SharedPaths
from .transport.framing import FrameDecoder, encode

__all__ = [
    "AsyncClient", "Call", "ClassifyResult", "Client", "CompleteResult", "DaemonUnavailable",
    "DetokenizeResult", "ModelsListResult", "RpcError", "StatusResult", "SummarizeResult",
    "TokenizeResult", "TranslateResult", "connect_socket",
]

Delta = Callable[[str], None]
Notification = Callable[[str, Any], None]


class RpcError(Exception):
    """An error reply from the daemon: `code` is the JSON-RPC code (see PROTOCOL.md)."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


# -- connecting --------------------------------------------------------------------------------


def connect_socket(socket_path: str | Path | None = None, *, start: bool = True, settings: Any = None,
                   config_argv: list[str] | None = None) -> socket.socket:
    """A socket connected to the shared daemon.

    With `socket_path`, connect there and nothing else. Otherwise the socket folder comes from
    `settings` (default: the user's configuration), and a daemon is started when none answers
    (`start=True`), with `config_argv` as its configuration flags.
    """
    if socket_path is not None:
        sock = try_connect(Path(socket_path))
        if sock is None:
            raise DaemonUnavailable(f"nothing answers on {socket_path}")
        return sock
    if settings is None:
        from .config import load_config

        settings = load_config().settings
    paths = SharedPaths.resolve(settings.shared.socket_dir)
    return ensure_running(paths, config_argv, log_path(paths, settings.daemon.log_file), start=start)


# -- bookkeeping shared by both clients --------------------------------------------------------


class _Pending:
    __slots__ = ("resolve", "on_delta")

    def __init__(self, resolve: Callable[[Any, Exception | None], None], on_delta: Delta | None):
        self.resolve = resolve
        self.on_delta = on_delta


class _Calls:
    """Request ids, waiting calls, and routing of replies and stream deltas to them."""

    def __init__(self, on_notification: Notification | None):
        self._ids = itertools.count(1)
        self.pending: dict[int, _Pending] = {}
        self.on_notification = on_notification
        self.lock = threading.Lock()

    def new(self, method: str, params: Any, on_delta: Delta | None,
            resolve: Callable[[Any, Exception | None], None]) -> tuple[int, bytes]:
        msg_id = next(self._ids)
        if on_delta is not None and isinstance(params, dict):
            params = {**params, "stream": True}
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        with self.lock:
            self.pending[msg_id] = _Pending(resolve, on_delta)
        return msg_id, encode(message, "headers")

    def dispatch(self, body: bytes) -> None:
        try:
            message = json.loads(body)
        except ValueError:
            return
        for msg in message if isinstance(message, list) else [message]:
            if not isinstance(msg, dict):
                continue
            if "method" in msg:
                params = msg.get("params")
                if msg["method"] == "ember/stream" and isinstance(params, dict):
                    with self.lock:
                        waiting = self.pending.get(params.get("id"))  # type: ignore[arg-type]
                    if waiting is not None and waiting.on_delta is not None:
                        waiting.on_delta(params.get("delta", ""))
                elif self.on_notification is not None:
                    self.on_notification(msg["method"], params)
                continue
            with self.lock:
                waiting = self.pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
            if waiting is None:
                continue
            error = msg.get("error")
            if isinstance(error, dict):
                waiting.resolve(None, RpcError(error.get("code", -32603), error.get("message", ""),
                                               error.get("data")))
            else:
                waiting.resolve(msg.get("result"), None)

    def fail_all(self, reason: str) -> None:
        with self.lock:
            waiting, self.pending = list(self.pending.values()), {}
        for w in waiting:
            w.resolve(None, DaemonUnavailable(reason))

    @staticmethod
    def cancel_message(msg_id: int) -> bytes:
        return encode({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": msg_id}}, "headers")


def _params(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


# -- synchronous -------------------------------------------------------------------------------


class Call:
    """A request on its way: `result()` waits for it, `cancel()` asks the daemon to drop it."""

    def __init__(self, client: Client, msg_id: int, future: Future[Any]):
        self.client = client
        self.id = msg_id
        self.future = future

    def result(self, timeout: float | None = None) -> Any:
        return self.future.result(timeout)

    def done(self) -> bool:
        return self.future.done()

    def cancel(self) -> None:
        if not self.future.done():
            self.client._send(_Calls.cancel_message(self.id))


class Client:
    """Blocking client; safe to share between threads. Deltas and notifications are delivered on
    the client's reader thread."""

    def __init__(self, sock: socket.socket, on_notification: Notification | None = None):
        self._sock = sock
        self._calls = _Calls(on_notification)
        self._send_lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="ember-client", daemon=True)
        self._reader.start()

    @classmethod
    def connect(cls, socket_path: str | Path | None = None, *, start: bool = True, settings: Any = None,
                on_notification: Notification | None = None) -> Client:
        return cls(connect_socket(socket_path, start=start, settings=settings), on_notification)

    def _send(self, data: bytes) -> None:
        try:
            with self._send_lock:
                self._sock.sendall(data)
        except OSError as exc:
            raise DaemonUnavailable(f"lost the connection to the shared daemon: {exc}") from None

    def _read(self) -> None:
        decoder = FrameDecoder("headers")
        reason = "the shared daemon closed the connection"
        while True:
            try:
                chunk = self._sock.recv(1 << 16)
            except OSError as exc:
                reason = f"lost the connection to the shared daemon: {exc}"
                chunk = b""
            if not chunk:
                self._calls.fail_all(reason)
                return
            for frame in decoder.feed(chunk):
                if isinstance(frame, bytes):
                    self._calls.dispatch(frame)

    def request(self, method: str, params: Any = None, on_delta: Delta | None = None) -> Call:
        """Send a request and return at once; with `on_delta`, the request streams."""
        future: Future[Any] = Future()

        def resolve(result: Any, error: Exception | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        msg_id, data = self._calls.new(method, params, on_delta, resolve)
        self._send(data)
        return Call(self, msg_id, future)

    def call(self, method: str, params: Any = None, on_delta: Delta | None = None,
             timeout: float | None = None) -> Any:
        """Send a request and wait for its result. Raises RpcError or DaemonUnavailable."""
        pending = self.request(method, params, on_delta)
        try:
            return pending.result(timeout)
        except BaseException:
            pending.cancel()  # interrupted (Ctrl-C, timeout): do not leave the daemon working
            raise

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(encode(message, "headers"))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- typed helpers: params as in PROTOCOL.md ---------------------------------------------------

    def complete(self, prompt: str | None = None, on_delta: Delta | None = None, **options: Any) -> CompleteResult:
        return self.call("complete", _params(prompt=prompt, **options), on_delta)

    def summarize(self, text: str, on_delta: Delta | None = None, **options: Any) -> SummarizeResult:
        return self.call("summarize", {"text": text, **options}, on_delta)

    def translate(self, text: str, target: str, on_delta: Delta | None = None, **options: Any) -> TranslateResult:
        return self.call("translate", {"text": text, "target": target, **options}, on_delta)

    def classify(self, text: str, labels: list[str] | None = None, **options: Any) -> ClassifyResult:
        return self.call("classify", _params(text=text, labels=labels, **options))

    def tokenize(self, text: str, **options: Any) -> TokenizeResult:
        return self.call("tokenize", {"text": text, **options})

    def detokenize(self, ids: list[int], **options: Any) -> DetokenizeResult:
        return self.call("detokenize", {"ids": ids, **options})

    def status(self) -> StatusResult:
        return self.call("daemon/status")

    def models(self) -> ModelsListResult:
        return self.call("models/list")


# -- asyncio -----------------------------------------------------------------------------------


class AsyncClient:
    """The same over asyncio streams; deltas and notifications are delivered on the event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_notification: Notification | None = None):
        self._reader = reader
        self._writer = writer
        self._calls = _Calls(on_notification)
        self._reading = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, socket_path: str | Path | None = None, *, start: bool = True,
                      settings: Any = None, on_notification: Notification | None = None) -> AsyncClient:
        loop = asyncio.get_running_loop()
        # Starting the daemon polls with blocking sleeps: keep it off the loop.
        sock = await loop.run_in_executor(
            None, lambda: connect_socket(socket_path, start=start, settings=settings))
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer, on_notification)

    async def _read(self) -> None:
        decoder = FrameDecoder("headers")
        reason = "the shared daemon closed the connection"
        try:
            while chunk := await self._reader.read(1 << 16):
                for frame in decoder.feed(chunk):
                    if isinstance(frame, bytes):
                        self._calls.dispatch(frame)
        except (ConnectionError, OSError) as exc:
            reason = f"lost the connection to the shared daemon: {exc}"
        self._calls.fail_all(reason)

    def _send(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise DaemonUnavailable("the connection to the shared daemon is closed")
        self._writer.write(data)

    def request(self, method: str, params: Any = None, on_delta: Delta | None = None) -> tuple[int, asyncio.Future[Any]]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def resolve(result: Any, error: Exception | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        msg_id, data = self._calls.new(method, params, on_delta, resolve)
        self._send(data)
        return msg_id, future

    async def call(self, method: str, params: Any = None, on_delta: Delta | None = None) -> Any:
        """Send a request and await its result; cancelling the awaiting task cancels the request."""
        msg_id, future = self.request(method, params, on_delta)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done() and not self._writer.is_closing():
                self._writer.write(_Calls.cancel_message(msg_id))
            raise

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(encode(message, "headers"))

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        await asyncio.gather(self._reading, return_exceptions=True)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def complete(self, prompt: str | None = None, on_delta: Delta | None = None, **options: Any) -> CompleteResult:
        return await self.call("complete", _params(prompt=prompt, **options), on_delta)

    async def summarize(self, text: str, on_delta: Delta | None = None, **options: Any) -> SummarizeResult:
        return await self.call("summarize", {"text": text, **options}, on_delta)

    async def translate(self, text: str, target: str, on_delta: Delta | None = None, **options: Any) -> TranslateResult:
        return await self.call("translate", {"text": text, "target": target, **options}, on_delta)

    async def classify(self, text: str, labels: list[str] | None = None, **options: Any) -> ClassifyResult:
        return await self.call("classify", _params(text=text, labels=labels, **options))

    async def tokenize(self, text: str, **options: Any) -> TokenizeResult:
        return await self.call("tokenize", {"text": text, **options})

    async def detokenize(self, ids: list[int], **options: Any) -> DetokenizeResult:
        return await self.call("detokenize", {"ids": ids, **options})

    async def status(self) -> StatusResult:
        return await self.call("daemon/status")

    async def models(self) -> ModelsListResult:
        return await self.call("models/list")
