"""What every task gets: its validated params, the loaded model, and a run context.

A task is a plain function `run(params, model, ctx) -> dict` that runs on the model worker.
It returns its result including `usage`; the dispatcher adds `model` and `timings`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import RequestCancelled


@dataclass
class RunContext:
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Set when the client asked for `stream: true`: called with each new piece of text.
    on_delta: Callable[[str], None] | None = None

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise RequestCancelled("request cancelled")
