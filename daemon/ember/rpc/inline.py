"""The `complete` handler: inline completions at a cursor, and every other kind of `complete`.

An inline completion (`prefix`, with a `supersede` key as editors send it) runs as a live
completion that later keystrokes may type through (typethrough.py); the client's workspace context
goes into its run context; each inline result gets a `completion_id` and is counted (stats.py).
When a client's context ring changes, its last inline prompt is prefilled at batch priority.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from functools import partial
from typing import Any
from weakref import WeakKeyDictionary

from ..service import Service
from ..tasks.base import RunContext
from ..wire import CompleteParams
from .protocol import RequestContext
from .typethrough import LiveCompletion, LiveCompletions, Mismatch


class InlineCompletions:
    def __init__(self, service: Service):
        self.service = service
        self.settings = service.settings.completion
        self.lives = LiveCompletions()
        self._id_prefix, self._ids = secrets.token_hex(3), itertools.count(1)
        self._prefills: WeakKeyDictionary[Any, asyncio.Future[Any]] = WeakKeyDictionary()  # client -> its idle prefill
        service.workspace.on_change = self.prefill_context

    async def complete(self, p: CompleteParams, req: RequestContext) -> dict[str, Any]:
        p = self._with_defaults(p)
        client = req.protocol
        self._cancel_prefill(client)  # the keystroke goes first; the prefix cache keeps what was prefilled
        if p.supersede is not None and p.prefix is not None:
            result = await self._live(p, req)
        else:
            if p.supersede:
                client.supersede(p.supersede, req)
            ctx = self._with_context(p, client, RunContext(
                cancelled=req.cancelled, on_delta=req.stream_sink() if p.stream else None))
            result = await self.service.run_task("complete", p, ctx, f"complete {req.id!r}", client, req.priority)
        if p.prefix is not None:
            result["completion_id"] = completion_id = f"{self._id_prefix}-{next(self._ids)}"
            self.service.stats.completed(client, completion_id, p.language, result)
        return result

    async def _live(self, p: CompleteParams, req: RequestContext) -> dict[str, Any]:
        """Join the key's live completion when the new prefix types through it, else start one."""
        assert p.supersede is not None
        client, key = req.protocol, p.supersede
        on_delta = req.stream_sink() if p.stream else None
        live = self.lives.get(client, key)
        typed = live.typed_by(p) if live is not None else None
        superseded = False
        while True:
            if live is None or typed is None:
                live = LiveCompletion(p, asyncio.get_running_loop())
                self._with_context(p, client, live.ctx)
                live.start(partial(self.service.run_task, "complete",
                                   p.model_copy(update={"stream": True}),  # deltas feed every holder
                                   label=f"complete {req.id!r}", client=client, priority=req.priority))
                self.lives.put(client, key, live)
                holder = live.join("", on_delta, origin=True)
            else:
                holder = live.join(typed, on_delta)
            if not superseded:  # after joining: the request it supersedes no longer holds it alone
                client.supersede(key, req)
                superseded = True
            try:
                return await holder.future
            except Mismatch:
                pass  # the model wrote something else than the user typed: run this one anew
            finally:
                live.leave(holder)
            live, typed = None, None

    def prefill_context(self, client: Any) -> None:
        """The client's workspace context changed: fill the prefix cache with its last inline
        completion's prompt under the new context, at batch priority, so that the next keystroke
        does not pay for it."""
        live = self.lives.latest(client)
        if live is None or not self.settings.context:
            return
        self._cancel_prefill(client)
        p = live.params.model_copy(update={"stream": False})
        ctx = self._with_context(p, client, RunContext(prefill_only=True))
        job = asyncio.ensure_future(self.service.run_task("complete", p, ctx, "prefill context", client, "batch"))
        job.add_done_callback(lambda f: f.cancelled() or f.exception())  # failures only matter to requests
        self._prefills[client] = job

    def _cancel_prefill(self, client: Any) -> None:
        pending = self._prefills.pop(client, None)
        if pending is not None and not pending.done():
            pending.cancel()

    def _with_defaults(self, p: CompleteParams) -> CompleteParams:
        """The config's defaults for what the request leaves out."""
        update: dict[str, Any] = {}
        if "cut" not in p.model_fields_set and not self.settings.cut:
            update["cut"] = False
        if p.max_time_ms is None and self.settings.max_time_ms:
            update["max_time_ms"] = self.settings.max_time_ms
        return p.model_copy(update=update) if update else p

    def _with_context(self, p: CompleteParams, client: Any, ctx: RunContext) -> RunContext:
        ctx.owner = f"complete {p.supersede or p.path or ''}".strip()  # the document, in daemon/status
        if p.prefix is not None and p.context and self.settings.context:
            ctx.context = self.service.workspace.chunks(client)
            ctx.context_tokens = self.settings.context_tokens
        return ctx
