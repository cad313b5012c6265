"""One inference server that remote models run on: its HTTP calls, failures, health and latency.

Calls go through huggingface_hub: `InferenceClient` for chat and TGI's `generate` (the client that
speaks to TGI, vLLM, Inference Endpoints and OpenAI-compatible servers such as `transformers
serve`), and the library's shared HTTP session for the routes that InferenceClient has no method
for (OpenAI-style raw-prompt completions, tokenize, the model list). Every model configured with
the same server shares one Endpoint, so its counters describe the server, not one model.

Failures become Ember errors with the right code and no traceback: -32001 (RemoteUnavailable:
unreachable, timeout, token refused, model not served, server error), -32002 (the server says the
prompt is too long), -32003 (still rate limited after the retries). 429 and 503 are retried with
backoff, and only before the first token: once text has streamed, a retry would repeat it.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..config import public_url
from ..errors import Busy, EmberError, RemoteInputTooLong, RemoteUnavailable, RequestCancelled

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 503)
MAX_BACKOFF_S = 8.0
MAX_RETRY_AFTER_S = 30.0
LATENCY_WINDOW = 200  # recent requests the latency percentiles cover
# Words in a server's refusal that mean "the prompt does not fit" (vLLM, TGI, llama.cpp, OpenAI).
TOO_LONG_HINTS = ("context length", "context_length", "maximum context", "too long", "must be <=",
                  "exceeds", "max_total_tokens", "max_input_tokens", "input validation error: `inputs`")
# ... and the ways servers say "not this model" (vLLM/OpenAI, transformers serve, others).
MODEL_HINTS = ("does not exist", "not found", "not served", "unknown model", "no model")


class Cancellable(Protocol):
    cancelled: threading.Event

    def check_cancelled(self) -> None: ...


class NeverCancelled:
    """For calls outside a request (probing the server while a model loads)."""

    cancelled = threading.Event()

    def check_cancelled(self) -> None:
        pass


@dataclass(frozen=True)
class Access:
    """How one model reaches its server: the bearer token (from the environment) and limits."""

    token: str | None
    token_env: str
    connect_s: float
    read_s: float
    retries: int


class HTTPStatusError(Exception):
    """A non-2xx answer from a route we call ourselves (InferenceClient raises HfHubHTTPError)."""

    def __init__(self, status: int, body: str, headers: dict[str, str]):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers


def split_base_url(base_url: str) -> tuple[str, str]:
    """The server's root (OpenAI routes live under root/v1, TGI's own routes under root) and the
    query string that goes with every request (e.g. an `api-version`)."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    for suffix in ("/v1/chat/completions", "/v1/completions", "/v1"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return f"{parts.scheme}://{parts.netloc}{path}", parts.query


_session_lock = threading.Lock()
_session_ready = False
_current = threading.local()  # the response the calling thread's last request received


def _remember_response(response: Any) -> None:
    """httpx response hook: it runs in the thread that made the request, once headers arrive."""
    _current.response = response


def last_response() -> Any:
    return getattr(_current, "response", None)


class StreamCloser:
    """Shuts the socket of a stream whose request was cancelled.

    Between tokens a cancelled request notices by itself; but a read blocked on a stream whose
    server sends nothing yet (queued, prefilling a long prompt, stuck) would wait for
    read_timeout_s while holding one of the server's concurrent slots. One thread watches the open
    streams (those whose headers have arrived) and shuts the cancelled ones' sockets: the read
    returns at once and the server sees the client go.
    """

    POLL_S = 0.05

    def __init__(self) -> None:
        self._streams: dict[int, tuple[threading.Event, Any]] = {}
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, cancelled: threading.Event, response: Any) -> int | None:
        if response is None:
            return None
        with self._cond:
            key = next(self._ids)
            self._streams[key] = (cancelled, response)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ember-stream-closer", daemon=True)
                self._thread.start()
            self._cond.notify()
            return key

    def unwatch(self, key: int | None) -> None:
        if key is not None:
            with self._cond:
                self._streams.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._streams:
                    self._cond.wait()
                self._cond.wait(self.POLL_S)
                done = [(k, r) for k, (event, r) in self._streams.items() if event.is_set()]
                for key, _ in done:
                    del self._streams[key]
            for _, response in done:
                _shut(response)


def _shut(response: Any) -> None:
    import socket

    try:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


closer = StreamCloser()


