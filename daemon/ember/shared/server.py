"""The shared daemon: one Engine (one set of resident models) behind a Unix socket for all clients.

Each connection gets its own EmberProtocol from `new_connection`, so replies and stream
notifications go only to the client that asked; progress goes to clients that said `initialize`.
A client that disconnects has its requests cancelled. `exit` from a client ends that client's
connection, not the daemon: other editors may still be using it. The daemon stops on SIGTERM
(`ember daemon stop`) or after `shared.idle_timeout_s` with no clients and no work.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import stat
import struct
import sys
import time
from typing import Any

from ..config import LoadedConfig
from ..transport import framing
from ..transport.flow import Backpressure
from ..transport.framing import FrameDecoder
from ..transport.intake import Intake, IntakeGroup
from .paths import InstanceLock, SharedPaths, UnsafeSocketDir, lock_holder

log = logging.getLogger(__name__)

DAEMON_ERROR = 3  # the CLI's exit code for daemon problems
EXIT_GRACE_S = 2.0  # for cancellation replies to reach clients before a connection or the daemon goes
PARSE_OFF_LOOP_BYTES = 1 << 20  # frames this big are parsed on a thread, not on the shared loop


class Connection:
    """One client: its protocol, its socket writer and what it is waiting on."""

    def __init__(self, number: int, protocol: Any, writer: asyncio.StreamWriter,
                 max_unread: int, stall_timeout_s: float, intakes: IntakeGroup):
        self.number = number
        self.protocol = protocol
        self.writer = writer
        self.exiting = False
        self.leaving = asyncio.Event()  # set with `exiting`: wakes the read loop wherever it waits
        self.closed = asyncio.Event()
        peer = _peer(writer.get_extra_info("socket"))
        self.peer_pid = peer[0] if peer else None
        self.watched_pid: int | None = None  # the editor's pid from initialize
        self.written = 0
        transport = writer.transport
        self.flow = Backpressure(
            asyncio.get_running_loop(), max_unread, stall_timeout_s,
            unread=transport.get_write_buffer_size,
            taken=lambda: self.written - transport.get_write_buffer_size(),
            on_stall=self._stall, name=str(self))
        # Requests past daemon.max_client_queue in progress wait here, then in the socket.
        self.intake = Intake(protocol, intakes, name=str(self))

    def leave(self) -> None:
        """The client said `exit` (perhaps started from the intake, outside the read loop)."""
        self.exiting = True
        self.leaving.set()

    async def readable(self) -> None:
        """Until the client may be read: its replies are being taken (flow.py) and few of its
        requests wait for a slot (intake.py)."""
        while not (self.flow.readable.is_set() and self.intake.readable.is_set()):
            await self.flow.readable.wait()
            await self.intake.readable.wait()

    async def unless_leaving(self, aw: Any) -> Any:
        """`await aw`, or None as soon as the client leaves."""
        task = asyncio.ensure_future(aw)
        leave = asyncio.ensure_future(self.leaving.wait())
        await asyncio.wait({task, leave}, return_when=asyncio.FIRST_COMPLETED)
        leave.cancel()
        if not task.done():
            task.cancel()
            return None
        return task.result()

    def write(self, body: bytes) -> None:
        """Frame one message (the socket always speaks Content-Length) and send it."""
        if self.writer.is_closing():
            raise ConnectionResetError("client connection closed")
        data = framing.frame(body, "headers")
        self.writer.write(data)
        self.written += len(data)
        self.flow.wrote()

    def _stall(self, reason: str) -> None:
        log.warning("%s is stuck: %s; disconnecting it and cancelling %d request(s)", self, reason,
                    self.protocol.in_flight)
        self.intake.close()
        self.protocol.cancel_all()
        self.writer.transport.abort()  # drops the unread replies at once
        self.flow.readable.set()  # let the read loop see the closed socket and clean up

    def __str__(self) -> str:
        return f"client {self.number}" + (f" (pid {self.peer_pid})" if self.peer_pid else "")


def _peer(sock: socket.socket | None) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end of a Unix socket, where the OS tells (Linux)."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except OSError:
        return None
    return pid, uid


class SharedDaemon:
    def __init__(self, loaded: LoadedConfig, paths: SharedPaths):
        from ..rpc.server import build_server
        from ..service import Service

        self.settings = loaded.settings
        self.paths = paths
        self.service = Service(self.settings)
        self.server = build_server(self.service, self._on_initialize)
        self.connections: dict[Any, Connection] = {}  # protocol -> connection
        self._numbers = itertools.count(1)
        self._idle_since: float | None = time.monotonic()
        self._finished: asyncio.Future[int] | None = None
        self._socket_inode: int | None = None
        self._intakes: IntakeGroup | None = None  # every client's intake: the bound they share

    # -- lifecycle -----------------------------------------------------------------------------

    def bind(self) -> socket.socket:
        """Replace any stale socket (we hold the lock, so no daemon answers on it) and listen."""
        path = self.paths.socket
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise UnsafeSocketDir(f"{path} exists and is not a socket; remove it")
            log.info("Replacing the stale socket %s", path)
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window where others could connect
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._socket_inode = os.stat(path).st_ino
        sock.listen(64)
        sock.setblocking(False)
        return sock

    def unlink_socket(self) -> None:
        # Only our own socket: a successor may already have bound a new one at the same path.
        try:
            if os.stat(self.paths.socket).st_ino == self._socket_inode:
                self.paths.socket.unlink()
        except FileNotFoundError:
            pass

    async def serve(self, sock: socket.socket) -> int:
        from ..lifecycle import on_signals

        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        d = self.settings.daemon
        self._intakes = IntakeGroup(loop, d.max_client_queue, d.max_queue)
        self.service.start(loop)
        listener = await asyncio.start_unix_server(self._on_client, sock=sock)
        on_signals(loop, self._on_signal)
        log.info("Shared daemon %d listening on %s (idle timeout %ss)", os.getpid(), self.paths.socket,
                 self.settings.shared.idle_timeout_s)
        self._schedule_idle_check()
        code = await self._finished
        listener.close()
        self.unlink_socket()
        for conn in list(self.connections.values()):
            conn.intake.close()  # nothing that waits for a slot starts now
            conn.protocol.cancel_all()
        # Let cancellation replies reach the clients before we go.
        pending = [c.protocol.wait_idle() for c in self.connections.values()]
        if pending:
            try:
                await asyncio.wait_for(asyncio.gather(*pending), timeout=EXIT_GRACE_S)
            except TimeoutError:
                pass
        for conn in list(self.connections.values()):
            conn.writer.close()
        await asyncio.sleep(0)
        return code

    def finish(self, code: int) -> None:
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(code)

    def _on_signal(self, sig: int) -> None:
        log.info("Signal %d: cancelling %d client(s)' work and exiting", sig, len(self.connections))
        self.finish(0)

    # -- idle exit -----------------------------------------------------------------------------

    def _busy(self) -> bool:
        return bool(self.connections) or any(
            w.queue_depth or w.running for w in self.service.workers)

    def _schedule_idle_check(self) -> None:
        timeout = self.settings.shared.idle_timeout_s
        if timeout <= 0:
            return  # never exit on idle
        assert self.service.loop is not None
        self.service.loop.call_later(max(0.1, min(5.0, timeout / 4)), self._idle_check)

    def _idle_check(self) -> None:
        now = time.monotonic()
        if self._busy():
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= self.settings.shared.idle_timeout_s:
            log.info("No clients and no work for %ss: exiting", self.settings.shared.idle_timeout_s)
            self.finish(0)
            return
        self._schedule_idle_check()

    # -- clients -------------------------------------------------------------------------------

    def _on_initialize(self, params: Any) -> None:
        from ..rpc.protocol import current_request

        conn = self.connections.get(current_request.get().protocol)
        if conn is not None and params.process_id and params.process_id != conn.watched_pid:
            conn.watched_pid = params.process_id
            # The editor's pid: if it dies without closing (SIGKILL), drop its connection and work.
            asyncio.ensure_future(self._watch_pid(conn, params.process_id))

    async def _watch_pid(self, conn: Connection, pid: int) -> None:
        from ..lifecycle import PARENT_POLL_S, pid_alive

        while not conn.closed.is_set():
            if not pid_alive(pid):
                log.warning("%s: its editor (pid %d) is gone; closing", conn, pid)
                conn.intake.close()
                conn.protocol.cancel_all()
                conn.writer.close()
                return
            try:
                await asyncio.wait_for(conn.closed.wait(), timeout=PARENT_POLL_S)
            except TimeoutError:
                pass

    def _count_request(self, _method: str) -> None:
        self.service.requests_served += 1

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from ..rpc.protocol import parse_frame
        from ..rpc.server import new_connection

        peer = _peer(writer.get_extra_info("socket"))
        if peer is not None and peer[1] != os.getuid():  # the socket is 0600; this is a second lock
            log.warning("Refusing a connection from uid %d", peer[1])
            writer.close()
            return
        protocol = new_connection(self.server)
        d = self.settings.daemon
        assert self._intakes is not None
        conn = Connection(next(self._numbers), protocol, writer, int(d.max_unread_mb * 2**20),
                          d.stall_timeout_s, self._intakes)
        protocol.flow = conn.flow
        loop = asyncio.get_running_loop()
        protocol.attach(conn.write, loop)
        protocol.on_request = self._count_request
        protocol.on_exit = lambda _code: conn.leave()
        self.connections[protocol] = conn
        self.service.connections.add(protocol)
        self._idle_since = None
        log.info("%s connected (%d connected)", conn, len(self.connections))
        decoder = FrameDecoder("headers")
        try:
            while not conn.exiting:
                # Over its bound of unread replies, or with many requests waiting for a slot, a
                # client's further requests wait in its socket.
                await conn.unless_leaving(conn.readable())
                chunk = None if conn.exiting else await conn.unless_leaving(reader.read(1 << 16))
                if not chunk:
                    break
                for frame in decoder.feed(chunk):
                    if isinstance(frame, bytes) and len(frame) > PARSE_OFF_LOOP_BYTES:
                        parsed = await loop.run_in_executor(None, parse_frame, frame)
                    else:
                        parsed = parse_frame(frame)
                    conn.intake.admit(parsed, len(frame) if isinstance(frame, bytes) else 0)
                    if conn.exiting:
                        break
        except (ConnectionError, OSError) as exc:
            log.info("%s: %s", conn, exc)
        finally:
            await self._drop(conn, lost=not conn.exiting)

    async def _drop(self, conn: Connection, lost: bool) -> None:
        protocol = conn.protocol
        if protocol.in_flight:
            log.info("%s %s: cancelling %d request(s)", conn, "disconnected" if lost else "sent exit",
                     protocol.in_flight)
        conn.intake.close()  # what it sent that never started is dropped unanswered
        protocol.cancel_all()
        if not lost:
            try:
                await asyncio.wait_for(protocol.wait_idle(), timeout=EXIT_GRACE_S)
            except TimeoutError:
                pass
        self.connections.pop(protocol, None)
        self.service.client_gone(protocol)
        conn.closed.set()
        conn.writer.close()
        try:
            await conn.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        paused = (f"; it was paused {conn.flow.pauses} time(s) for not reading its replies"
                  if conn.flow.pauses else "")
        log.info("%s closed (%d connected)%s", conn, len(self.connections), paused)


def run_shared(loaded: LoadedConfig) -> int:
    """`ember daemon run`: the shared daemon in the foreground until it is stopped or idles out."""
    paths = SharedPaths.resolve(loaded.settings.shared.socket_dir)
    try:
        paths.check()
    except UnsafeSocketDir as exc:
        log.error("%s", exc)
        sys.stderr.write(f"ember: {exc}\n")
        return DAEMON_ERROR
    lock = InstanceLock(paths.lock)
    if not lock.acquire():
        pid = lock_holder(paths.lock)
        sys.stderr.write(f"ember: the shared daemon is already running (pid {pid}, socket {paths.socket})\n")
        return DAEMON_ERROR
    daemon = SharedDaemon(loaded, paths)
    sock = daemon.bind()
    code = asyncio.run(daemon.serve(sock))
    daemon.service.stop()
    log.info("Shared daemon %d exiting", os.getpid())
    logging.shutdown()
    sys.stderr.flush()
    # Worker threads may be inside torch; a hard exit cannot hang on them. The lock goes with us.
    os._exit(code)
