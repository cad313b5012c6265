"""Fair queues, the model worker and the side pool, in-process: who runs next, and who gets Busy.

Jobs block on events the test controls, so every ordering below is deterministic.
"""

from __future__ import annotations

import threading
import time

import pytest

from ember.errors import Busy, RequestCancelled
from ember.scheduling import PRIORITIES, FairQueue, Job
from ember.sidepool import SMALL_COST, SidePool
from ember.tasks.base import PREFILL_CHUNK, RunContext
from ember.worker import MAX_NESTING, SHORT_PREFILL_CHUNK, Worker

WAIT = 30  # seconds: only a hang would take this long


def job(client, kind="normal", label=""):
    return Job(lambda: None, label or f"{client}", client=client, kind=kind)


def drain(q: FairQueue, **kw) -> list[str]:
    out = []
    while q.depth():
        out.append(q.take(**kw).label)
    return out


# -- FairQueue -----------------------------------------------------------------------------------


def test_clients_take_turns_and_each_client_keeps_its_order():
    q = FairQueue(PRIORITIES, max_per_client=100)
    for i in range(4):
        q.put(job("script", label=f"s{i}"))
    q.put(job("editor", label="e0"))
    q.put(job("editor", label="e1"))
    assert drain(q) == ["s0", "e0", "s1", "e1", "s2", "s3"]


def test_a_better_priority_goes_first_whoever_sent_it():
    q = FairQueue(PRIORITIES, max_per_client=100)
    q.put(job("script", "batch", "b0"))
    q.put(job("script", "normal", "n0"))
    q.put(job("editor", "interactive", "i0"))
    q.put(job("script", "batch", "b1"))
    assert drain(q) == ["i0", "n0", "b0", "b1"]


def test_a_client_over_its_cap_gets_busy_and_others_do_not():
    q = FairQueue(PRIORITIES, max_per_client=2)
    q.put(job("script"))
    q.put(job("script"))
    with pytest.raises(Busy) as err:
        q.put(job("script"))
    assert err.value.data == {"queue_depth": 2, "client_queue_depth": 2}
    assert "max_client_queue" in err.value.message
    q.put(job("editor"))
    assert q.depth("script") == 2 and q.depth("editor") == 1


def test_a_full_queue_still_admits_a_client_with_nothing_waiting():
    q = FairQueue(PRIORITIES, max_per_client=10, max_total=3)
    for _ in range(3):
        q.put(job("script"))
    with pytest.raises(Busy) as err:
        q.put(job("script"))
    assert "max_queue" in err.value.message
    q.put(job("editor"))  # its first request gets in
    with pytest.raises(Busy):
        q.put(job("editor"))


def test_a_cancelled_job_leaves_the_queue_and_frees_its_slot():
    q = FairQueue(PRIORITIES, max_per_client=1)
    first = job("editor", label="first")
    q.put(first)
    first.future.cancel()
    assert q.depth() == 0
    q.put(job("editor", label="second"))
    assert drain(q) == ["second"]


def test_jobs_held_back_wait_while_others_run():
    q = FairQueue(PRIORITIES, max_per_client=10)
    q.put(job("stuck", label="s0"))
    q.put(job("reader", label="r0"))
    ready = {"stuck": False, "reader": True}
    pick = lambda j: ready[j.client]  # noqa: E731
    assert q.take(ready=pick).label == "r0"
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(q.take(ready=pick).label))
    t.start()
    ready["stuck"] = True  # the client caught up: a waiting consumer notices on its next look
    t.join(WAIT)
    assert got == ["s0"]


def test_close_wakes_a_waiting_consumer():
    q = FairQueue(PRIORITIES, max_per_client=1)
    got: list = []
    t = threading.Thread(target=lambda: got.append(q.take()))
    t.start()
    q.close()
    t.join(WAIT)
    assert got == [None]


# -- the model worker ----------------------------------------------------------------------------


@pytest.fixture
def worker():
    w = Worker("test", threads=1, max_queue=64, max_client_queue=64)
    yield w
    w.stop()


