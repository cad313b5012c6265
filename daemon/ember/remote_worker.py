"""The worker of a remote model's server: its requests run on their own threads, up to the
server's `max_concurrent` at once, so a dead or slow server never holds up a device's worker (local
models, their loads) or `tokenize`, and one server's requests never wait behind another's.

The same small API as worker.Worker (submit, call, stop, queue_depth, jobs_done), so the service
schedules either kind alike. The threads mostly wait on the network; the server does the work.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .errors import Busy


class RemoteWorker:
    def __init__(self, name: str, max_concurrent: int, max_queue: int):
        self.device = name  # e.g. "remote http://gpu-box:8080/v1"
        self.threads = max_concurrent
        self.max_queue = max_queue
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="ember-remote")
        self._lock = threading.Lock()
        self._waiting: set[Future] = set()
        self._running: dict[int, str] = {}  # job id -> label
        self._ids = itertools.count(1)
        self.jobs_done = 0

    @property
    def queue_depth(self) -> int:
        """Jobs waiting for a free slot (not counting cancelled ones)."""
        with self._lock:
            return sum(1 for f in self._waiting if not f.cancelled())

    @property
    def running(self) -> None:
        return None  # several run at once: see running_labels

    @property
    def running_labels(self) -> list[str]:
        with self._lock:
            return list(self._running.values())

    def submit(self, fn: Callable[[], Any], label: str, client: Any = None,
               priority: str = "normal") -> Future:
        """Queue `fn` for this server. `client` and `priority` are the device worker's: a server
        takes up to max_concurrent requests at once and schedules them itself."""
        depth = self.queue_depth
        if depth >= self.max_queue:
            raise Busy(f"{depth} requests wait for {self.device} (daemon.max_queue); retry later",
                       {"queue_depth": depth})
        job_id = next(self._ids)
        holder: list[Future] = []

        def run() -> Any:
            with self._lock:
                self._waiting.discard(holder[0])
                self._running[job_id] = label
            try:
                return fn()
            finally:
                with self._lock:
                    del self._running[job_id]
                    self.jobs_done += 1

        with self._lock:  # registered before it can start, so `run` always finds it
            future = self._pool.submit(run)
            holder.append(future)
            self._waiting.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._waiting.discard(future)  # cancelled while waiting

    def call(self, fn: Callable[[], Any], label: str) -> Any:
        return self.submit(fn, label).result()

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
