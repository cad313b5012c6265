"""The tasks, as a table: name -> module with `run(params, model, ctx)` and the model kinds it serves.

Modules are imported on first use so the daemon starts (and answers) before torch is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    name: str
    module: str
    kinds: tuple[str, ...]

    @property
    def run(self) -> Callable[..., dict[str, Any]]:
        return importlib.import_module(self.module).run


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("complete", "ember.tasks.complete", ("causal-lm",)),
        Task("summarize", "ember.tasks.summarize", ("causal-lm", "seq2seq")),
        Task("translate", "ember.tasks.translate", ("causal-lm", "seq2seq")),
        Task("classify", "ember.tasks.classify",
             ("causal-lm", "text-classification", "zero-shot-classification")),
        Task("entities", "ember.tasks.entities", ("token-classification",)),
        Task("ask", "ember.tasks.ask", ("causal-lm", "question-answering")),
    ]
}
