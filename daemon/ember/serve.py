"""`ember serve`: the daemon on stdin/stdout for one client."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, cast

from .config import LoadedConfig

log = logging.getLogger(__name__)


def run_stdio(loaded: LoadedConfig, parent_pid: int | None = None) -> int:
    from .transport.stdio import StdioConnection, claim_stdout

    protocol_fd = claim_stdout()  # before heavy imports: nothing else may write to our stdout
    from .lifecycle import on_signals, watch_parent
    from .rpc.protocol import EmberProtocol
    from .rpc.server import build_server
    from .service import Service

    service = Service(loaded.settings)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[int] = loop.create_future()

        def finish(code: int) -> None:
            if not finished.done():
                finished.set_result(code)

        watching: set[int] = set()

        def on_initialize(params) -> None:
            if params.process_id and params.process_id not in watching:
                watching.add(params.process_id)
                watch_parent(loop, params.process_id, lambda: finish(0))

        server = build_server(service, on_initialize)
        protocol = cast(EmberProtocol, server.protocol)
        protocol.on_exit = finish
        protocol.on_request = lambda _method: setattr(service, "requests_served", service.requests_served + 1)
        service.connections.add(protocol)
        service.start(loop)
        if parent_pid:
            watching.add(parent_pid)
            watch_parent(loop, parent_pid, lambda: finish(0))

        d = loaded.settings.daemon
        connection = StdioConnection(protocol, sys.stdin.fileno(), protocol_fd,
                                     max_unread=int(d.max_unread_mb * 2**20),
                                     stall_timeout_s=d.stall_timeout_s,
                                     max_in_progress=d.max_client_queue, max_model_work=d.max_queue)

        def on_signal(sig: int) -> None:
            log.info("Signal %d: cancelling work and exiting", sig)
            if connection.intake is not None:
                connection.intake.close()  # requests still waiting for a slot never start
            protocol.cancel_all()
            finish(0)

        on_signals(loop, on_signal)
        waiting: list[asyncio.Future[Any]] = [asyncio.ensure_future(connection.serve()), finished]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        code = finished.result() if finished.done() else 0
        if connection.stalled:
            return 1
        if finished.done():
            # `exit` (or a signal): what is still running is answered -32800 now, not after it ends,
            # which may be longer than the grace below (a model still loading). At end of input
            # alone, requests run to their end: that is how a one-shot pipe gets its answers.
            protocol.cancel_all()
        # Let cancellation replies reach the client before we go.
        try:
            await asyncio.wait_for(protocol.wait_idle(), timeout=2.0)
        except TimeoutError:
            pass
        await connection.flush(timeout=2.0)
        return code

    code = asyncio.run(main())
    service.stop()
    logging.shutdown()
    sys.stderr.flush()
    # Worker threads may be inside torch; a hard exit cannot hang on them.
    os._exit(code)
