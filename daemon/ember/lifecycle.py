"""Process lifecycle: exit when the editor that started us dies, and on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)

PARENT_POLL_S = 1.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def watch_parent(loop: asyncio.AbstractEventLoop, pid: int, on_death: Callable[[], None]) -> None:
    """Poll `pid`; an editor killed with SIGKILL never closes our stdin, so EOF alone is not enough."""

    def check() -> None:
        if not pid_alive(pid):
            log.warning("Parent process %d is gone; exiting", pid)
            on_death()
            return
        loop.call_later(PARENT_POLL_S, check)

    log.info("Watching parent process %d", pid)
    loop.call_later(PARENT_POLL_S, check)


def on_signals(loop: asyncio.AbstractEventLoop, handler: Callable[[int], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, handler, sig)
