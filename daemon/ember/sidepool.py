"""Side work (tokenizer loads, tokenize, detokenize) off the event loop and off the model worker.

Two lanes by size, so that large texts never hold up small ones: one thread serves small jobs only,
the other serves small jobs first and large ones when there are none. Within a lane clients take
turns (FairQueue), each client may queue `max_per_client` jobs before Busy (its transport's intake
keeps it within that), and a client that is not reading its replies gets no new work started
until it catches up: its output stays bounded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

from .scheduling import DAEMON, FairQueue, Job

log = logging.getLogger(__name__)

SMALL, LARGE = "small", "large"
SMALL_COST = 16_384  # characters: a status bar's or a selection's text; above it, the large lane


class SidePool:
    def __init__(self, max_per_client: int, blocked: Callable[[Hashable | None], bool] | None = None):
        self._queue = FairQueue((SMALL, LARGE), max_per_client)
        self._blocked = blocked or (lambda _client: False)
        self._threads = [
            threading.Thread(target=self._run, args=((SMALL,),), name="ember-side-small", daemon=True),
            threading.Thread(target=self._run, args=((SMALL, LARGE),), name="ember-side", daemon=True),
        ]
        for t in self._threads:
            t.start()

    @property
    def queue_depth(self) -> int:
        return self._queue.depth()

    def submit(self, fn: Callable[..., Any], *args: Any, client: Hashable | None = DAEMON,
               cost: int = 0) -> Future:
        """Queue `fn(*args)`; `cost` is its input size in characters. Raises Busy when full."""
        lane = SMALL if cost <= SMALL_COST else LARGE
        job = Job(lambda: fn(*args), getattr(fn, "__name__", "side job"), client=client, kind=lane, cost=cost)
        self._queue.put(job)
        return job.future

    def shutdown(self) -> None:
        self._queue.close()

    def _ready(self, job: Job) -> bool:
        return job.client is DAEMON or not self._blocked(job.client)

    def _run(self, lanes: tuple[str, ...]) -> None:
        while (job := self._queue.take(lanes, self._ready)) is not None:
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                result = job.fn()
            except BaseException as exc:  # noqa: BLE001 - the future carries it to the caller
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