def use_session_for_servers() -> None:
    """Let huggingface_hub's shared HTTP client reach inference servers under HF_HUB_OFFLINE=1.

    The library's client refuses every request in offline mode, but a server on the network is
    not the hub: only requests to the hub keep that check. Installed once, before the first call.
    """
    global _session_ready
    with _session_lock:
        if _session_ready:
            return
        import httpx2
        from huggingface_hub import constants, set_client_factory

        try:  # the library's own hook (offline check, request ids); not exported publicly
            from huggingface_hub.utils._http import hf_request_event_hook
            hub_hook: Any = hf_request_event_hook
        except ImportError:  # pragma: no cover - a later huggingface_hub moved it
            hub_hook = None
        hub_host = urlsplit(constants.ENDPOINT).hostname or "huggingface.co"

        def hook(request: Any) -> None:
            host = request.url.host or ""
            if hub_hook is not None and (host == hub_host or host.endswith(".huggingface.co")
                                         or host == "huggingface.co"):
                hub_hook(request)

        set_client_factory(lambda: httpx2.Client(
            event_hooks={"request": [hook], "response": [_remember_response]},
            follow_redirects=True, timeout=None))
        _session_ready = True


def _percentiles(values: deque[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": at(0.5), "p95": at(0.95), "last": round(values[-1], 1)}


class Endpoint:
    """A server, its counters, and the HTTP calls to it. Safe from many threads at once."""

    def __init__(self, base_url: str, max_concurrent: int):
        self.base_url = base_url
        self.root, self.query = split_base_url(base_url)
        self.public_url = public_url(base_url)
        self.max_concurrent = max_concurrent
        self.server: str | None = None  # tgi | vllm | openai, once probed
        self._lock = threading.Lock()
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.health = "unknown"  # ok | down | unauthorized | unknown
        self.last_error: str | None = None
        self.checked_at: float | None = None
        self._latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._first_token_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._ids = itertools.count(1)

    # -- visibility ----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "url": self.public_url,
                "server": self.server,
                "health": self.health,
                "last_error": self.last_error,
                "checked_at": self.checked_at,
                "in_flight": self.in_flight,
                "max_concurrent": self.max_concurrent,
                "requests": self.requests,
                "failures": self.failures,
                "latency_ms": _percentiles(self._latency_ms),
                "first_token_ms": _percentiles(self._first_token_ms),
            }

    @contextmanager
    def track(self) -> Iterator[Callable[[], None]]:
        """Count one request in flight; yields a function to call when its first token arrives."""
        started = time.monotonic()
        first: list[float] = []

        def first_token() -> None:
            if not first:
                first.append(time.monotonic())

        with self._lock:
            self.in_flight += 1
            self.requests += 1
        try:
            yield first_token
        except RequestCancelled:
            raise
        except EmberError as exc:
            self.record_failure(exc)
            raise
        else:
            with self._lock:
                self._latency_ms.append((time.monotonic() - started) * 1000)
                if first:
                    self._first_token_ms.append((first[0] - started) * 1000)
                self._mark("ok", None)
        finally:
            with self._lock:
                self.in_flight -= 1

    def record_failure(self, exc: EmberError) -> None:
        reason = (exc.data or {}).get("reason")
        with self._lock:
            self.failures += 1
            if reason in ("unreachable", "timeout", "unavailable", "server-error"):
                self._mark("down", exc.message)
            elif reason == "unauthorized":
                self._mark("unauthorized", exc.message)
            else:  # the server answered: it is up, but refused this request
                self._mark(self.health if self.health != "unknown" else "ok", exc.message)

    def mark_ok(self) -> None:
        with self._lock:
            self._mark("ok", None)

    def _mark(self, health: str, error: str | None) -> None:
        self.health = health
        self.checked_at = time.time()
        if error is not None:
            self.last_error = error  # kept after recovery: the last failure, with checked_at

    def request_id(self) -> str:
        return f"ember-{next(self._ids)}"

    # -- calls ---------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.root}{path}" + (f"?{self.query}" if self.query else "")

    def _timeout(self, access: Access) -> Any:
        import httpx2

        return httpx2.Timeout(access.read_s, connect=access.connect_s)

    def _headers(self, access: Access) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        # token=False: never the token huggingface_hub would find on its own (a login on this
        # machine) - a remote model sends only the token its configuration names.
        headers = build_hf_headers(token=access.token or False)
        headers["x-request-id"] = self.request_id()
        return headers

    def inference_client(self, access: Access, url: str | None = None) -> Any:
        """A client for one request (closing it closes that request's stream, nothing else)."""
        from huggingface_hub import InferenceClient

        use_session_for_servers()
        headers: dict[str, Any] = {"x-request-id": self.request_id()}
        if access.token is None:
            headers["authorization"] = None  # drops the header huggingface_hub would add
        return InferenceClient(base_url=url or self.url("/v1"), api_key=access.token,
                               timeout=self._timeout(access), headers=headers)

    def get_json(self, path: str, access: Access) -> Any:
        """GET root+path; no retries (used to probe)."""
        from huggingface_hub.utils import get_session

        use_session_for_servers()
        try:
            response = get_session().get(self.url(path), headers=self._headers(access),
                                         timeout=self._timeout(access))
        except Exception as exc:  # noqa: BLE001 - mapped to an Ember error below
            raise self.error(exc, access, path) from exc
        if response.status_code >= 400:
            raise self.error(HTTPStatusError(response.status_code, response.text,
                                             dict(response.headers)), access, path)
        return response.json()

    def post_json(self, path: str, payload: dict[str, Any], access: Access, ctx: Cancellable) -> Any:
        from huggingface_hub.utils import get_session

        use_session_for_servers()

        def call() -> Any:
            response = get_session().post(self.url(path), json=payload,
                                          headers=self._headers(access), timeout=self._timeout(access))
            if response.status_code >= 400:
                raise HTTPStatusError(response.status_code, response.text, dict(response.headers))
            return response.json()

        return self.with_retries(call, access, ctx, path)

    @contextmanager
    def sse(self, path: str, payload: dict[str, Any], access: Access,
            ctx: Cancellable) -> Iterator[Iterator[dict[str, Any]]]:
        """POST with `stream: true`; yields the server-sent events as dicts. Leaving the block
        closes the connection, which is how a server learns to stop generating."""
        from huggingface_hub.utils import get_session

        use_session_for_servers()
        opened: list[Any] = []

        def open_stream() -> Any:
            cm = get_session().stream("POST", self.url(path), json=payload,
                                      headers=self._headers(access), timeout=self._timeout(access))
            response = cm.__enter__()
            if response.status_code >= 400:
                body = response.read().decode("utf-8", "replace")
                cm.__exit__(None, None, None)
                raise HTTPStatusError(response.status_code, body, dict(response.headers))
            opened.append(cm)
            return response

        response = self.with_retries(open_stream, access, ctx, path)
        watched = closer.watch(ctx.cancelled, response)
        try:
            yield self._events(response.iter_lines(), access, path, ctx)
        finally:
            closer.unwatch(watched)
            opened[0].__exit__(None, None, None)

    def _events(self, lines: Iterator[str], access: Access, what: str,
                ctx: Cancellable) -> Iterator[dict[str, Any]]:
        try:
            for line in lines:
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise RemoteUnavailable(
                        f"the server at {self.public_url} sent an event that is not JSON: {data[:200]!r}",
                        self._data("server-error")) from exc
                if isinstance(event, dict) and event.get("error") is not None:
                    raise self.error(_InStreamError(event["error"]), access, what)
                yield event
        except EmberError:
            raise
        except Exception as exc:  # noqa: BLE001 - a read timeout or a dropped connection mid-stream
            raise self.stream_error(exc, access, what, ctx) from exc

    def stream_error(self, exc: BaseException, access: Access, what: str, ctx: Cancellable) -> EmberError:
        """A stream that broke; when the request was cancelled, it was us who shut it."""
        if ctx.cancelled.is_set():
            return RequestCancelled("request cancelled")
        return self.error(exc, access, what)

    def with_retries(self, call: Callable[[], Any], access: Access, ctx: Cancellable, what: str) -> Any:
        """Run `call`, retrying 429 and 503 with backoff (Retry-After when the server sends one).
        Only for calls whose answer has not started: nothing is ever repeated to the client."""
        attempt = 0
        while True:
            ctx.check_cancelled()
            try:
                return call()
            except Exception as exc:  # noqa: BLE001 - sorted below
                status, headers = _status_of(exc)
                if status not in RETRY_STATUSES or attempt >= access.retries:
                    raise self.error(exc, access, what) from exc
                delay = _retry_after(headers) or min(MAX_BACKOFF_S, 0.5 * 2 ** attempt)
                delay *= 1 + random.uniform(-0.1, 0.1)  # noqa: S311 - jitter, not security
                attempt += 1
                log.info("%s answered %s to %s; retry %d/%d in %.1fs", self.public_url, status, what,
                         attempt, access.retries, delay)
                if ctx.cancelled.wait(delay):
                    raise RequestCancelled("request cancelled") from None

    # -- errors --------------------------------------------------------------------------------

    def _data(self, reason: str, status: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"endpoint": self.public_url, "reason": reason}
        if status is not None:
            data["status"] = status
        return data

    def error(self, exc: BaseException, access: Access, what: str) -> EmberError:
        """The Ember error for any failure of a call to this server."""
        import httpx2
        from huggingface_hub.errors import InferenceTimeoutError

        if isinstance(exc, EmberError):
            return exc
        url = self.public_url
        if isinstance(exc, httpx2.ConnectTimeout):
            return RemoteUnavailable(f"the server at {url} did not accept a connection within "
                                     f"{access.connect_s:g} s (connect_timeout_s)", self._data("unreachable"))
        if isinstance(exc, httpx2.ConnectError):
            return RemoteUnavailable(f"cannot reach the server at {url}: {_short(exc)}",
                                     self._data("unreachable"))
        if isinstance(exc, (httpx2.TimeoutException, InferenceTimeoutError)):
            return RemoteUnavailable(f"the server at {url} sent nothing for {access.read_s:g} s "
                                     "(read_timeout_s)", self._data("timeout"))
        if isinstance(exc, (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError)):
            return RemoteUnavailable(f"the server at {url} dropped the connection: {_short(exc)}",
                                     self._data("unreachable"))
        if isinstance(exc, _InStreamError):
            return self._refusal(None, exc.detail, access, what)
        status, _ = _status_of(exc)
        if status is not None:
            return self._refusal(status, _body_detail(exc), access, what)
        from huggingface_hub.errors import TextGenerationError

        if isinstance(exc, TextGenerationError):  # TGI's in-stream errors, parsed by InferenceClient
            return self._refusal(None, str(exc), access, what)
        log.error("Unexpected failure calling %s (%s)", url, what, exc_info=exc)
        return RemoteUnavailable(f"the call to {url} failed: {type(exc).__name__}",
                                 self._data("server-error"))

    def _refusal(self, status: int | None, detail: str, access: Access, what: str) -> EmberError:
        url = self.public_url
        lower = detail.lower()
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            if access.token:
                how = f"the token from ${access.token_env} was refused"
            elif access.token_env:
                how = f"no token was sent (${access.token_env} is not set)"
            else:
                how = "no token was sent (token_env is empty)"
            return RemoteUnavailable(f"the server at {url} answered {status}: {how}{said}",
                                     self._data("unauthorized", status))
        if status == 429:
            return Busy(f"the server at {url} is rate limiting (429) after {access.retries} retries; "
                        "retry later", self._data("rate-limited", status))
        if status is None or status in (400, 413, 422):
            if any(h in lower for h in TOO_LONG_HINTS):
                data = self._data("too-long", status)
                return RemoteInputTooLong(f"the server at {url} says the input is too long{said}", data)
        if status in (400, 404) and ("pinned to" in lower or (
                "model" in lower and any(h in lower for h in MODEL_HINTS))):
            return RemoteUnavailable(f"the server at {url} does not serve this model{said}",
                                     self._data("model-not-served", status))
        if status in (404, 405):
            return RemoteUnavailable(f"the server at {url} has no {what} route ({status})",
                                     self._data("no-route", status))
        if status == 503:
            return RemoteUnavailable(f"the server at {url} is unavailable (503) after "
                                     f"{access.retries} retries{said}", self._data("unavailable", status))
        if status is not None and status >= 500:
            return RemoteUnavailable(f"the server at {url} failed ({status}){said}",
                                     self._data("server-error", status))
        if status is None:
            return RemoteUnavailable(f"the server at {url} stopped with an error{said}",
                                     self._data("server-error"))
        return RemoteUnavailable(f"the server at {url} refused the request ({status}){said}",
                                 self._data("bad-request", status))


class _InStreamError(Exception):
    """An error event inside a stream of server-sent events."""

    def __init__(self, detail: Any):
        text = detail.get("message") if isinstance(detail, dict) else detail
        super().__init__(str(text))
        self.detail = str(text)[:300]


def _status_of(exc: BaseException) -> tuple[int | None, dict[str, str]]:
    if isinstance(exc, HTTPStatusError):
        return exc.status, exc.headers
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status, dict(getattr(response, "headers", {}) or {})
    return None, {}


def _retry_after(headers: dict[str, str]) -> float | None:
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


def _body_detail(exc: BaseException) -> str:
    """The server's own words from an error body: {detail}, {error}, {message}, {error: {message}}."""
    if isinstance(exc, HTTPStatusError):
        body = exc.body
    else:
        response: Any = getattr(exc, "response", None)
        try:
            response.read()
            body = response.text
        except Exception:  # noqa: BLE001 - a closed stream: the exception's own text
            body = str(exc)
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return (body or "").strip()[:300]
    for key in ("detail", "error", "message"):
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, dict):
            value = value.get("message") or json.dumps(value)
        if value:
            return str(value)[:300]
    return str(data)[:300]


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
