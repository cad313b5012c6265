"""The service: settings, model registry and workers behind one small API for the handlers.

It is shared by every connection (one for `ember serve`, many for the shared daemon), so all models
stay resident once, whoever asked for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

from . import __version__
from .config import Settings, torch_threads
from .errors import Busy, TaskUnavailable
from .models.registry import Registry
from .remote_worker import RemoteWorker
from .scheduling import DAEMON
from .sidepool import SidePool
from .stats import CompletionStats
from .tasks import TASKS
from .tasks.base import RunContext
from .worker import Worker
from .workspace import Workspace

log = logging.getLogger(__name__)


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.started = time.time()
        self.requests_served = 0
        self.connections: set[Any] = set()  # every client (opaque here: the rpc layer's connections)
        # Clients that asked for model-load progress (rpc: those that sent `initialize`): a sink each.
        self.progress_sinks: dict[Any, Callable[[dict[str, Any]], None]] = {}
        self.registry = Registry(settings, progress=self.broadcast_progress)
        self._workers: dict[str, Worker | RemoteWorker] = {}
        # Tokenizer work and tokenizer loads: off the event loop, never behind a generation, and
        # never started for a client that is not reading its replies.
        self.side_pool = SidePool(settings.daemon.max_client_queue,
                                  blocked=lambda client: getattr(client, "output_congested", False))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.device: str | None = None  # what `auto` resolves to, once the worker has looked
        self.workspace = Workspace(settings.completion)  # each client's context ring (context/add)
        self.stats = CompletionStats(settings.completion)  # acceptance figures (completion/feedback)

    # -- workers -------------------------------------------------------------------------------

    def worker_for(self, model_name: str) -> Worker | RemoteWorker:
        endpoint = self.registry.endpoint(model_name)
        if endpoint is not None:  # a remote model: its server's own worker, never a device's
            key = f"remote {endpoint.public_url}"
            if key not in self._workers:
                self._workers[key] = RemoteWorker(key, endpoint.max_concurrent,
                                                  self.settings.daemon.max_queue)
            return self._workers[key]
        # One worker per configured device: models on the same device take turns on it.
        device = self.settings.models[model_name].device
        key = "cuda:0" if device == "cuda" else device
        if key not in self._workers:
            d = self.settings.daemon
            self._workers[key] = Worker(key, torch_threads(d.threads), d.max_queue, d.max_client_queue,
                                        on_ready=self._on_worker_ready)
        return self._workers[key]

    @property
    def workers(self) -> list[Worker | RemoteWorker]:
        return list(self._workers.values())

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # Start the default worker now: it imports torch in the background while we answer, then
        # records the device, so that `initialize` never waits for torch.
        self.worker_for(self.model_for("complete") or next(iter(self.settings.models)))
        for name in self.settings.daemon.preload:
            self.worker_for(name).submit(partial(self.registry.acquire, name), f"preload {name}")
        if self.settings.daemon.keep_alive_s >= 0:
            loop.call_later(self._reap_interval(), self._reap_idle)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.side_pool.shutdown()
        self.stats.close()

    def client_gone(self, client: Any) -> None:
        """A client disconnected: drop what was kept for it."""
        self.connections.discard(client)
        self.progress_sinks.pop(client, None)
        self.workspace.forget(client)

    def _reap_interval(self) -> float:
        return max(1.0, min(60.0, self.settings.daemon.keep_alive_s / 4 or 1.0))

    def _reap_idle(self) -> None:
        for lm in self.registry.loaded():
            if time.monotonic() - lm.last_used >= self.settings.daemon.keep_alive_s:
                # Unload on the model's own worker so it never races a forward pass.
                try:
                    self.worker_for(lm.name).submit(self.registry.unload_idle, "unload idle")
                except Busy:
                    pass  # a full queue means the model is anything but idle
                break
        if self.loop is not None:
            self.loop.call_later(self._reap_interval(), self._reap_idle)

    # -- requests ------------------------------------------------------------------------------

    def model_for(self, task: str, requested: str | None = None) -> str | None:
        name = requested or self.settings.model_for_task(task)
        if name is not None:
            self.registry.check_name(name)
        return name

    def adapter_for(self, task: str, model: str, requested: str | None) -> str:
        """The LoRA adapter a request runs with: the one it names ("" for none), else its task's
        ([tasks.adapters]) when it runs on the task's model."""
        if requested is None:
            routed = model == self.settings.model_for_task(task)
            requested = self.settings.tasks.adapters.get(task, "") if routed else ""
        self.registry.check_adapter(model, requested)
        return requested

    async def run_task(self, task_name: str, params: Any, run_ctx: RunContext, label: str,
                       client: Hashable = DAEMON, priority: str = "normal") -> dict[str, Any]:
        """Run a task on its model's worker. `run_ctx` carries the request's cancellation and, for
        streaming requests, where the text deltas go."""
        task = TASKS[task_name]
        model_name = self.model_for(task_name, getattr(params, "model", None))
        if model_name is None:
            raise TaskUnavailable(f"no model is configured for {task_name}: set tasks.{task_name} "
                                  f"to a model of kind {' or '.join(task.kinds)}")
        kind = self.settings.models[model_name].kind
        if kind not in task.kinds:
            raise TaskUnavailable(f"{task_name} needs a model of kind {' or '.join(task.kinds)}; "
                                  f"model '{model_name}' is {kind}")
        run_ctx.adapter = self.adapter_for(task_name, model_name, getattr(params, "adapter", None))
        submitted = time.monotonic()
        worker = self.worker_for(model_name)

        def job() -> dict[str, Any]:
            started = time.monotonic()
            run_ctx.check_cancelled()
            if isinstance(worker, Worker):  # a device's: other work may run between the task's steps
                run_ctx.steps = worker
            run_ctx.owner, run_ctx.priority = run_ctx.owner or task_name, priority
            lm, load_s = self.registry.acquire(model_name)
            with lm.in_use():
                result = task.run(params, lm, run_ctx)
            lm.touch()
            done = time.monotonic()
            run_ms = result.pop("run_ms", (done - started - load_s) * 1000)
            timings = {
                "queue_ms": round((started - submitted) * 1000, 2),
                "load_ms": round(load_s * 1000, 2),
                "run_ms": round(run_ms, 2),
                "total_ms": round((done - submitted) * 1000, 2),
            }
            completion = result.get("usage", {}).get("completion_tokens", 0)
            if completion and run_ms > 0:
                timings["tokens_per_second"] = round(completion / (run_ms / 1000), 2)
            if run_ctx.adapter:
                result["adapter"] = lm.adapters.use(run_ctx.adapter)
            return {**result, "model": model_name, "timings": timings}

        future = worker.submit(job, label, client, priority)
        try:
            return await asyncio.wrap_future(future)
        finally:
            if not future.done():
                run_ctx.cancelled.set()  # cancelled while running: stop at the next decoding step

    async def on_side(self, fn: Any, *args: Any, client: Any = DAEMON, cost: int = 0) -> Any:
        """Run `fn(*args)` on the side pool; `cost` (characters) picks its lane. Busy when full."""
        return await asyncio.wrap_future(self.side_pool.submit(fn, *args, client=client, cost=cost))

    async def tokenizer(self, task: str, requested: str | None, text_only: bool = False,
                        client: Any = DAEMON) -> tuple[str, Any]:
        name = self.model_for(task, requested)
        assert name is not None
        load = self.registry.text_tokenizer if text_only else self.registry.tokenizer
        tok = await self.on_side(load, name, client=client)
        if tok is None:  # a remote model without its tokenizer here: ask its server
            lm, _ = await asyncio.wrap_future(self.worker_for(name).submit(
                lambda: self.registry.acquire(name), f"load {name}"))
            tok = lm.tokenizer or lm.engine.server_tokenizer()
            if tok is None:
                raise TaskUnavailable(
                    f"tokenize: model '{name}' has no tokenizer here (set tokenizer = \"<hub id or "
                    f"folder>\") and its server at {lm.engine.endpoint.public_url} has no tokenize route",
                    {"model": name})
        return name, tok

    async def run_tokenizer(self, name: str, tok: Any, fn: Any, *args: Any, client: Any = DAEMON,
                            cost: int = 0) -> Any:
        """Tokenizer work off the event loop; a server's tokenize route on that server's worker,
        so a slow server never holds up the side pool that every local tokenize uses."""
        if getattr(tok, "is_server_tokenizer", False):
            return await asyncio.wrap_future(self.worker_for(name).submit(lambda: fn(*args),
                                                                         f"tokenize {name}"))
        return await self.on_side(fn, *args, client=client, cost=cost)

    # -- status and broadcasts -----------------------------------------------------------------

    def broadcast_progress(self, params: dict[str, Any]) -> None:
        for sink in list(self.progress_sinks.values()):
            sink(params)

    def status(self) -> dict[str, Any]:
        import psutil

        proc = psutil.Process()
        mem = proc.memory_info()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 1),
            "requests_served": self.requests_served,
            "queue_depth": sum(w.queue_depth for w in self.workers),
            "side_queue_depth": self.side_pool.queue_depth,
            "running": [label for w in self.workers for label in _running(w)],
            "connections": len(self.connections),
            "device": self.device,
            "memory": {"rss_bytes": mem.rss, "models_bytes": sum(m.resident_bytes for m in self.registry.loaded())},
            "models": [m.describe() for m in self.registry.loaded()],
            "model_loads": self.registry.loads,
            "workers": [{"device": w.device, "threads": w.threads, "queue_depth": w.queue_depth,
                         "jobs_done": w.jobs_done,
                         **({"interleaved": w.preemptions, "held_for_typing": w.holds}
                            if isinstance(w, Worker) else {})} for w in self.workers],
            "completions": self.stats.summary(),
        }

    def _on_worker_ready(self) -> None:
        if self.device is None:
            from .models.devices import detect

            self.device = detect()


def _running(worker: Any) -> list[str]:
    """What a worker runs now: one job on a device, several on a remote server's worker."""
    labels = getattr(worker, "running_labels", None)
    if labels is not None:
        return labels
    return [job.label for job in worker.running]
