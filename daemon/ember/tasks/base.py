"""What every task gets: its validated params, the loaded model, and a run context.

A task is a plain function `run(params, model, ctx) -> dict` that runs on the model worker.
It returns its result including `usage`; the dispatcher adds `model` and `timings`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import RequestCancelled

PREFILL_CHUNK = 256  # prompt tokens per forward when nothing else competes for the model


class Steps(Protocol):
    """What the worker running a task offers it between forward passes (worker.Worker)."""

    def between_steps(self, cancelled: threading.Event | None = None) -> None: ...

    def prefill_chunk(self) -> int: ...


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
    # The worker running the task: waiting work may go first between two forward passes.
    steps: Steps | None = None
    # Whose KV sequence this request uses, as daemon/status shows it: a document, or the task.
    owner: str = ""
    priority: str = "normal"  # the request's scheduling class (set by the service)
    adapter: str = ""  # the LoRA adapter a causal LM runs with ("": none; set by the service)

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise RequestCancelled("request cancelled")

    def between_steps(self) -> None:
        """Called between two forward passes: stop here if cancelled, and let the worker run
        work that should not wait for the rest of this task (it may take a while to return)."""
        self.check_cancelled()
        if self.steps is not None:
            self.steps.between_steps(self.cancelled)
            self.check_cancelled()  # cancelled while it waited

    def prefill_chunk(self) -> int:
        return self.steps.prefill_chunk() if self.steps is not None else PREFILL_CHUNK
