"""The stdio transport: protocol bytes on the real stdout, everything else on stderr."""

from __future__ import annotations

import asyncio
import os
import threading

from ..rpc.protocol import EmberProtocol
from .framing import FrameDecoder


def claim_stdout() -> int:
    """Keep a private copy of fd 1 for the protocol and point fd 1 at stderr.

    Call before importing torch or transformers: anything a library prints, from Python or C,
    then lands in the log instead of corrupting the protocol stream.
    """
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    return protocol_fd


class StdioConnection:
    def __init__(self, protocol: EmberProtocol, in_fd: int, out_fd: int):
        self.protocol = protocol
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.decoder = FrameDecoder()
        self._write_lock = threading.Lock()
        self._eof: asyncio.Event | None = None

    def write(self, data: bytes) -> None:
        with self._write_lock:
            view = memoryview(data)
            while view:
                written = os.write(self.out_fd, view)
                view = view[written:]

    async def serve(self) -> None:
        """Read until EOF, then return once every request has been answered."""
        loop = asyncio.get_running_loop()
        self._eof = asyncio.Event()
        self.protocol.attach(self.write, loop)
        threading.Thread(target=self._read, args=(loop,), name="ember-stdin", daemon=True).start()
        await self._eof.wait()
        await self.protocol.wait_idle()

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        # A plain thread with blocking reads works for pipes, files and terminals alike.
        while True:
            try:
                chunk = os.read(self.in_fd, 1 << 16)
            except OSError:
                chunk = b""
            loop.call_soon_threadsafe(self._on_data, chunk)
            if not chunk:
                return

    def _on_data(self, chunk: bytes) -> None:
        frames = self.decoder.feed(chunk) if chunk else self.decoder.finish()
        if self.decoder.framing is not None:
            self.protocol.framing = self.decoder.framing
        for frame in frames:
            self.protocol.receive(frame)
        if not chunk:
            assert self._eof is not None
            self._eof.set()
