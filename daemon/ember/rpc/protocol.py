"""JSON-RPC 2.0 on top of pygls's protocol, with the gaps the specification leaves us closed.

pygls gives us handler registration and execution (async tasks, futures, cancellation). Out of the
box it stays silent on invalid JSON, batches, missing params and post-shutdown requests, and it leaks
tracebacks in errors. This subclass owns the envelope: it parses and validates every message,
answers each request exactly once with the client's own id, collects batch replies into one array,
and turns any failure into a short error (the traceback goes to the log).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pydantic import ValidationError
from pygls.exceptions import JsonRpcException, JsonRpcMethodNotFound
from pygls.protocol import JsonRPCProtocol

from ..errors import (
    EmberError,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    ParseError,
    RequestCancelled,
    ShuttingDown,
)
from ..wire import (
    CHECK_RESULTS_ENV,
    METHODS,
    NOTIFICATION_PARAMS,
    NOTIFICATIONS_OUT,
    STREAM,
    check_payload,
    valid_request_id,
)
from .nesting import MAX_DEPTH, cut_deep, holds_marker

log = logging.getLogger(__name__)

CANCEL = "$/cancelRequest"
# Tests set this: every result and notification is checked against wire.py/results.py, and one
# that does not match is answered as an internal error naming the mismatch.
CHECK_RESULTS = os.environ.get(CHECK_RESULTS_ENV) == "1"
EXIT = "exit"
SHUTDOWN = "shutdown"


@dataclass
class Batch:
    expected: int = 0
    replies: list[dict[str, Any]] = field(default_factory=list)
    sealed: bool = False


@dataclass
class RequestContext:
    """What a handler knows about the request it serves (read through `current_request`)."""

    protocol: EmberProtocol
    id: Any
    method: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    batch: Batch | None = None
    key: int = 0  # the protocol's own handle for this request (client ids may repeat)
    supersede: str | None = None  # the supersede key this request holds, if any
    priority: str = "normal"  # its model work's scheduling class (set from params or the method)

    def stream_sink(self) -> Callable[[str], None]:
        """Where a streaming request's text deltas go: numbered ember/stream notifications."""
        index = itertools.count()
        return lambda delta: self.notify(STREAM, {"id": self.id, "delta": delta, "index": next(index)})

    def notify(self, method: str, params: Any) -> None:
        """Send a notification to this request's client; safe from any thread."""
        self.protocol.send_notification(method, params)


current_request: contextvars.ContextVar[RequestContext] = contextvars.ContextVar("current_request")


class RawJSON:
    """A result already encoded as JSON (off the event loop, for large results)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    @classmethod
    def of(cls, value: Any) -> RawJSON:
        if not isinstance(value, dict):
            return cls(_dumps(value))
        # One json.dumps per member: each is a C call that holds the GIL throughout, so a 1.4 MB
        # tokenize result in one call would stall every other thread for its whole length.
        members = (_dumps(str(k)) + b":" + _dumps(v) for k, v in value.items())
        return cls(b"{" + b",".join(members) + b"}")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def encode_message(message: Any) -> bytes:
    """One message (or a batch of them) as JSON bytes, splicing in RawJSON results."""
    if isinstance(message, list):
        return b"[" + b",".join(encode_message(m) for m in message) + b"]"
    result = message.get("result") if isinstance(message, dict) else None
    if isinstance(result, RawJSON):
        head = _dumps({k: v for k, v in message.items() if k != "result"})
        return head[:-1] + b',"result":' + result.data + b"}"
    return _dumps(message)


@dataclass
class Parsed:
    """A frame's JSON (or why it has none), ready to dispatch; `cut`: containers were too deep."""

    data: Any = None
    error: EmberError | None = None
    cut: bool = False


def parse_frame(frame: bytes | EmberError) -> Parsed:
    """A message body to JSON, with over-deep containers cut (nesting.py); or the error a transport
    found reading bytes that are no message. Pure: safe on any thread."""
    if isinstance(frame, EmberError):
        return Parsed(error=frame)
    cut = cut_deep(frame)
    try:
        return Parsed(json.loads(cut if cut is not None else frame, parse_constant=_reject_constant),
                      cut=cut is not None)
    except (ValueError, UnicodeDecodeError) as exc:
        return Parsed(error=ParseError(f"Parse error: invalid JSON ({_short(exc)})"))
    except RecursionError:
        return Parsed(error=ParseError(f"Parse error: nested deeper than {MAX_DEPTH} levels"))


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and we could not echo them back.
    raise ValueError(f"{name} is not valid JSON")


