"""Backpressure: a bound on the replies a client has not read yet.

Every connection counts the bytes it has handed to its client but the client has not taken. Past
`limit` the connection is congested: it stops reading that client's requests (`readable` is clear)
and the side pool starts no new work for it, so the daemon's memory for one client stays bounded
however many requests it sends without reading. Below half the limit it reads again. A client that
takes no bytes at all for `stall_timeout_s` while congested is stuck: `on_stall` is called with a
reason, and the transport disconnects it and cancels its requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often a congested connection looks at its client's progress


class Backpressure:
    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, stall_timeout_s: float,
                 unread: Callable[[], int], taken: Callable[[], int], on_stall: Callable[[str], None],
                 name: str = "the client"):
        self.loop = loop
        self.name = name
        self.limit = limit
        self.stall_timeout_s = stall_timeout_s
        self._unread = unread  # bytes handed over but not yet read by the client
        self._taken = taken  # bytes the client has read so far (grows while it makes progress)
        self._on_stall = on_stall
        self.readable = asyncio.Event()  # clear while congested: do not read the client's requests
        self.readable.set()
        self.congested = False
        self.stalled = False
        self._progress_at = 0.0
        self._last_taken = 0
        self.pauses = 0

    @property
    def unread(self) -> int:
        return self._unread()

    def wrote(self) -> None:
        """Call after handing bytes to the client (on the loop's thread)."""
        if self.congested or self.stalled or self._unread() <= self.limit:
            return
        self.congested = True
        self.readable.clear()
        self.pauses += 1
        # The first pause is news; a slow reader of big replies may pause often after that.
        log.log(logging.INFO if self.pauses == 1 else logging.DEBUG,
                "%s is not reading its replies (%.1f MB unread): pausing its requests",
                self.name, self._unread() / 1e6)
        self._progress_at = time.monotonic()
        self._last_taken = self._taken()
        self.loop.call_later(POLL_S, self._poll)

    def _poll(self) -> None:
        if self.stalled:
            return
        if self._unread() <= self.limit // 2:
            self.congested = False
            self.readable.set()
            log.debug("%s caught up: reading its requests again", self.name)
            return
        now = time.monotonic()
        taken = self._taken()
        if taken != self._last_taken:
            self._last_taken, self._progress_at = taken, now
        elif self.stall_timeout_s > 0 and now - self._progress_at >= self.stall_timeout_s:
            self.stalled = True
            self._on_stall(f"it read none of its replies for {self.stall_timeout_s:g} s "
                           f"({self._unread() / 1e6:.1f} MB unread)")
            return
        self.loop.call_later(POLL_S, self._poll)
