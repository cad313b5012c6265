"""Prefix reuse: recent sequences' KV state, kept for prompts that start the same way.

A request takes the idle sequence whose tokens share the longest prefix with its prompt (as
llama.cpp's server slots do), rewinds it to that prefix and runs only the rest. Comparing token ids
handles the token boundary: if typing changed the prompt's last token, the common prefix simply ends
before it. Idle sequences are evicted to stay within a memory budget: those that scripts' and
batch work used first, then editors' (interactive work), least recently used first within each, so
a long summary does not push out the documents being typed in. KV state computed with a LoRA
adapter is reused only by requests with that same adapter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .base import EngineError, LocalEngine, Sequence

# The last prompt tokens are always run again, never reused: the logits that follow the prompt come
# from that run, and two tokens keep it on the batched kernels that a cold run of the same prompt
# uses (onnxruntime's one-token kernels round differently), so reuse never changes the output.
FRESH_TOKENS = 2
# A shorter common prefix (a BOS token, a chat template's opening) is not worth evicting another
# prompt's state for while the budget has room for a new sequence.
USEFUL_PREFIX = 16


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


class PrefixCache:
    """The sequences of one model. Checked out by one request at a time, on the model's worker."""

    def __init__(self, engine: LocalEngine, budget_bytes: int):
        self.engine = engine
        self.budget_bytes = budget_bytes
        self._idle: list[Sequence] = []  # least recently used first
        self._busy: list[Sequence] = []
        self._lock = threading.Lock()  # status reads come from other threads
        self.requests = 0
        self.reused_tokens = 0
        self.prompt_tokens = 0
        self.evictions = 0

    @contextmanager
    def sequence_for(self, prompt: list[int], capacity: int, owner: str = "",
                     priority: str = "normal", adapter: str = "") -> Iterator[tuple[Sequence, int]]:
        """A sequence holding the longest reusable prefix of `prompt`, and that prefix's length.

        `capacity` is the most tokens the request may need; `owner` names the request for status,
        and its `priority` decides what is evicted first; `adapter` is the LoRA adapter it runs
        with. Afterwards the sequence keeps its state for later prompts, unless the runtime failed
        in it.
        """
        seq, reused = self._checkout(prompt, capacity, adapter)
        seq.owner, seq.priority = owner, priority
        try:
            yield seq, reused
        except EngineError:
            self._discard(seq)
            raise
        except BaseException:
            self._checkin(seq)  # cancelled or failed between steps: its tokens are still exact
            raise
        self._checkin(seq)

    def _checkout(self, prompt: list[int], capacity: int, adapter: str) -> tuple[Sequence, int]:
        limit = max(0, len(prompt) - FRESH_TOKENS)
        with self._lock:
            best, best_len = None, 0
            for seq in self._eviction_order():  # the first to go wins ties
                if seq.capacity < capacity or seq.adapter != adapter:
                    continue
                n = min(common_prefix(seq.tokens, prompt), limit)
                if best is None or n > best_len:
                    best, best_len = seq, n
            if best_len < USEFUL_PREFIX and (
                    self._bytes_locked() + self.engine.kv_bytes(capacity) <= self.budget_bytes):
                best, best_len = None, 0
            victims = []
            if best is not None:
                self._idle.remove(best)
                self._busy.append(best)
                if best_len < USEFUL_PREFIX and best.tokens:
                    self.evictions += 1  # its prompt's state is overwritten for this one
            else:  # make room first, so a new sequence never takes memory beyond the budget
                need = self.engine.kv_bytes(capacity)
                victims = self._evict_locked(need)
        for victim in victims:
            victim.free()
        if best is None:
            best = self.engine.new_sequence(capacity)
            best.adapter = adapter
            with self._lock:
                self._busy.append(best)
        best.rewind(best_len)
        reused = len(best.tokens)  # less than asked where the runtime could not rewind that far
        with self._lock:
            self.requests += 1
            self.prompt_tokens += len(prompt)
            self.reused_tokens += reused
        return best, reused

    def _checkin(self, seq: Sequence) -> None:
        seq.last_used = time.monotonic()
        with self._lock:
            if seq in self._busy:
                self._busy.remove(seq)
            self._idle.append(seq)
            victims = self._evict_locked(0)
        for victim in victims:
            victim.free()

    def _eviction_order(self) -> list[Sequence]:
        """Idle sequences, the first to evict first: non-interactive work's, then editors'; least
        recently used first within each (the idle list is in that order)."""
        return sorted(self._idle, key=lambda s: s.priority == "interactive")  # stable: keeps LRU order

    def _evict_locked(self, need: int) -> list[Sequence]:
        """Take idle sequences out until `need` more bytes fit the budget; the caller frees them."""
        victims = []
        order = self._eviction_order()
        while order and self._bytes_locked() + need > self.budget_bytes:
            victim = order.pop(0)
            self._idle.remove(victim)
            victims.append(victim)
            self.evictions += 1
        return victims

    def _discard(self, seq: Sequence) -> None:
        with self._lock:
            if seq in self._busy:
                self._busy.remove(seq)
        seq.free()

    def _bytes_locked(self) -> int:
        return sum(s.nbytes() for s in self._idle) + sum(s.nbytes() for s in self._busy)

    def drop_adapter(self, adapter: str) -> None:
        """Free the idle sequences computed with `adapter` (it is being unloaded)."""
        with self._lock:
            gone = [s for s in self._idle if s.adapter == adapter]
            self._idle = [s for s in self._idle if s.adapter != adapter]
        for seq in gone:
            seq.free()

    def clear(self) -> None:
        """Free every idle sequence (unload, or the budget changed)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for seq in idle:
            seq.free()

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes_locked()

    def describe(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            entries = [{"owner": s.owner, "tokens": len(s.tokens), "capacity": s.capacity, "bytes": s.nbytes(),
                        "busy": True, "idle_s": 0.0, **({"adapter": s.adapter} if s.adapter else {})}
                       for s in self._busy]
            entries += [{"owner": s.owner, "tokens": len(s.tokens), "capacity": s.capacity, "bytes": s.nbytes(),
                         "busy": False, "idle_s": round(now - s.last_used, 1),
                         **({"adapter": s.adapter} if s.adapter else {})} for s in reversed(self._idle)]
            return {
                "sequences": len(self._idle) + len(self._busy),
                "bytes": self._bytes_locked(),
                "budget_bytes": self.budget_bytes,
                "kv_bytes_per_token": self.engine.kv_bytes_per_token,
                "requests": self.requests,
                "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.reused_tokens,
                "reuse_rate": round(self.reused_tokens / self.prompt_tokens, 4) if self.prompt_tokens else None,
                "evictions": self.evictions,
                "entries": entries,
            }