def _same_id(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


class EmberProtocol(JsonRPCProtocol):
    """One client connection's protocol state. Handlers (the feature manager) may be shared."""

    def __init__(self, server, converter, features=None, notifications=None):
        super().__init__(server, converter)
        if features is not None:
            self.fm = features
        # Data notifications (wire.NOTIFICATION_PARAMS): method -> handler(validated params, self).
        self.notifications: dict[str, Callable[[Any, EmberProtocol], None]] = notifications or {}
        self._write: Callable[[bytes], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._keys = itertools.count(1)
        self._inflight: dict[int, RequestContext] = {}
        self._superseding: dict[str, int] = {}  # supersede key -> the request that holds it
        self._idle: asyncio.Event | None = None
        self.shutdown_requested = False
        self.on_exit: Callable[[int], None] | None = None
        self.on_request: Callable[[str], None] | None = None  # counters, idle timers
        self.flow: Any = None  # the transport's Backpressure, if it has one
        self.on_answered: Callable[[], None] | None = None  # a request's slot is free (transport intake)
        self._write_failed = False

    @property
    def output_congested(self) -> bool:
        """The client is behind on reading its replies: start no new side work for it."""
        return bool(self.flow is not None and self.flow.congested)

    # -- wiring --------------------------------------------------------------------------------

    def attach(self, write: Callable[[bytes], None], loop: asyncio.AbstractEventLoop) -> None:
        """Bind to a transport: `write` takes one message's JSON body (the transport frames it) and
        is called on the loop's thread."""
        self._write = write
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def methods_in_flight(self) -> list[str]:
        return [req.method for req in self._inflight.values()]

    async def wait_idle(self) -> None:
        """Return once every request received so far has been answered."""
        assert self._idle is not None
        await self._idle.wait()

    def cancel_all(self) -> None:
        """The client went away: cancel everything it asked for."""
        for key in list(self._inflight):
            self._cancel_key(key)

    # -- inbound -------------------------------------------------------------------------------

    def receive(self, frame: bytes | EmberError) -> None:
        """Handle one framed message body (called on the event loop)."""
        self.dispatch(parse_frame(frame))

    def dispatch(self, parsed: Parsed) -> None:
        """Answer or start what one parsed frame asks for (event loop). Never raises."""
        try:
            self._dispatch(parsed)
        except Exception:  # noqa: BLE001 - one bad message must not take the connection down
            log.exception("Could not handle a message")
            self._send_error_message(None, InternalError("Internal error while reading a message"))

    def _dispatch(self, parsed: Parsed) -> None:
        if parsed.error is not None:
            self._send_error_message(None, parsed.error)
            return
        data = parsed.data
        if isinstance(data, list):
            if not data:
                self._send_error_message(None, InvalidRequest("Invalid Request: empty batch"))
                return
            batch = Batch()
            for item in data:
                self._receive_one(item, batch, parsed.cut)
            batch.sealed = True
            self._flush_batch(batch)
        else:
            self._receive_one(data, None, parsed.cut)

    def _receive_one(self, msg: Any, batch: Batch | None, cut: bool = False) -> None:
        problem = self._envelope_problem(msg)
        if problem is None and "method" not in msg:
            log.debug("Ignoring a response object from the client: %r", msg.get("id"))
            return
        too_deep = None
        if cut and holds_marker(msg):
            if problem is None and not holds_marker({k: v for k, v in msg.items() if k != "params"}):
                too_deep = InvalidParams(f"params: nested deeper than {MAX_DEPTH} levels")
            else:
                problem = problem or f"nested deeper than {MAX_DEPTH} levels"
        if problem is None and "id" not in msg:
            if too_deep is not None:
                log.warning("Dropping the notification %s: its params are nested too deep",
                            msg["method"][:80])
                return
            self._receive_notification(msg["method"], msg.get("params"))
            return
        if batch is not None:
            batch.expected += 1  # everything past this point is answered exactly once
        if problem is not None:
            msg_id = msg.get("id") if isinstance(msg, dict) and valid_request_id(msg.get("id")) else None
            self._answer_now(msg_id, batch, error=InvalidRequest(f"Invalid Request: {problem}"))
            return
        if too_deep is not None:
            self._answer_now(msg["id"], batch, error=too_deep)
            return
        method, params = msg["method"], msg.get("params")
        if self.on_request:
            self.on_request(method)
        if self.shutdown_requested:
            self._answer_now(msg["id"], batch, error=ShuttingDown("the daemon is shutting down"))
            return
        if method == SHUTDOWN:
            # Marked on arrival, not when its handler runs: a script that pipes `shutdown` and `exit`
            # together means a clean exit (code 0), and `exit` is read before the handler runs.
            self.shutdown_requested = True
        key = next(self._keys)
        req = RequestContext(protocol=self, id=msg["id"], method=method, batch=batch, key=key)
        self._inflight[key] = req
        assert self._idle is not None
        self._idle.clear()
        contextvars.copy_context().run(self._start_request, key, req, params)

    @staticmethod
    def _envelope_problem(msg: Any) -> str | None:
        if not isinstance(msg, dict):
            return f"expected an object, got {type(msg).__name__}"
        if msg.get("jsonrpc") != "2.0":
            return '"jsonrpc" must be "2.0"'
        if "id" in msg and not valid_request_id(msg["id"]):
            return '"id" must be a string, a number or null'
        if "method" not in msg:
            if "id" in msg and ("result" in msg or "error" in msg):
                return None  # a response to a request of ours
            return 'missing "method"'
        if not isinstance(msg["method"], str):
            return '"method" must be a string'
        if "params" in msg and not isinstance(msg["params"], (dict, list)):
            return '"params" must be an object or an array'
        return None

    def _receive_notification(self, method: str, params: Any) -> None:
        if method == CANCEL:
            self._cancel(params)
        elif method == EXIT:
            if self.on_exit:
                self.on_exit(0 if self.shutdown_requested else 1)
        elif self.shutdown_requested:
            return
        elif method in self.notifications:
            self._data_notification(method, params)
        else:
            contextvars.copy_context().run(self._handle_notification, method, params)

    def _data_notification(self, method: str, raw: Any) -> None:
        """Validate and hand on a notification that carries data. It has no reply, so a bad one
        is logged and dropped."""
        spec = NOTIFICATION_PARAMS[method]
        try:
            params = spec.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            log.warning("Dropping %s: %s", method, str(exc).splitlines()[0:3])
            return
        try:
            self.notifications[method](params, self)
        except Exception:  # noqa: BLE001 - a notification must never take the connection down
            log.exception("Could not handle %s", method)

    def _cancel(self, params: Any) -> None:
        if not isinstance(params, dict) or "id" not in params:
            log.warning("$/cancelRequest without an id: %r", params)
            return
        for key, req in list(self._inflight.items()):
            if _same_id(req.id, params["id"]):
                log.info("Cancelling request %r (%s)", req.id, req.method)
                self._cancel_key(key)

    def _cancel_key(self, key: int) -> None:
        req = self._inflight.get(key)
        if req is None:
            return
        req.cancelled.set()
        future = self._request_futures.get(key)
        if future is not None:
            future.cancel()

    def supersede(self, name: str, req: RequestContext) -> None:
        """Make `req` the holder of `name`, cancelling the request of this client that held it."""
        older = self._superseding.get(name)
        self._superseding[name] = req.key
        req.supersede = name
        if older is not None and older != req.key and older in self._inflight:
            log.info("Request %r supersedes %r (%s)", req.id, self._inflight[older].id, name)
            self._cancel_key(older)

    def _start_request(self, key: int, req: RequestContext, params: Any) -> None:
        try:
            handler = self._get_handler(req.method)
        except JsonRpcMethodNotFound:
            self._reply(key, error=MethodNotFound(f"Method not found: {req.method}"))
            return
        current_request.set(req)
        self._execute_handler(
            key, handler, callback=partial(self._send_handler_result, msg_id=key), args=(params,)
        )

    # -- outbound ------------------------------------------------------------------------------

    def _send_handler_result(self, future: Future[Any], *, msg_id: Any) -> None:
        key = msg_id
        self._request_futures.pop(key, None)
        if future.cancelled():
            self._reply(key, error=RequestCancelled("Request cancelled"))
            return
        exc = future.exception()
        if exc is None and CHECK_RESULTS and (problem := self._result_problem(key, future.result())):
            log.error("%s", problem)
            self._reply(key, error=InternalError(problem))
            return
        if exc is None:
            self._reply(key, result=future.result())
        elif isinstance(exc, EmberError):
            if exc.code == RequestCancelled.code:
                log.info("Request %s cancelled", key)
            else:
                log.info("Request failed: %s", exc.message)
            self._reply(key, error=exc)
        elif isinstance(exc, JsonRpcException):
            self._reply(key, error=EmberError(str(exc.message)))
        else:
            req = self._inflight.get(key)
            log.error("Internal error in %s", req.method if req else "?", exc_info=exc)
            self._reply(key, error=InternalError(f"Internal error: {type(exc).__name__}"))

    def _result_problem(self, key: int, result: Any) -> str | None:
        req = self._inflight.get(key)
        if req is None or req.method not in METHODS:
            return None
        payload = result.data if isinstance(result, RawJSON) else result
        try:
            check_payload(METHODS[req.method].result, payload, f"the result of {req.method}")
        except ValueError as exc:
            return str(exc)
        return None

    def _reply(self, key: int, result: Any = None, error: EmberError | None = None) -> None:
        req = self._inflight.pop(key, None)
        if req is None:
            return
        if req.supersede is not None and self._superseding.get(req.supersede) == key:
            del self._superseding[req.supersede]
        try:
            self._answer_now(req.id, req.batch, result=result, error=error)
        finally:
            if not self._inflight and self._idle is not None:
                self._idle.set()
            if self.on_answered is not None:
                self.on_answered()

    def _answer_now(self, msg_id: Any, batch: Batch | None, result: Any = None,
                    error: EmberError | None = None) -> None:
        if error is not None:
            message = {"jsonrpc": "2.0", "id": msg_id, "error": error.to_error()}
        else:
            message = {"jsonrpc": "2.0", "id": msg_id, "result": result}
        if batch is None:
            self.send_message(message)
            return
        batch.replies.append(message)
        self._flush_batch(batch)

    def _flush_batch(self, batch: Batch) -> None:
        if batch.sealed and batch.replies and len(batch.replies) >= batch.expected:
            replies, batch.replies = batch.replies, []
            self.send_message(replies)

    def _send_error_message(self, msg_id: Any, error: EmberError) -> None:
        self.send_message({"jsonrpc": "2.0", "id": msg_id, "error": error.to_error()})

    def send_notification(self, method: str, params: Any) -> None:
        if CHECK_RESULTS and method in NOTIFICATIONS_OUT:  # a mismatch fails the request that sent it
            check_payload(NOTIFICATIONS_OUT[method], params, f"the params of {method}")
        self.send_message({"jsonrpc": "2.0", "method": method, "params": params})

    def notify(self, method: str, params: Any | None = None) -> None:  # pygls API
        self.send_notification(method, params)

    def send_message(self, message: Any) -> None:
        """Encode and write one message; from another thread it is handed to the loop first."""
        try:
            data = encode_message(message)
        except (TypeError, ValueError, RecursionError):
            log.exception("Unserializable reply")
            if not (isinstance(message, dict) and "id" in message):
                return
            error = {"jsonrpc": "2.0", "id": message["id"],
                     "error": InternalError("Internal error: unserializable result").to_error()}
            try:
                data = encode_message(error)
            except (TypeError, ValueError):
                data = encode_message({**error, "id": None})
        if self._write is None or self._loop is None:
            log.error("No transport to send on")
            return
        if threading.get_ident() == self._loop_thread:
            self._safe_write(data)
        else:
            self._loop.call_soon_threadsafe(self._safe_write, data)

    def _safe_write(self, data: bytes) -> None:
        try:
            assert self._write is not None
            self._write(data)
        except (BrokenPipeError, ConnectionError, OSError) as exc:
            # Said once: the replies of the requests cancelled now fail the same way.
            log.log(logging.DEBUG if self._write_failed else logging.WARNING,
                    "Client connection lost while writing: %s", exc)
            self._write_failed = True
            self.cancel_all()
