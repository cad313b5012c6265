"""The engine interface: the few operations Ember's decode loop needs from a model runtime.

A `Sequence` holds the KV state of one token sequence, in the shape of onnxruntime-genai's
`Generator`: append tokens and get the logits that follow them, rewind to the first n tokens, free.
Sampling, stop sequences, streaming and cancellation live above it (decode.py), the same for every
engine, and so does prefix reuse (prefix_cache.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class EngineError(Exception):
    """The runtime failed (not the request): the sequence it happened in is no longer trusted."""


class Sequence(ABC):
    """KV state for `tokens`, up to `capacity` tokens. Used by one thread at a time."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.tokens: list[int] = []
        self.owner = ""  # the request that last used it (prefix_cache.py; daemon/status shows it)
        self.last_used = 0.0  # time.monotonic() when that request ended
        self.priority = "normal"  # that request's scheduling class: editors' sequences are evicted last
        self.adapter = ""  # the LoRA adapter its KV state was computed with ("": the base model)

    @abstractmethod
    def _forward(self, ids: list[int], all_logits: bool) -> np.ndarray:
        """Run `ids` after the tokens held and return their logits (float32)."""

    @abstractmethod
    def _truncate(self, n: int) -> int:
        """Drop the KV state of every token after the first `n`; returns how many tokens remain
        (n, or 0 where the runtime cannot go back that far and dropped everything)."""

    @abstractmethod
    def nbytes(self) -> int:
        """Memory this sequence's KV state holds now."""

    def free(self) -> None:
        """Release the KV state at once (it is also released when garbage collected)."""
        self.tokens = []

    def append(self, ids: list[int], all_logits: bool = False) -> np.ndarray:
        """The logits after the last of `ids` ([vocab]), or after each of them ([len(ids), vocab])."""
        if not ids:
            raise ValueError("append needs at least one token")
        if len(self.tokens) + len(ids) > self.capacity:
            raise ValueError(f"{len(self.tokens) + len(ids)} tokens exceed this sequence's "
                             f"capacity of {self.capacity}")
        try:
            logits = self._forward(list(ids), all_logits)
        except Exception as exc:  # noqa: BLE001 - any runtime failure leaves the state unknown
            self.tokens = []
            raise EngineError(f"{type(exc).__name__}: {exc}") from exc
        self.tokens.extend(int(i) for i in ids)
        return logits

    def rewind(self, n: int) -> None:
        """Keep the first `n` tokens' state (n <= len(tokens))."""
        if n < len(self.tokens):
            del self.tokens[self._truncate(n):]


class LocalEngine(ABC):
    """A causal LM that runs in this process, one forward at a time (on its device's worker)."""

    name: str  # "transformers" or "onnxruntime"
    kv_bytes_per_token: int  # one token's KV state, every layer (what the prefix cache budget counts)

    def __init__(self, context_length: int, vocab_size: int):
        self.context_length = context_length
        self.vocab_size = vocab_size

    @abstractmethod
    def new_sequence(self, capacity: int) -> Sequence:
        """An empty sequence able to hold `capacity` tokens."""

    @abstractmethod
    def kv_bytes(self, tokens: int) -> int:
        """KV memory of a sequence holding `tokens` tokens (or allocated for that many)."""

    @abstractmethod
    def weight_bytes(self) -> int:
        """Memory the weights occupy."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    @abstractmethod
    def close(self) -> None:
        """Release the model (after every sequence is freed)."""
