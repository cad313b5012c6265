"""Fair queues for the daemon's threads: one client's flood cannot starve another client.

Jobs wait in classes served in a fixed order (priorities for model work, size lanes for tokenizer
work). Inside a class every client has its own FIFO, and the consumer takes from the clients in
turn, so a script with 500 queued requests and an editor with one are served alternately. Each
client may hold a bounded number of queued jobs; past that its next job gets Busy at once. The
transports keep each client's requests in progress within that bound (transport/intake.py: the
client is slowed down, not refused), so only a batch larger than it gets here.

Pure threading, no torch: the model worker and the side pool both sit on top of it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .errors import Busy

PRIORITIES = ("interactive", "normal", "batch")  # best first
DAEMON = None  # the client key of the daemon's own jobs (preload, idle unload)
RECHECK_S = 0.1  # how often a consumer looks again while every queued job is held back


@dataclass(eq=False)
class Job:
    fn: Callable[[], Any]
    label: str
    client: Hashable | None = DAEMON  # the connection that asked
    kind: str = "normal"  # the class it waits in: a priority, or a lane
    cost: int = 0  # characters of input, for size lanes
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.monotonic)


class FairQueue:
    def __init__(self, kinds: Iterable[str], max_per_client: int, max_total: int | None = None,
                 setting: str = "daemon.max_client_queue", total_setting: str = "daemon.max_queue"):
        self.kinds = tuple(kinds)
        self.max_per_client = max_per_client
        self.max_total = max_total
        self._settings = (setting, total_setting)  # named in Busy messages
        self._cond = threading.Condition()
        self._waiting: dict[str, OrderedDict[Hashable | None, deque[Job]]] = {k: OrderedDict() for k in self.kinds}
        self._per_client: dict[Hashable | None, int] = {}
        self._total = 0
        self._closed = False

    # -- producers -----------------------------------------------------------------------------

    def put(self, job: Job) -> None:
        """Queue `job`, or raise Busy if its client (or the whole queue) is full."""
        with self._cond:
            mine = self._per_client.get(job.client, 0)
            if mine >= self.max_per_client:
                raise Busy(f"{mine} requests from this client are queued ({self._settings[0]}); "
                           "retry later", {"queue_depth": self._total, "client_queue_depth": mine})
            # A full queue still admits a client with nothing waiting: one flood cannot lock
            # everyone else out.
            if self.max_total is not None and self._total >= self.max_total and mine > 0:
                raise Busy(f"{self._total} requests are queued ({self._settings[1]}); retry later",
                           {"queue_depth": self._total, "client_queue_depth": mine})
            self._waiting[job.kind].setdefault(job.client, deque()).append(job)
            self._per_client[job.client] = mine + 1
            self._total += 1
            self._cond.notify_all()
        # A job cancelled while it waits leaves the queue at once (and frees its client's slot).
        job.future.add_done_callback(partial(self._discard_if_cancelled, job))

    def _discard_if_cancelled(self, job: Job, future: Future[Any]) -> None:
        if future.cancelled():
            self.discard(job)

    def discard(self, job: Job) -> None:
        with self._cond:
            queue = self._waiting[job.kind].get(job.client)
            if queue is None or job not in queue:
                return
            queue.remove(job)
            if not queue:
                del self._waiting[job.kind][job.client]
            self._count_out(job)

    def close(self) -> None:
        """Wake every consumer; `take` returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        """Sleep until a job is queued (or anything else wakes consumers), at most `timeout` s."""
        with self._cond:
            if not self._closed:
                self._cond.wait(max(0.0, timeout))

    def kick(self) -> None:
        """Something that held jobs back changed (a client caught up): look again now."""
        with self._cond:
            self._cond.notify_all()

    # -- consumers -----------------------------------------------------------------------------

    def take(self, kinds: Iterable[str] | None = None,
             ready: Callable[[Job], bool] | None = None) -> Job | None:
        """The next job, waiting for one: best class first, clients in turn. None once closed.

        `kinds` limits the classes this consumer serves; `ready` holds back jobs that must not
        start yet (their client is not reading its replies).
        """
        wanted = self.kinds if kinds is None else tuple(k for k in self.kinds if k in set(kinds))
        with self._cond:
            while not self._closed:
                job = self._pick(wanted, ready)
                if job is not None:
                    return job
                held_back = any(self._waiting[k] for k in wanted)
                self._cond.wait(RECHECK_S if held_back else None)
            return None

    def take_nowait(self, ready: Callable[[Job], bool] | None = None) -> Job | None:
        """The next job that `ready` accepts, if one waits now (best class first, clients in turn)."""
        with self._cond:
            return None if self._closed else self._pick(self.kinds, ready)

    def _pick(self, kinds: tuple[str, ...], ready: Callable[[Job], bool] | None) -> Job | None:
        for kind in kinds:
            clients = self._waiting[kind]
            for client, queue in list(clients.items()):
                job = queue[0]
                if ready is not None and not ready(job):
                    continue
                queue.popleft()
                # This client goes to the back of the line.
                del clients[client]
                if queue:
                    clients[client] = queue
                self._count_out(job)
                return job
        return None

    def _count_out(self, job: Job) -> None:
        self._total -= 1
        left = self._per_client[job.client] - 1
        if left:
            self._per_client[job.client] = left
        else:
            del self._per_client[job.client]

    # -- introspection -------------------------------------------------------------------------

    def depth(self, client: Any = ...) -> int:
        """Jobs waiting: all of them, or one client's."""
        with self._cond:
            if client is ...:
                return self._total
            return self._per_client.get(client, 0)

    def depths(self) -> dict[str, int]:
        """Jobs waiting in each class."""
        with self._cond:
            return {k: sum(len(q) for q in self._waiting[k].values()) for k in self.kinds}