def blocker(worker: Worker) -> threading.Event:
    """Occupy the worker until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(WAIT)

    worker.submit(hold, "hold", client="other")
    assert started.wait(WAIT)
    return release


def test_the_worker_serves_an_editor_between_a_scripts_jobs(worker):
    release = blocker(worker)
    order: list[str] = []
    futures = [worker.submit(lambda i=i: order.append(f"classify {i}"), "classify", client="script")
               for i in range(5)]
    futures.append(worker.submit(lambda: order.append("summarize"), "summarize", client="editor"))
    release.set()
    for f in futures:
        f.result(WAIT)
    assert order.index("summarize") == 1  # after one of the script's, not after all five


def test_interactive_work_jumps_ahead_of_a_scripts_queue(worker):
    release = blocker(worker)
    order: list[str] = []
    futures = [worker.submit(lambda i=i: order.append(f"classify {i}"), "classify", client="script")
               for i in range(5)]
    futures.append(worker.submit(lambda: order.append("complete"), "complete", client="editor",
                                 priority="interactive"))
    release.set()
    for f in futures:
        f.result(WAIT)
    assert order[0] == "complete"


def test_a_cancelled_queued_job_never_runs(worker):
    release = blocker(worker)
    ran: list[str] = []
    doomed = worker.submit(lambda: ran.append("doomed"), "doomed", client="editor")
    kept = worker.submit(lambda: ran.append("kept"), "kept", client="editor")
    assert doomed.cancel()
    assert worker.queue_depth == 1
    release.set()
    kept.result(WAIT)
    assert ran == ["kept"]


def test_worker_errors_reach_the_caller(worker):
    def boom():
        raise ValueError("no")

    with pytest.raises(ValueError):
        worker.submit(boom, "boom").result(WAIT)
    assert worker.submit(lambda: 7, "after").result(WAIT) == 7


# -- between the steps of a running job (worker.between_steps) ------------------------------------


def stepping(worker: Worker, order: list[str], name: str, until: threading.Event, steps: int = 2000):
    """A job that runs `steps` model steps (or until `until` is set), each between_steps() as the
    decode loop calls it; it says when it starts and ends."""
    def run():
        ctx = RunContext(steps=worker)
        order.append(f"{name} starts")
        for _ in range(steps):
            if until.is_set():
                break
            ctx.between_steps()
            time.sleep(0.002)  # a forward pass
        order.append(f"{name} ends")

    return run


BETWEEN = ["first starts", "second", "first ends"]
AFTER = ["first starts", "first ends", "second"]


@pytest.mark.parametrize(("first", "second", "expected"), [
    (("script", "batch"), ("editor", "interactive"), BETWEEN),  # a keystroke beside a long summary
    (("editor 1", "interactive"), ("editor 2", "interactive"), BETWEEN),  # another editor beside a cold prefill
    (("editor", "interactive"), ("editor", "interactive"), AFTER),  # a client's own next job waits
    (("editor", "interactive"), ("script", "batch"), AFTER),  # batch never before interactive
], ids=["interactive-beside-batch", "other-client-same-class", "same-client", "batch-beside-interactive"])
def test_what_runs_between_the_steps_of_a_running_job(worker, first, second, expected):
    """`first` takes 300 steps (0.6 s, past SLICE_S) unless `second` ran meanwhile."""
    order: list[str] = []
    ran = threading.Event()
    running = worker.submit(stepping(worker, order, "first", ran, steps=300), "first", client=first[0],
                            priority=first[1])
    wait_for_entry(order, "first starts")
    arriving = worker.submit(lambda: (order.append("second"), ran.set()), "second", client=second[0],
                             priority=second[1])
    arriving.result(WAIT)
    running.result(WAIT)
    assert order == expected
    assert worker.preemptions == (1 if expected == BETWEEN else 0)


def test_jobs_nest_at_most_max_nesting_deep(worker):
    order: list[str] = []
    depths: list[int] = []
    stop = threading.Event()

    def step_and_measure(name: str):
        inner = stepping(worker, order, name, stop, steps=150)

        def run():
            depths.append(len(worker.running))
            inner()
        return run

    # each class goes before the one running, and interactive clients after a slice each
    jobs = [worker.submit(step_and_measure(kind), kind, client=kind, priority=kind)
            for kind in ("batch", "normal", "interactive")]
    jobs += [worker.submit(step_and_measure(f"editor {i}"), "complete", client=f"editor {i}", priority="interactive")
             for i in range(MAX_NESTING)]
    for f in jobs:
        f.result(WAIT)
    assert max(depths) == MAX_NESTING
    assert worker.running == []


def test_status_names_every_running_job_when_one_waits_inside_another(worker):
    seen: list[list[str]] = []
    done = threading.Event()
    order: list[str] = []
    outer = worker.submit(stepping(worker, order, "outer", done), "summarize 1", client="script", priority="batch")
    wait_for_entry(order, "outer starts")
    inner = worker.submit(lambda: (seen.append([j.label for j in worker.running]), done.set()), "complete 2",
                          client="editor", priority="interactive")
    inner.result(WAIT)
    outer.result(WAIT)
    assert seen == [["summarize 1", "complete 2"]]


def test_while_an_editor_types_other_work_prefills_in_short_chunks(worker):
    chunks: list[int] = []
    worker.submit(lambda: chunks.append(RunContext(steps=worker).prefill_chunk()), "summarize",
                  client="script", priority="batch").result(WAIT)
    worker.submit(lambda: None, "complete", client="editor", priority="interactive").result(WAIT)
    worker.submit(lambda: chunks.append(RunContext(steps=worker).prefill_chunk()), "summarize",
                  client="script", priority="batch").result(WAIT)
    worker.submit(lambda: chunks.append(RunContext(steps=worker).prefill_chunk()), "complete",
                  client="editor", priority="interactive").result(WAIT)
    assert chunks == [PREFILL_CHUNK, SHORT_PREFILL_CHUNK, PREFILL_CHUNK]  # an editor alone runs whole chunks


def test_a_batch_job_waits_between_its_steps_while_an_editor_types(worker, monkeypatch):
    monkeypatch.setattr("ember.worker.TYPING_GRACE_S", 60.0)  # the editor counts as typing throughout
    monkeypatch.setattr("ember.worker.MAX_HOLD_S", 3.0)
    worker.submit(lambda: None, "complete", client="editor", priority="interactive").result(WAIT)
    order: list[str] = []

    def summary():
        ctx = RunContext(steps=worker)
        order.append("summary step 1")
        ctx.between_steps()  # held: the editor typed a moment ago
        order.append("summary step 2")

    batch = worker.submit(summary, "summarize", client="script", priority="batch")
    wait_for_entry(order, "summary step 1")
    worker.submit(lambda: order.append("complete"), "complete", client="editor", priority="interactive").result(WAIT)
    batch.result(WAIT)
    assert order == ["summary step 1", "complete", "summary step 2"]  # went on after MAX_HOLD_S
    assert worker.holds == 1


def test_a_normal_job_is_not_held_and_a_held_batch_job_stops_when_cancelled(worker, monkeypatch):
    monkeypatch.setattr("ember.worker.TYPING_GRACE_S", 600.0)
    monkeypatch.setattr("ember.worker.MAX_HOLD_S", 600.0)
    worker.submit(lambda: None, "complete", client="editor", priority="interactive").result(WAIT)
    worker.submit(lambda: RunContext(steps=worker).between_steps(), "summarize", client="editor",
                  priority="normal").result(WAIT)
    assert worker.holds == 0
    ctx = RunContext(steps=worker)
    held = worker.submit(ctx.between_steps, "summarize", client="script", priority="batch")
    while worker.holds == 0:
        time.sleep(0.01)
    ctx.cancelled.set()
    with pytest.raises(RequestCancelled):
        held.result(WAIT)


def wait_for_entry(order: list[str], entry: str) -> None:
    deadline = time.monotonic() + WAIT
    while entry not in order:
        assert time.monotonic() < deadline, f"{entry!r} never came: {order}"
        time.sleep(0.001)


# -- the side pool -------------------------------------------------------------------------------


def test_a_small_text_is_not_held_up_by_large_ones():
    pool = SidePool(max_per_client=64)
    release = threading.Event()
    try:
        large = [pool.submit(release.wait, WAIT, client="script", cost=SMALL_COST * 10) for _ in range(4)]
        small = pool.submit(lambda: "hello world", client="editor", cost=11)
        assert small.result(WAIT) == "hello world"
        assert not any(f.done() for f in large)
    finally:
        release.set()
        pool.shutdown()


def test_a_clients_own_small_request_passes_its_large_ones():
    pool = SidePool(max_per_client=64)
    release = threading.Event()
    try:
        large = [pool.submit(release.wait, WAIT, client="editor", cost=SMALL_COST + 1) for _ in range(3)]
        assert pool.submit(lambda: 1, client="editor", cost=5).result(WAIT) == 1
        assert not any(f.done() for f in large)
    finally:
        release.set()
        pool.shutdown()


def test_side_work_over_a_clients_cap_is_busy():
    pool = SidePool(max_per_client=2)
    release = threading.Event()
    started = threading.Event()

    def hold():
        started.set()
        release.wait(WAIT)

    try:
        pool.submit(hold, client="script", cost=SMALL_COST * 2)
        assert started.wait(WAIT)  # it runs on the one thread that takes large jobs
        busy = 0
        for _ in range(7):
            try:
                pool.submit(release.wait, WAIT, client="script", cost=SMALL_COST * 2)
            except Busy:
                busy += 1
        assert busy == 5  # two wait, the rest are turned away
        assert pool.submit(lambda: "ok", client="editor", cost=1).result(WAIT) == "ok"
    finally:
        release.set()
        pool.shutdown()


def test_no_side_work_starts_for_a_client_that_is_not_reading():
    congested = {"slow": True}
    pool = SidePool(max_per_client=8, blocked=lambda client: congested.get(client, False))
    try:
        held = pool.submit(lambda: "late", client="slow", cost=1)
        assert pool.submit(lambda: "now", client="fast", cost=1).result(WAIT) == "now"
        assert not held.done()
        congested["slow"] = False
        assert held.result(WAIT) == "late"
    finally:
        pool.shutdown()
