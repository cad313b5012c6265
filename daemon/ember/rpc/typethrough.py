"""Typing through: keystrokes that type the suggestion itself are answered from it.

An inline completion with a `supersede` key runs as a `LiveCompletion` that requests hold, not as
one request's job. When the client's next request for that key only adds, to the same prefix,
characters that the completion's text starts with, that request joins the same generation: its
answer is the rest of the text, with no new prefill, and a running generation keeps going and
streams into it. The request it supersedes is answered -32800 as before; the generation stops only
when no request holds it any more.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from weakref import WeakKeyDictionary

from ..errors import RequestCancelled
from ..tasks.base import RunContext
from ..wire import CompleteParams

log = logging.getLogger(__name__)

# Options that may differ between keystrokes of one suggestion: they do not change its text.
PER_REQUEST = {"prefix", "stream", "supersede", "priority", "max_time_ms"}
KEYS_PER_CLIENT = 32  # the supersede keys (documents) whose last completion a client keeps


class Holder:
    """One request's share of a live completion: the characters it typed, where its stream is."""

    def __init__(self, typed: str, on_delta: Callable[[str], None] | None, origin: bool = False):
        self.typed = typed
        self.origin = origin  # the request that started the generation
        self.on_delta = on_delta
        self.sent = len(typed)  # the released text it has streamed up to
        self.joined = time.monotonic()
        self.first_delta: float | None = None
        self.future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.verified = False  # the model's text is known to start with `typed`


class LiveCompletion:
    """One generation that the requests of one supersede key share."""

    def __init__(self, params: CompleteParams, loop: asyncio.AbstractEventLoop):
        self.params = params
        self.loop = loop
        self.ctx = RunContext()
        self.ctx.on_delta = self._released
        self.ctx.on_preview = self._preview
        self._lock = threading.Lock()
        self.preview = ""  # the completion's text so far, as the cut shapes it (its preview)
        self.text = ""  # the text released so far (after the cut)
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.holders: list[Holder] = []
        self.task: asyncio.Future[Any] | None = None

    # -- matching ------------------------------------------------------------------------------

    def typed_by(self, params: CompleteParams) -> str | None:
        """The characters `params` types through this completion, or None when it is another
        request (other text, other options, nothing left to answer with)."""
        old = self.params
        if params.prefix is None or old.prefix is None or not params.prefix.startswith(old.prefix):
            return None
        if params.model_dump(exclude=PER_REQUEST) != old.model_dump(exclude=PER_REQUEST):
            return None
        typed = params.prefix[len(old.prefix):]
        with self._lock:
            if self.error is not None or self.ctx.cancelled.is_set():
                return None
            if self.result is not None:
                final = self.result["text"]
                return typed if final.startswith(typed) and len(typed) < len(final) else None
            preview = self.preview
        if preview.startswith(typed) or typed.startswith(preview):
            return typed  # when the model has not written that far yet, the join waits to see
        return None

    # -- holders -------------------------------------------------------------------------------

    def join(self, typed: str, on_delta: Callable[[str], None] | None, origin: bool = False) -> Holder:
        holder = Holder(typed, on_delta, origin)
        with self._lock:
            self.holders.append(holder)
            holder.verified = self.preview.startswith(typed) or (self.result is not None)
            caught_up = self.text
            done = self.result is not None or self.error is not None
        self._send(holder, caught_up)
        if done:
            self._settle(holder)
        return holder

    def leave(self, holder: Holder) -> None:
        """The request is answered or cancelled; the generation stops when nobody holds it."""
        with self._lock:
            if holder in self.holders:
                self.holders.remove(holder)
            idle = not self.holders and self.result is None and self.error is None
        if idle:
            self.ctx.cancelled.set()
            if self.task is not None:
                self.task.cancel()

    def start(self, run: Callable[..., Awaitable[dict[str, Any]]]) -> None:
        """Run the generation as its own task: `run(run_ctx=...)` (Service.run_task's partial)."""
        self.task = asyncio.ensure_future(run(run_ctx=self.ctx))
        self.task.add_done_callback(self._finished)

    # -- from the worker thread ----------------------------------------------------------------

    def _preview(self, text: str) -> None:
        with self._lock:
            self.preview = text
            waiting = [h for h in self.holders if not h.verified]
        for holder in waiting:
            if text.startswith(holder.typed):
                holder.verified = True
            elif not holder.typed.startswith(text):  # the model wrote something else
                self.loop.call_soon_threadsafe(self._mismatch, holder)

    def _released(self, delta: str) -> None:
        with self._lock:
            self.text += delta
            text, holders = self.text, list(self.holders)
        for holder in holders:
            self._send(holder, text)

    def _send(self, holder: Holder, text: str) -> None:
        if len(text) <= holder.sent or not text.startswith(holder.typed):
            return
        delta, holder.sent = text[holder.sent:], len(text)
        if holder.first_delta is None:
            holder.first_delta = time.monotonic()
        if holder.on_delta is not None:
            holder.on_delta(delta)

    # -- on the event loop ---------------------------------------------------------------------

    def _mismatch(self, holder: Holder) -> None:
        if not holder.future.done():
            holder.future.set_exception(Mismatch())

    def _finished(self, task: asyncio.Future[Any]) -> None:
        with self._lock:
            if task.cancelled():
                self.error = RequestCancelled("Request cancelled")
            elif task.exception() is not None:
                self.error = task.exception()
            else:
                self.result = task.result()
            holders = list(self.holders)
        for holder in holders:
            self._settle(holder)

    def _settle(self, holder: Holder) -> None:
        if holder.future.done():
            return
        if self.error is not None:
            holder.future.set_exception(self.error)
            return
        assert self.result is not None
        final: str = self.result["text"]
        if not final.startswith(holder.typed):  # the cut ended before what the user typed
            holder.future.set_exception(Mismatch())
            return
        self._send(holder, final)
        holder.future.set_result(self._answer(holder, final))

    def _answer(self, holder: Holder, final: str) -> dict[str, Any]:
        assert self.result is not None
        if holder.origin:
            return dict(self.result)
        result = dict(self.result)
        result["text"] = final[len(holder.typed):]
        result["usage"] = {**result["usage"], "typed_through": len(holder.typed)}
        done = time.monotonic()
        timings = dict(result["timings"])
        timings.update(queue_ms=0.0, load_ms=0.0, total_ms=round((done - holder.joined) * 1000, 2))
        timings["run_ms"] = timings["total_ms"]
        timings.pop("tokens_per_second", None)
        result["timings"] = timings
        first = holder.first_delta or done
        result["first_token_ms"] = round(max(0.0, first - holder.joined) * 1000, 2)
        return result


class Mismatch(Exception):
    """The model's text turned out not to start with what the user typed: run the request anew."""


class LiveCompletions:
    """Each client's last live completion per supersede key (bounded, dropped with the client)."""

    def __init__(self) -> None:
        self._by_client: WeakKeyDictionary[Any, OrderedDict[str, LiveCompletion]] = WeakKeyDictionary()

    def get(self, client: Any, key: str) -> LiveCompletion | None:
        return self._by_client.get(client, OrderedDict()).get(key)

    def latest(self, client: Any) -> LiveCompletion | None:
        """The client's most recent completion (any key)."""
        keys = self._by_client.get(client)
        return next(reversed(keys.values())) if keys else None

    def put(self, client: Any, key: str, live: LiveCompletion) -> None:
        keys = self._by_client.setdefault(client, OrderedDict())
        keys[key] = live
        keys.move_to_end(key)
        while len(keys) > KEYS_PER_CLIENT:
            keys.popitem(last=False)
