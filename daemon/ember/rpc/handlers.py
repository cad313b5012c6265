"""Thin method handlers: validate params against wire.py, then hand off to the service or a task.

No ML code here; every handler is async so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from weakref import WeakKeyDictionary

from pydantic import ValidationError

from .. import PROTOCOL_VERSION, __version__
from ..errors import InvalidParams
from ..service import Service
from ..tasks import TASKS
from ..tasks.base import RunContext
from ..tasks.tokenize import detokenize, tokenize
from ..wire import (
    COMPLETION_FEEDBACK,
    CONTEXT_ADD,
    METHODS,
    NOTIFICATION_PARAMS,
    PROGRESS,
    STREAM,
    CompleteParams,
    CompletionFeedbackParams,
    ContextAddParams,
    DetokenizeParams,
    InitializeParams,
    ModelParams,
    TokenizeParams,
)
from .protocol import RawJSON, RequestContext, current_request
from .typethrough import LiveCompletion, LiveCompletions, Mismatch

Handler = Callable[[Any], Awaitable[Any]]
CHARS_PER_TOKEN = 4  # a rough size of detokenize's output, to pick its side lane


def parse_params(method: str, raw: Any) -> Any:
    """Strictly validate raw params; a clear -32602 naming the field otherwise."""
    spec = METHODS[method].params
    if spec is None:
        if raw in (None, {}, []):
            return None
        raise InvalidParams(f"params: {method} takes no parameters")
    if raw is None:
        required = [n for n, f in spec.model_fields.items() if f.is_required()]
        hint = f" with {', '.join(required)}" if required else " (may be empty: {})"
        raise InvalidParams(f"params: missing; {method} needs an object{hint}")
    if isinstance(raw, list):
        raise InvalidParams("params: must be an object with named fields, not an array")
    try:
        params = spec.model_validate(raw)
    except ValidationError as exc:
        raise InvalidParams(describe_validation(exc), {"errors": _error_list(exc)}) from None
    unpaired = _unpaired_surrogate(raw, "")
    if unpaired is not None:
        field, index = unpaired
        raise InvalidParams(f"{field}: unpaired surrogate at character {index}; text must be valid Unicode "
                            "(a \\uD800-\\uDFFF escape needs its pair)")
    return params


# JSON may escape half of a surrogate pair alone ("\ud800"); Python keeps it as a code point that no
# tokenizer can encode, so it is refused here with the field's name instead of failing in a task.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _unpaired_surrogate(value: Any, path: str) -> tuple[str, int] | None:
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return (path or "params", found.start()) if found else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        hit = _unpaired_surrogate(item, f"{path}.{key}" if path else str(key))
        if hit is not None:
            return hit
    return None


def describe_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        field = ".".join(str(p) for p in err["loc"]) or "params"
        if err["type"] == "extra_forbidden":
            parts.append(f"{field}: unknown parameter")
        elif err["type"] == "missing":
            parts.append(f"{field}: required")
        else:
            parts.append(f"{field}: {err['msg']}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _error_list(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]


def encoded(fn: Callable[..., Any]) -> Callable[..., RawJSON]:
    """`fn` whose result is encoded where it runs (a side thread): a large tokenize result would
    otherwise cost the event loop tens of milliseconds that every other client waits through."""

    def run(*args: Any) -> RawJSON:
        return RawJSON.of(fn(*args))

    run.__name__ = fn.__name__
    return run


def stream_to(req: RequestContext) -> Callable[[str], None]:
    """ember/stream notifications for one request, numbered."""
    index = itertools.count()
    return lambda delta: req.notify(STREAM, {"id": req.id, "delta": delta, "index": next(index)})


def build_handlers(service: Service, on_initialize: Callable[[InitializeParams], None]) -> dict[str, Handler]:
    """Method name -> async handler taking the raw params."""

    async def initialize(p: InitializeParams, req: RequestContext) -> dict[str, Any]:
        on_initialize(p)
        # Clients that say `initialize` get model-load progress; a one-shot pipe gets replies only.
        protocol = req.protocol
        service.progress_sinks[protocol] = lambda params: protocol.send_notification(PROGRESS, params)
        return {
            "server": {"name": "ember", "version": __version__},
            "protocol_version": PROTOCOL_VERSION,
            "methods": sorted(METHODS),
            "tasks": sorted(TASKS) + ["tokenize"],
            "models": service.registry.describe_all(),
            "device": service.device,  # null for the first second or so, while torch loads
            "pid": os.getpid(),
        }

    async def shutdown(_: None, req: RequestContext) -> None:
        req.protocol.shutdown_requested = True
        return None

    async def tokenize_(p: TokenizeParams, req: RequestContext) -> RawJSON:
        name, tok = await service.tokenizer("tokenize", p.model, text_only=p.messages is None,
                                            client=req.protocol)
        cost = len(p.text or "") + sum(len(m.content) for m in p.messages or [])
        return await service.run_tokenizer(name, tok, encoded(tokenize), p, tok, name,
                                           client=req.protocol, cost=cost)

    async def detokenize_(p: DetokenizeParams, req: RequestContext) -> RawJSON:
        name, tok = await service.tokenizer("tokenize", p.model, text_only=True, client=req.protocol)
        cost = len(p.ids) * CHARS_PER_TOKEN
        return await service.run_tokenizer(name, tok, encoded(detokenize), p, tok, name,
                                           client=req.protocol, cost=cost)

    async def status(_: None, req: RequestContext) -> dict[str, Any]:
        return service.status()

    async def models_list(_: None, req: RequestContext) -> dict[str, Any]:
        return {"models": service.registry.describe_all()}

    async def models_load(p: ModelParams, req: RequestContext) -> dict[str, Any]:
        service.registry.check_name(p.model)
        worker = service.worker_for(p.model)
        lm, _ = await asyncio.wrap_future(worker.submit(lambda: service.registry.acquire(p.model),
                                                        f"load {p.model}", req.protocol))
        return {"model": lm.describe()}

    async def models_unload(p: ModelParams, req: RequestContext) -> dict[str, Any]:
        service.registry.check_name(p.model)
        done = await asyncio.wrap_future(service.worker_for(p.model).submit(
            lambda: service.registry.unload(p.model), f"unload {p.model}", req.protocol))
        return {"unloaded": done}

    def task(name: str) -> Callable[[Any, RequestContext], Awaitable[Any]]:
        async def run(p: Any, req: RequestContext) -> Any:
            if getattr(p, "supersede", None):
                req.protocol.supersede(p.supersede, req)
            ctx = RunContext(cancelled=req.cancelled, on_delta=stream_to(req) if getattr(p, "stream", False) else None)
            return await service.run_task(name, p, ctx, f"{name} {req.id!r}", req.protocol, req.priority)

        return run

    completion = service.settings.completion
    lives = LiveCompletions()
    id_prefix, completion_ids = secrets.token_hex(3), itertools.count(1)
    prefills: WeakKeyDictionary[Any, asyncio.Future[Any]] = WeakKeyDictionary()  # client -> its idle prefill

    def with_defaults(p: CompleteParams) -> CompleteParams:
        update: dict[str, Any] = {}
        if "cut" not in p.model_fields_set and not completion.cut:
            update["cut"] = False
        if p.max_time_ms is None and completion.max_time_ms:
            update["max_time_ms"] = completion.max_time_ms
        return p.model_copy(update=update) if update else p

    def context_for(p: CompleteParams, client: Any, ctx: RunContext) -> RunContext:
        if p.prefix is not None and p.context and completion.context:
            ctx.context = service.workspace.chunks(client)
            ctx.context_tokens = completion.context_tokens
        return ctx

    async def complete(p: CompleteParams, req: RequestContext) -> Any:
        p = with_defaults(p)
        client = req.protocol
        pending = prefills.pop(client, None)
        if pending is not None and not pending.done():
            pending.cancel()  # the keystroke goes first; the prefix cache keeps what was prefilled
        if p.supersede is None or p.prefix is None:
            if p.supersede:
                client.supersede(p.supersede, req)
            ctx = context_for(p, client, RunContext(
                cancelled=req.cancelled, on_delta=stream_to(req) if p.stream else None))
            result = await service.run_task("complete", p, ctx, f"complete {req.id!r}", client, req.priority)
        else:
            result = await live_complete(p, req)
        if p.prefix is not None:
            result["completion_id"] = completion_id = f"{id_prefix}-{next(completion_ids)}"
            service.stats.completed(client, completion_id, p.language, result)
        return result

    async def live_complete(p: CompleteParams, req: RequestContext) -> dict[str, Any]:
        """An inline completion that later keystrokes may type through (rpc/typethrough.py)."""
        assert p.supersede is not None
        client, key = req.protocol, p.supersede
        on_delta = stream_to(req) if p.stream else None
        live = lives.get(client, key)
        typed = live.typed_by(p) if live is not None else None
        superseded = False
        while True:
            if live is None or typed is None:
                live = LiveCompletion(p, asyncio.get_running_loop())
                context_for(p, client, live.ctx)
                live.start(partial(service.run_task, "complete",
                                   p.model_copy(update={"stream": True}),  # deltas feed every holder
                                   label=f"complete {req.id!r}", client=client, priority=req.priority))
                lives.put(client, key, live)
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

    def prefill_context(client: Any) -> None:
        """The client's workspace context changed: fill the prefix cache with its last inline
        completion's prompt under the new context, at batch priority, so that the next keystroke
        does not pay for it."""
        live = lives.latest(client)
        if live is None or not completion.context:
            return
        pending = prefills.pop(client, None)
        if pending is not None and not pending.done():
            pending.cancel()
        p = live.params.model_copy(update={"stream": False})
        ctx = context_for(p, client, RunContext(prefill_only=True))
        job = asyncio.ensure_future(service.run_task("complete", p, ctx, "prefill context", client, "batch"))
        job.add_done_callback(lambda f: f.cancelled() or f.exception())  # failures only matter to requests
        prefills[client] = job

    service.workspace.on_change = prefill_context

    impls: dict[str, Callable[[Any, RequestContext], Awaitable[Any]]] = {
        "initialize": initialize,
        "shutdown": shutdown,
        "tokenize": tokenize_,
        "detokenize": detokenize_,
        "daemon/status": status,
        "models/list": models_list,
        "models/load": models_load,
        "models/unload": models_unload,
        **{name: task(name) for name in TASKS if name != "complete"},
        "complete": complete,
    }
    missing = set(METHODS) ^ set(impls)
    assert not missing, f"METHODS and handlers disagree: {missing}"

    def bind(method: str, impl: Callable[[Any, RequestContext], Awaitable[Any]]) -> Handler:
        async def handler(raw: Any) -> Any:
            params = parse_params(method, raw)
            req = current_request.get()
            req.priority = getattr(params, "priority", None) or METHODS[method].priority
            return await impl(params, req)

        handler.__name__ = f"handle_{method.replace('/', '_')}"
        return handler

    return {method: bind(method, impl) for method, impl in impls.items()}


def build_notification_handlers(service: Service) -> dict[str, Callable[[Any, Any], None]]:
    """Notification name -> handler(validated params, the client's protocol). Run on the event loop:
    each only records what the client sent."""

    def context_add(p: ContextAddParams, client: Any) -> None:
        service.workspace.add(client, p.chunks)

    def completion_feedback(p: CompletionFeedbackParams, client: Any) -> None:
        service.stats.feedback(client, p)

    impls: dict[str, Callable[[Any, Any], None]] = {
        CONTEXT_ADD: context_add,
        COMPLETION_FEEDBACK: completion_feedback,
    }
    assert set(impls) == set(NOTIFICATION_PARAMS), "NOTIFICATION_PARAMS and handlers disagree"
    return impls
