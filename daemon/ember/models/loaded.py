"""A model that the registry has loaded, as the tasks see it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import ModelSettings


@dataclass
class LoadedModel:
    name: str
    settings: ModelSettings
    kind: str  # one of config.MODEL_KINDS
    model: Any  # a transformers PreTrainedModel (or None for a tokenizer-only entry)
    tokenizer: Any  # a transformers tokenizer
    device: str  # "cpu", "cuda:0", ...
    dtype: str
    quantization: str  # what was applied, e.g. "bnb-4bit" or "none"
    quantization_note: str | None  # why the requested quantization was not applied, if it was not
    context_length: int
    memory_bytes: int
    load_seconds: float
    source_path: str
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    # One forward pass at a time per model: generate() is not re-entrant.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.settings.source,
            "path": self.source_path,
            "device": self.device,
            "dtype": self.dtype,
            "quantization": self.quantization,
            "quantization_note": self.quantization_note,
            "context_length": self.context_length,
            "memory_bytes": self.memory_bytes,
            "load_seconds": round(self.load_seconds, 3),
            "loaded_at": self.loaded_at,
            "idle_s": round(time.monotonic() - self.last_used, 1),
        }
