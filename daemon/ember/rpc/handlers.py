"""Thin method handlers: validate params against wire.py, then hand off to the service or a task.

No ML code here; every handler is async so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from pydantic import ValidationError

from .. import PROTOCOL_VERSION, __version__
from ..config import AdapterSettings
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
    CompletionFeedbackParams,
    ContextAddParams,
    DetokenizeParams,
    InitializeParams,
    ModelAdapterParams,
    TokenizeParams,
)
from .inline import InlineCompletions
from .protocol import RawJSON, RequestContext, current_request

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

    async def models_load(p: ModelAdapterParams, req: RequestContext) -> dict[str, Any]:
        registry = service.registry
        registry.check_name(p.model)
        spec = AdapterSettings(source=p.source, revision=p.revision) if p.source is not None else None
        if p.adapter is None and (p.source is not None or p.revision is not None):
            raise InvalidParams("source: names an adapter's files; give `adapter` too")
        if p.adapter is not None and spec is None:
            registry.check_adapter(p.model, p.adapter)

        def load() -> Any:
            if p.adapter is None:
                return registry.acquire(p.model)[0]
            return registry.load_adapter(p.model, p.adapter, spec)

        lm = await asyncio.wrap_future(service.worker_for(p.model).submit(
            load, f"load {p.model}{'/' + p.adapter if p.adapter else ''}", req.protocol))
        return {"model": lm.describe()}

    async def models_unload(p: ModelAdapterParams, req: RequestContext) -> dict[str, Any]:
        registry = service.registry
        registry.check_name(p.model)
        if p.source is not None or p.revision is not None:
            raise InvalidParams("source: models/unload takes the adapter's name only")
        if p.adapter is None:
            unload = partial(registry.unload, p.model)
        else:
            registry.check_adapter(p.model, p.adapter)
            unload = partial(registry.unload_adapter, p.model, p.adapter)
        done = await asyncio.wrap_future(service.worker_for(p.model).submit(
            unload, f"unload {p.model}{'/' + p.adapter if p.adapter else ''}", req.protocol))
        return {"unloaded": done}

    def task(name: str) -> Callable[[Any, RequestContext], Awaitable[Any]]:
        async def run(p: Any, req: RequestContext) -> Any:
            if getattr(p, "supersede", None):
                req.protocol.supersede(p.supersede, req)
            ctx = RunContext(cancelled=req.cancelled,
                             on_delta=req.stream_sink() if getattr(p, "stream", False) else None)
            return await service.run_task(name, p, ctx, f"{name} {req.id!r}", req.protocol, req.priority)

        return run

    inline = InlineCompletions(service)

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
        "complete": inline.complete,
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
