"""A model that the registry has loaded, as the tasks see it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..config import ModelSettings
from . import sources


@dataclass
class LoadedModel:
    name: str
    settings: ModelSettings
    kind: str  # one of config.MODEL_KINDS
    model: Any  # a transformers PreTrainedModel, or None when another engine runs the model
    # a transformers tokenizer: the model's own, whatever the engine (None only for a remote model
    # whose tokenizer is not available here)
    tokenizer: Any
    device: str  # "cpu", "cuda:0", ...
    dtype: str
    quantization: str  # what was applied, e.g. "bnb-4bit", "none", "int4 (the GGUF's own blocks...)"
    quantization_note: str | None  # why the requested quantization was not applied, if it was not
    context_length: int
    memory_bytes: int
    load_seconds: float
    source_path: str
    # engines.base.LocalEngine for generative kinds (causal-lm, seq2seq), or engines.remote.RemoteEngine
    engine: Any = None
    engine_note: str | None = None  # why the engine is not the one asked for (auto or explicit)
    prefix_cache: Any = None  # engines.prefix_cache.PrefixCache for causal LMs
    adapters: Any = None  # models.adapters.Adapters for local causal LMs (the registry sets it)
    eos_ids: tuple[int, ...] = ()
    # seq2seq: what the decoder starts from (its start token, and a BOS some models force first)
    decoder_prefix: tuple[int, ...] = ()
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    # Tasks running on it now. A task may pause between two forward passes while another runs
    # (worker.py), so an unload waits for the last of them before it closes the engine.
    users: int = 0
    unloaded: bool = False
    _users_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def remote(self) -> bool:
        """An inference server runs this model (engine = "remote")."""
        return self.settings.remote

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Held while a task runs on the model. One forward pass at a time is the worker's doing
        (one per device); a remote model's requests run concurrently (its server batches them)."""
        with self._users_lock:
            self.users += 1
        try:
            yield
        finally:
            with self._users_lock:
                self.users -= 1
                close = self.users == 0 and self.unloaded
            if close:
                self._close()

    def unload(self) -> bool:
        """Close the model now, or when its last running task ends; True when closed now."""
        with self._users_lock:
            self.unloaded = True
            if self.users:
                return False
        self._close()
        return True

    def sequences(self, adapter: str = "") -> Any:
        """Where a causal LM's request gets its KV sequence (engines.decode.SequenceSource): the
        prefix cache, or with a LoRA `adapter` the one of the engine that runs it. Worker only."""
        if not adapter:
            return self.prefix_cache
        return self.adapters.sequences(adapter)

    def _close(self) -> None:
        if self.adapters is not None:
            self.adapters.close()
        if self.prefix_cache is not None:
            self.prefix_cache.clear()
        if self.engine is not None:
            self.engine.close()
        self.model = self.engine = self.prefix_cache = None

    @property
    def resident_bytes(self) -> int:
        """Weights plus the KV state the prefix cache holds now (what the memory budget counts)."""
        return (self.memory_bytes + (self.prefix_cache.nbytes if self.prefix_cache is not None else 0)
                + (self.adapters.resident_bytes if self.adapters is not None else 0))

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def describe(self) -> dict[str, Any]:
        if self.remote:
            return self._describe_remote()
        return {
            "name": self.name,
            "label": sources.label(self.settings),
            "kind": self.kind,
            "source": self.settings.source,
            "path": self.source_path,
            "engine": self.engine.name if self.engine is not None else "transformers",
            "engine_note": self.engine_note,
            "device": self.device,
            "dtype": self.dtype,
            "quantization": self.quantization,
            "quantization_note": self.quantization_note,
            "context_length": self.context_length,
            "memory_bytes": self.memory_bytes,  # the weights (the prefix cache's KV state is below)
            "prefix_cache": self.prefix_cache.describe() if self.prefix_cache is not None else None,
            **({"adapters": self.adapters.describe()} if self.adapters is not None else {}),
            "load_seconds": round(self.load_seconds, 3),
            "loaded_at": self.loaded_at,
            "idle_s": round(time.monotonic() - self.last_used, 1),
        }

    def _describe_remote(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "name": self.name,
            "label": sources.label(self.settings),
            "kind": self.kind,
            "source": engine.endpoint.public_url,
            "engine": "remote",
            "engine_note": self.engine_note,
            "device": "remote",
            "context_length": self.context_length,
            "memory_bytes": self.memory_bytes,
            "tokenizer": self.source_path if self.tokenizer is not None else None,
            "remote": {"served_model": engine.served_model, **engine.endpoint.describe()},
            "load_seconds": round(self.load_seconds, 3),
            "loaded_at": self.loaded_at,
            "idle_s": round(time.monotonic() - self.last_used, 1),
        }
