"""Backpressure in-process: when a connection pauses, resumes, and gives up on its client."""

from __future__ import annotations

import asyncio

from ember.transport.flow import Backpressure


class Pipe:
    """A client's side of a connection: bytes handed over, bytes it has read."""

    def __init__(self):
        self.handed = 0
        self.read = 0

    def unread(self) -> int:
        return self.handed - self.read


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def flow_for(pipe: Pipe, stalls: list[str], limit: int = 1000, timeout: float = 0.3) -> Backpressure:
    return Backpressure(asyncio.get_running_loop(), limit, timeout, unread=pipe.unread,
                        taken=lambda: pipe.read, on_stall=stalls.append)


def test_under_the_limit_nothing_changes():
    async def scenario():
        pipe, stalls = Pipe(), []
        flow = flow_for(pipe, stalls)
        pipe.handed = 1000
        flow.wrote()
        assert flow.readable.is_set() and not flow.congested

    run(scenario)


def test_over_the_limit_it_pauses_and_resumes_below_half():
    async def scenario():
        pipe, stalls = Pipe(), []
        flow = flow_for(pipe, stalls, timeout=0)  # never give up
        pipe.handed = 1500
        flow.wrote()
        assert flow.congested and not flow.readable.is_set()
        pipe.read = 900  # 600 unread: still over half the limit
        await asyncio.sleep(0.2)
        assert flow.congested
        pipe.read = 1100  # 400 unread
        await flow.readable.wait()
        assert not flow.congested and stalls == []

    run(scenario)


def test_a_client_that_reads_nothing_is_given_up_on():
    async def scenario():
        pipe, stalls = Pipe(), []
        done = asyncio.Event()
        flow = Backpressure(asyncio.get_running_loop(), 1000, 0.3, unread=pipe.unread,
                            taken=lambda: pipe.read, on_stall=lambda why: (stalls.append(why), done.set()))
        pipe.handed = 5_000_000
        flow.wrote()
        await done.wait()
        assert flow.stalled and "read none of its replies for 0.3 s (5.0 MB unread)" in stalls[0]

    run(scenario)


def test_a_slow_reader_that_keeps_reading_is_not_stuck():
    async def scenario():
        pipe, stalls = Pipe(), []
        flow = flow_for(pipe, stalls, timeout=0.3)
        pipe.handed = 100_000
        flow.wrote()
        for _ in range(12):  # 1.2 s of slow progress, four times the stall timeout
            await asyncio.sleep(0.1)
            pipe.read += 100
        assert stalls == [] and flow.congested

    run(scenario)
