"""Intake: a client that sends requests faster than Ember answers them is slowed down, not refused.

Each connection lets a client have `daemon.max_client_queue` requests in progress (started, not yet
answered). Messages read past that wait here, in the order they came, and start as answers free
slots; once `READ_AHEAD_MESSAGES` or `READ_AHEAD_BYTES` of them wait, the transport stops reading
the client's stream (stdio or socket) until they drain. A script that pipes 1,000 requests gets
1,000 real answers, and the daemon holds a bounded number of its messages whatever it sends.

The connections of one daemon form an IntakeGroup: together they may have `daemon.max_queue` model
requests in progress (the device queue's own bound). Past it, a client with model work in progress
waits, while one with none still starts (as scheduling.FairQueue admits it); when slots free, the
client with the fewest requests in progress goes first. Which client runs next is still the
queues' round robin (scheduling.py): the intake only decides how much of each client they hold.

Held messages keep their order, so a script's `shutdown` and `exit` still come after the requests
it sent before them. One exception: `$/cancelRequest` is read ahead and takes effect at once for a
request already started; for a request still held, it is applied right after that request starts,
so the request never runs (-32800).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from ..rpc.protocol import CANCEL, EXIT, EmberProtocol, Parsed

log = logging.getLogger(__name__)

# Held messages past which the transport stops reading the client: a bound on what a client that
# pipes without waiting costs us (parsed requests are a few times their size in bytes).
READ_AHEAD_MESSAGES = 256
READ_AHEAD_BYTES = 1 << 20
# Methods that queue no model work (answered on the loop or by the side pool): not counted against
# the daemon-wide bound on model work.
NOT_MODEL_WORK = frozenset({"initialize", "shutdown", "tokenize", "detokenize", "daemon/status",
                            "models/list"})


def _requests(data: Any) -> list[dict[str, Any]]:
    """The requests (messages that will be answered and take a slot) in one message or batch."""
    items = data if isinstance(data, list) else [data]
    return [m for m in items if isinstance(m, dict) and "id" in m and isinstance(m.get("method"), str)]


def _is_exit(data: Any) -> bool:
    items = data if isinstance(data, list) else [data]
    return any(isinstance(m, dict) and m.get("method") == EXIT and "id" not in m for m in items)


def _cancelled_id(parsed: Parsed) -> tuple[bool, Any]:
    data = parsed.data
    if (isinstance(data, dict) and data.get("method") == CANCEL and "id" not in data
            and isinstance(data.get("params"), dict) and "id" in data["params"]):
        return True, data["params"]["id"]
    return False, None


def _same_id(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


class IntakeGroup:
    """The intakes of one daemon, with the bound on model work they share."""

    def __init__(self, loop: asyncio.AbstractEventLoop, per_client: int, model_total: int | None):
        self.loop = loop
        self.per_client = per_client
        self.model_total = model_total
        self.members: list[Intake] = []
        self._scheduled = False

    def model_in_flight(self) -> int:
        return sum(m.model_in_flight() for m in self.members)

    def kick(self) -> None:
        """A request was answered somewhere: start held messages (once per loop turn)."""
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        # The client with the fewest requests in progress takes a freed slot first: a script that
        # holds many cannot keep one that holds a few waiting for the daemon-wide bound.
        for member in sorted(self.members, key=lambda m: m.protocol.in_flight):
            member.drain()


class Intake:
    def __init__(self, protocol: EmberProtocol, group: IntakeGroup, name: str = "the client"):
        self.protocol = protocol
        self.group = group
        self.name = name
        self.held: deque[tuple[Parsed, int]] = deque()
        self.held_bytes = 0
        self.readable = asyncio.Event()  # clear while too much is held: do not read the client
        self.readable.set()
        self._empty = asyncio.Event()  # set while nothing is held
        self._empty.set()
        self.closed = False
        self.waits = 0  # times the client had to wait for a slot
        protocol.on_answered = group.kick
        group.members.append(self)

    # -- in ------------------------------------------------------------------------------------

    def admit(self, parsed: Parsed, size: int = 0) -> None:
        """Start one message from the client now, or hold it until a slot frees (event loop)."""
        if self.closed:
            return
        if not self.held and self._may_start(parsed):
            self._start(parsed)
            return
        is_cancel, target = _cancelled_id(parsed)
        if is_cancel:
            # At once for a request already started; and again, in order, after a held one starts.
            self.protocol.dispatch(parsed)
            if not any(_same_id(r["id"], target) for p, _ in self.held for r in _requests(p.data)):
                return
        if not self.held:
            self.waits += 1
            log.log(logging.INFO if self.waits == 1 else logging.DEBUG,
                    "%s sends requests faster than they are answered (%d in progress): its next "
                    "ones start as answers go out", self.name, self.protocol.in_flight)
        self.held.append((parsed, size))
        self.held_bytes += size
        self._empty.clear()
        self._update_readable()

    def drain(self) -> None:
        """Start held messages while slots are free (event loop)."""
        while self.held and not self.closed:
            parsed, size = self.held[0]
            if not self._may_start(parsed):
                break
            self.held.popleft()
            self.held_bytes -= size
            self._start(parsed)
        if not self.held:
            self._empty.set()
        self._update_readable()

    def _start(self, parsed: Parsed) -> None:
        self.protocol.dispatch(parsed)
        if _is_exit(parsed.data):
            self.close()  # the client is done: nothing it sent after `exit` starts

    def close(self) -> None:
        """The client is gone: drop what it sent that never started, and stop taking more."""
        self.closed = True
        self.held.clear()
        self.held_bytes = 0
        self._empty.set()
        self.readable.set()  # let a read loop waiting on us see the closed stream
        if self in self.group.members:
            self.group.members.remove(self)
        self.group.kick()  # its slots of the daemon-wide bound are free

    async def wait_done(self) -> None:
        """At EOF: return once every held message has started and every request is answered."""
        await self._empty.wait()
        await self.protocol.wait_idle()

    # -- rules ---------------------------------------------------------------------------------

    def model_in_flight(self) -> int:
        return sum(1 for method in self.protocol.methods_in_flight() if method not in NOT_MODEL_WORK)

    def _may_start(self, parsed: Parsed) -> bool:
        requests = _requests(parsed.data) if parsed.error is None else []
        if not requests:
            return True  # a notification or an error reply: takes no slot
        mine = self.protocol.in_flight
        if mine == 0:
            # A client with nothing in progress always starts (a batch larger than the bound too:
            # it is one message, so it cannot wait in parts; see PROTOCOL.md).
            return True
        if mine + len(requests) > self.group.per_client:
            return False
        model = sum(1 for r in requests if r["method"] not in NOT_MODEL_WORK)
        if model and self.group.model_total is not None and self.model_in_flight():
            return self.group.model_in_flight() + model <= self.group.model_total
        return True

    def _update_readable(self) -> None:
        if self.closed or (len(self.held) < READ_AHEAD_MESSAGES and self.held_bytes < READ_AHEAD_BYTES):
            self.readable.set()
        elif self.readable.is_set():
            self.readable.clear()
            log.debug("%s: %d messages wait to start; not reading more until they do", self.name,
                      len(self.held))
