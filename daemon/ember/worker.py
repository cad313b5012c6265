"""The model worker: one thread per device that runs model work, fairly across clients.

The event loop never runs model code. It submits jobs here and awaits their futures, so `tokenize`,
`daemon/status` and `$/cancelRequest` stay instant while a long generation runs. Jobs wait in a
FairQueue: interactive work (an editor's `complete`) before normal, normal before batch, and
clients in turn within each, so one script's 500 `classify` calls cannot starve an editor. A
queued job whose future was cancelled leaves the queue at once; a running one stops cooperatively
through its RunContext.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

from .scheduling import DAEMON, PRIORITIES, FairQueue, Job

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, device: str, threads: int, max_queue: int, max_client_queue: int | None = None,
                 on_ready: Callable[[], None] | None = None):
        self.device = device
        self._on_ready = on_ready  # called on the worker thread once torch is imported
        self.threads = threads
        self.max_queue = max_queue
        self._queue = FairQueue(PRIORITIES, max_per_client=max_client_queue or max_queue,
                                max_total=max_queue)
        self.running: Job | None = None
        self.jobs_done = 0
        self._thread = threading.Thread(target=self._run, name=f"ember-worker-{device}", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Jobs waiting (not counting the running one; cancelled ones leave at once)."""
        return self._queue.depth()

    def client_depth(self, client: Hashable | None) -> int:
        return self._queue.depth(client)

    def submit(self, fn: Callable[[], Any], label: str, client: Hashable | None = DAEMON,
               priority: str = "normal") -> Future:
        """Queue `fn` for this device; raises Busy when the client's or the device's queue is full."""
        if priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}")
        job = Job(fn, label, client=client, kind=priority)
        self._queue.put(job)
        return job.future

    def call(self, fn: Callable[[], Any], label: str) -> Any:
        """Run `fn` on this worker and wait (for callers that are not on the event loop)."""
        return self.submit(fn, label).result()

    def stop(self) -> None:
        self._queue.close()

    def _run(self) -> None:
        self._configure_torch()
        while (job := self._queue.take()) is not None:
            if not job.future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            self.running = job
            result, error = None, None
            try:
                result = job.fn()
            except BaseException as exc:  # noqa: BLE001 - the future carries it to the caller
                error = exc
            # Clear our state before the caller hears back, so status never shows a finished job.
            self.running = None
            self.jobs_done += 1
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

    def _configure_torch(self) -> None:
        # torch itself is imported by the first model that needs it (the onnxruntime engine does
        # not); here the worker only learns what `auto` means on this machine.
        try:
            if self._on_ready:
                self._on_ready()
        except Exception:  # noqa: BLE001
            log.exception("Could not detect the device")
