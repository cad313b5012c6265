"""The model worker: one thread per device that runs model work, fairly across clients.

The event loop never runs model code. It submits jobs here and awaits their futures, so `tokenize`,
`daemon/status` and `$/cancelRequest` stay instant while a long generation runs. Jobs wait in a
FairQueue: interactive work (an editor's `complete`) before normal, normal before batch, and
clients in turn within each, so one script's 500 `classify` calls cannot starve an editor. A
queued job whose future was cancelled leaves the queue at once; a running one stops cooperatively
through its RunContext.

Scheduling is per step, not only per job: between two forward passes the running job calls
`between_steps`, and a waiting job that should not wait for the rest of it runs there, to its end,
before the first one goes on. It is nested on this thread, so everything stays single-threaded.
What goes first: interactive work before a normal or batch job at once; and, within one class,
another client's job once the running one has had `SLICE_S` (an editor's cold prefill does not
hold up another editor's keystroke for a second). While interactive work is about, other jobs
prefill in short chunks, so the step an editor may wait for stays short, and batch jobs wait
between their steps until the typist pauses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

from .scheduling import DAEMON, PRIORITIES, FairQueue, Job
from .tasks.base import PREFILL_CHUNK

log = logging.getLogger(__name__)

# Within one class, the running job keeps going this long before another client's job may run
# between its steps: short enough that a cold prefill never holds a keystroke up for long, long
# enough that two warm completions (about 100 ms each on 2 cores) mostly run whole, one after the
# other, which gives both their first token sooner than alternating step by step.
SLICE_S = 0.1
# Jobs nested at once (each holds its KV sequence while it waits): beyond it, jobs wait their turn.
MAX_NESTING = 4
# Prompt tokens per forward: PREFILL_CHUNK when no one is waiting, short ones while interactive
# work was seen lately, so that an editor waits for at most a short step of someone else's prefill
# (16 tokens: 60 ms at the start of a prompt, 150 ms 3,000 tokens in, on 2 cores).
SHORT_PREFILL_CHUNK = 16
INTERACTIVE_RECENT_S = 2.0
# A batch job takes no step within this long of an editor's last request (the next keystroke is
# likely to come), and waits at most MAX_HOLD_S at a time, so it still moves while someone types.
TYPING_GRACE_S = 0.4
MAX_HOLD_S = 5.0
HOLD_POLL_S = 0.05


class Worker:
    def __init__(self, device: str, threads: int, max_queue: int, max_client_queue: int | None = None,
                 on_ready: Callable[[], None] | None = None):
        self.device = device
        self._on_ready = on_ready  # called on the worker thread once torch is imported
        self.threads = threads
        self.max_queue = max_queue
        self._queue = FairQueue(PRIORITIES, max_per_client=max_client_queue or max_queue,
                                max_total=max_queue)
        self._stack: list[tuple[Job, float]] = []  # running jobs, outermost first, and when each (re)started
        self._interactive_seen: dict[Hashable | None, float] = {}  # client -> its last interactive job
        self.jobs_done = 0
        self.preemptions = 0  # jobs run between another's steps
        self.holds = 0  # times a batch job waited for a typist to pause
        self._thread = threading.Thread(target=self._run, name=f"ember-worker-{device}", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Jobs waiting (not counting the running one; cancelled ones leave at once)."""
        return self._queue.depth()

    @property
    def running(self) -> list[Job]:
        """The jobs running now: the one at work last, those it interrupted before it."""
        return [job for job, _ in list(self._stack)]

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
            self._execute(job)

    def _execute(self, job: Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return  # cancelled while queued
        now = time.monotonic()
        if job.kind == "interactive":
            self._interactive_seen = {c: at for c, at in self._interactive_seen.items()
                                      if now - at < INTERACTIVE_RECENT_S}
            self._interactive_seen[job.client] = now
        self._stack.append((job, now))
        result, error = None, None
        try:
            result = job.fn()
        except BaseException as exc:  # noqa: BLE001 - the future carries it to the caller
            error = exc
        # Clear our state before the caller hears back, so status never shows a finished job.
        self._stack.pop()
        if job.kind == "interactive":
            self._interactive_seen[job.client] = time.monotonic()
        self.jobs_done += 1
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    # -- between the steps of the running job (called on this thread, by its RunContext) ----------

    def between_steps(self, cancelled: threading.Event | None = None) -> None:
        """Run the waiting jobs that should not wait for the rest of the running one; a batch job
        also waits here while an editor is typing (until `cancelled` is set)."""
        if threading.current_thread() is not self._thread or not self._stack:
            return  # a task run outside the worker (tests, benchmarks): nothing to interleave
        held_since = None
        while True:
            current, since = self._stack[-1]
            job = None
            if len(self._stack) < MAX_NESTING:
                job = self._queue.take_nowait(self._goes_before(current, since))
            if job is not None:
                self.preemptions += 1
                self._execute(job)
                self._stack[-1] = (current, time.monotonic())  # its slice starts again
                continue
            if current.kind != "batch":
                return
            # Batch work steps aside while an editor types: even one of its forward passes, at
            # 30-200 ms with a long prompt on 2 cores, would delay the next keystroke. It goes on
            # when the typist pauses, and at least once every MAX_HOLD_S.
            now = time.monotonic()
            quiet_at = self._typing_until()
            if (quiet_at <= now or (held_since is not None and now - held_since >= MAX_HOLD_S)
                    or (cancelled is not None and cancelled.is_set())):
                return
            if held_since is None:
                held_since = now
                self.holds += 1
            # until a job comes, the typist pauses, or (looked at every HOLD_POLL_S) it is cancelled
            self._queue.wait(min(quiet_at, held_since + MAX_HOLD_S, now + HOLD_POLL_S) - now)

    def _typing_until(self) -> float:
        """When the editors count as paused: TYPING_GRACE_S after the last interactive job."""
        return max(self._interactive_seen.values(), default=0.0) + TYPING_GRACE_S

    def _goes_before(self, current: Job, since: float) -> Callable[[Job], bool]:
        rank = PRIORITIES.index
        sliced = time.monotonic() - since >= SLICE_S

        def before(job: Job) -> bool:
            if rank(job.kind) != rank(current.kind):
                return rank(job.kind) < rank(current.kind)
            return sliced and job.client != current.client

        return before

    def prefill_chunk(self) -> int:
        """Prompt tokens the running job should run in its next forward."""
        if not self._stack:
            return PREFILL_CHUNK
        current, _ = self._stack[-1]
        now = time.monotonic()
        # interactive work of another client than the running job's, lately
        others = [c for c, at in self._interactive_seen.items()
                  if now - at < INTERACTIVE_RECENT_S and not (current.kind == "interactive" and c == current.client)]
        return SHORT_PREFILL_CHUNK if others else PREFILL_CHUNK

    def _configure_torch(self) -> None:
        # torch itself is imported by the first model that needs it (the onnxruntime engine does
        # not); here the worker only learns what `auto` means on this machine.
        try:
            if self._on_ready:
                self._on_ready()
        except Exception:  # noqa: BLE001
            log.exception("Could not detect the device")
