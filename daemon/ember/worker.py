"""The model worker: one thread per device that runs model work in order of arrival.

The event loop never runs model code. It submits jobs here and awaits their futures, so `tokenize`,
`daemon/status` and `$/cancelRequest` stay instant while a long generation runs. A queued job whose
future was cancelled is skipped; a running one stops cooperatively through its RunContext.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .errors import Busy

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    fn: Callable[[], Any]
    label: str
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.monotonic)


class Worker:
    def __init__(self, device: str, threads: int, max_queue: int,
                 on_ready: Callable[[], None] | None = None):
        self.device = device
        self._on_ready = on_ready  # called on the worker thread once torch is imported
        self.threads = threads
        self.max_queue = max_queue
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending: set[Job] = set()
        self._lock = threading.Lock()
        self.running: Job | None = None
        self.jobs_done = 0
        self._thread = threading.Thread(target=self._run, name=f"ember-worker-{device}", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Jobs waiting (not counting the running one, nor cancelled ones)."""
        with self._lock:
            return sum(1 for job in self._pending if not job.future.cancelled())

    def submit(self, fn: Callable[[], Any], label: str) -> Future:
        depth = self.queue_depth
        if depth >= self.max_queue:
            raise Busy(f"{depth} requests are queued (daemon.max_queue); retry later",
                       {"queue_depth": depth})
        job = Job(fn, label)
        with self._lock:
            self._pending.add(job)
        self._queue.put(job)
        return job.future

    def call(self, fn: Callable[[], Any], label: str) -> Any:
        """Run `fn` on this worker and wait (for callers that are not on the event loop)."""
        return self.submit(fn, label).result()

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        self._configure_torch()
        while (job := self._queue.get()) is not None:
            with self._lock:
                self._pending.discard(job)
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
