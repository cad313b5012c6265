"""The stdio transport: protocol bytes on the real stdout, everything else on stderr.

Replies go through a writer thread, so a stalled editor (one that stops reading our stdout) never
blocks the event loop; the bytes waiting for it are bounded by Backpressure (flow.py): past the
bound we stop reading its requests, and if it takes nothing for the stall timeout we cancel its
work and close. Requests piped in faster than they are answered wait in the Intake (intake.py):
past `max_client_queue` in progress they start as answers go out, and past its read-ahead we stop
reading stdin, so the pipe itself holds the rest.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from concurrent.futures import CancelledError

from ..rpc.protocol import EmberProtocol, parse_frame
from . import framing
from .flow import Backpressure
from .framing import FrameDecoder
from .intake import Intake, IntakeGroup

log = logging.getLogger(__name__)

WRITE_CHUNK = 1 << 16  # progress is counted per chunk, so a slow reader of a big reply is not "stuck"
DEFAULT_MAX_UNREAD = 4 << 20
DEFAULT_MAX_IN_PROGRESS = 32


def claim_stdout() -> int:
    """Keep a private copy of fd 1 for the protocol and point fd 1 at stderr.

    Call before importing torch or transformers: anything a library prints, from Python or C,
    then lands in the log instead of corrupting the protocol stream.
    """
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    return protocol_fd


class StdioConnection:
    def __init__(self, protocol: EmberProtocol, in_fd: int, out_fd: int,
                 max_unread: int = DEFAULT_MAX_UNREAD, stall_timeout_s: float = 60.0,
                 max_in_progress: int = DEFAULT_MAX_IN_PROGRESS, max_model_work: int | None = None):
        self.protocol = protocol
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.decoder = FrameDecoder()
        self.max_unread = max_unread
        self.stall_timeout_s = stall_timeout_s
        self.max_in_progress = max_in_progress
        self.max_model_work = max_model_work
        self.stalled: str | None = None  # why we gave up on the client, if we did
        self._out: deque[bytes] = deque()
        self._out_cond = threading.Condition()
        self._unread = 0  # bytes queued for the writer thread, not yet in the pipe
        self._taken = 0  # bytes the pipe has accepted
        self._broken = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._eof: asyncio.Event | None = None
        self._flushed: asyncio.Event | None = None
        self.flow: Backpressure | None = None
        self.intake: Intake | None = None

    # -- out -----------------------------------------------------------------------------------

    def write(self, body: bytes) -> None:
        """Frame one message as the client frames its own and queue it (event loop thread)."""
        if self._broken or self.stalled:
            return  # the client is gone; its requests were cancelled when that was noticed
        assert self._flushed is not None and self.flow is not None
        data = framing.frame(body, self.decoder.framing or "headers")
        self._flushed.clear()
        with self._out_cond:
            self._out.append(data)
            self._unread += len(data)
            self._out_cond.notify()
        self.flow.wrote()

    def _write_out(self) -> None:
        while True:
            with self._out_cond:
                while not self._out:
                    self._out_cond.wait()
                data = self._out.popleft()
            view = memoryview(data)
            try:
                while view:
                    written = os.write(self.out_fd, view[:WRITE_CHUNK])
                    view = view[written:]
                    with self._out_cond:
                        self._unread -= written
                        self._taken += written
            except OSError as exc:
                self._call(self._lost, exc)
                return
            with self._out_cond:
                empty = not self._out
            if empty:
                self._call(self._maybe_flushed)

    def _call(self, fn, *args) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop is closed: we are exiting anyway

    def _maybe_flushed(self) -> None:
        if self._unread == 0 and self._flushed is not None:
            self._flushed.set()

    def _lost(self, exc: OSError) -> None:
        log.warning("Client connection lost while writing: %s", exc)
        self._broken = True
        self._give_up()

    def _stall(self, reason: str) -> None:
        log.error("The client is stuck: %s; cancelling its requests and closing", reason)
        self.stalled = reason
        self._give_up()

    def _give_up(self) -> None:
        if self.intake is not None:
            self.intake.close()
        self.protocol.cancel_all()
        assert self._eof is not None and self._flushed is not None
        self._flushed.set()  # nothing more will reach the client
        self._eof.set()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued byte is in the pipe (or the client is gone)."""
        if self._flushed is None:
            return
        try:
            await asyncio.wait_for(self._flushed.wait(), timeout)
        except TimeoutError:
            log.warning("%d bytes of replies not written at exit", self._unread)

    # -- in ------------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Read until EOF, then return once every request has been answered and written.

        Returns early, with `stalled` set, if the client stopped reading its replies.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._eof = asyncio.Event()
        self._flushed = asyncio.Event()
        self._flushed.set()
        self.flow = Backpressure(loop, self.max_unread, self.stall_timeout_s,
                                 unread=lambda: self._unread, taken=lambda: self._taken,
                                 on_stall=self._stall)
        self.protocol.flow = self.flow
        self.intake = Intake(self.protocol, IntakeGroup(loop, self.max_in_progress, self.max_model_work))
        self.protocol.attach(self.write, loop)
        threading.Thread(target=self._write_out, name="ember-stdout", daemon=True).start()
        threading.Thread(target=self._read, args=(loop,), name="ember-stdin", daemon=True).start()
        await self._eof.wait()
        if self.stalled or self._broken:
            return
        await self.intake.wait_done()
        await self.flush()

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        # A plain thread with blocking reads works for pipes, files and terminals alike.
        while True:
            try:
                chunk = os.read(self.in_fd, 1 << 16)
            except OSError:
                chunk = b""
            frames = self.decoder.feed(chunk) if chunk else self.decoder.finish()
            # Parse here, off the event loop: a huge or hostile frame costs this thread, not
            # every other piece of work the loop does meanwhile.
            parsed = [(parse_frame(frame), len(frame) if isinstance(frame, bytes) else 0) for frame in frames]
            # Hand over and wait: the next read happens only once the loop has taken these and
            # the client may be read again, so the bytes we hold for it stay bounded.
            try:
                asyncio.run_coroutine_threadsafe(self._take(parsed, not chunk), loop).result()
            except (RuntimeError, CancelledError, asyncio.CancelledError):
                return
            if not chunk:
                return

    async def _take(self, parsed: list, eof: bool) -> None:
        assert self._eof is not None and self.intake is not None and self.flow is not None
        for message, size in parsed:
            self.intake.admit(message, size)
        if eof:
            self._eof.set()
            return
        # Not while the client leaves its replies unread (flow.py), nor while many of its requests
        # wait for a slot (intake.py).
        while not (self.flow.readable.is_set() and self.intake.readable.is_set()) and not self._eof.is_set():
            await self.flow.readable.wait()
            await self.intake.readable.wait()
