"""What every task gets: its validated params, the loaded model, and a run context.

A task is a plain function `run(params, model, ctx) -> dict` that runs on the model worker.
It returns its result including `usage`; the dispatcher adds `model` and `timings`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import RequestCancelled


@dataclass
class RunContext:
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Set when the client asked for `stream: true`: called with each new piece of text.
    on_delta: Callable[[str], None] | None = None
    # complete: the completion's text so far as the cut shapes it (typing through matches keystrokes to it).
    on_preview: Callable[[str], None] | None = None
    # complete: the client's workspace context chunks (objects with `path` and `text`), oldest first.
    context: list[Any] = field(default_factory=list)
    context_tokens: int = 0  # the most tokens of that context (completion.context_tokens)
    # complete: only fill the prefix cache with the prompt, generate nothing (idle prefill).
    prefill_only: bool = False

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise RequestCancelled("request cancelled")
