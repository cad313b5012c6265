"""Ember's decode loop, the same on every local engine: prefill what the prefix cache does not
hold, then pick and append one token at a time, with stop sequences, EOS, streaming deltas and
cancellation checked at every step. Label scoring for classify uses the same sequences."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .base import Sequence
from .sampling import Sampling, pick
from .text import PostFilter, TextAccumulator


class Cancellable(Protocol):
    """The request's side of the loop (tasks.base.RunContext)."""

    owner: str  # whose sequence it is, for daemon/status
    priority: str  # its scheduling class (worker.py): the prefix cache evicts editors' state last

    def check_cancelled(self) -> None: ...

    def between_steps(self) -> None:
        """Between two forward passes: raise if cancelled; other work may run meanwhile."""

    def prefill_chunk(self) -> int:
        """Prompt tokens to run in the next forward: cancellation and other work wait for at most
        one chunk, so it is short while an editor is about (worker.py)."""


class SequenceSource(Protocol):
    def sequence_for(self, prompt: list[int], capacity: int, owner: str = "",
                     priority: str = "normal") -> AbstractContextManager[tuple[Sequence, int]]: ...


@dataclass
class Generated:
    text: str
    finish_reason: str  # stop | length
    prompt_tokens: int
    completion_tokens: int
    run_ms: float
    cached_tokens: int | None = 0  # prompt tokens whose KV state was reused (None: not reported)
    first_token_ms: float | None = None


@dataclass
class DecodeRequest:
    prompt: list[int]
    max_new_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    stop: list[str] = field(default_factory=list)
    eos_ids: set[int] = field(default_factory=set)
    on_delta: Callable[[str], None] | None = None
    post: PostFilter | None = None  # a stage after the stop sequences (it sends the deltas then)
    prefill_only: bool = False  # fill the prefix cache with the prompt and stop (idle prefill)


class SingleUse:
    """A SequenceSource without reuse: a fresh sequence per request (seq2seq decoders)."""

    def __init__(self, make: Callable[[int], Sequence]):
        self._make = make

    @contextmanager
    def sequence_for(self, prompt: list[int], capacity: int, owner: str = "",
                     priority: str = "normal") -> Iterator[tuple[Sequence, int]]:
        seq = self._make(capacity)
        try:
            yield seq, 0
        finally:
            seq.free()


def prefill(seq: Sequence, prompt: list[int], ctx: Cancellable, all_logits: bool = False) -> np.ndarray:
    """Run the prompt tokens that `seq` does not hold yet; the logits after the prompt (or, with
    `all_logits`, after each token run). Never leaves a one-token final chunk (see prefix_cache)."""
    start = len(seq.tokens)
    pieces = []
    while start < len(prompt):
        ctx.between_steps()
        end = start + ctx.prefill_chunk()
        if len(prompt) - end == 1:
            end += 1
        pieces.append(seq.append(prompt[start:end], all_logits=all_logits))
        start = end
    if not pieces:
        raise ValueError("prefill needs at least one token to run")
    return np.concatenate(pieces) if all_logits else pieces[-1]


def generate(source: SequenceSource, tokenizer: Any, req: DecodeRequest, ctx: Cancellable,
             context_length: int) -> Generated:
    started = time.monotonic()
    prompt = req.prompt
    capacity = min(context_length, len(prompt) + req.max_new_tokens)
    acc = TextAccumulator(tokenizer, req.stop, req.on_delta, req.post)
    rng = req.sampling.rng()
    count, finish, first_ms = 0, "length", None
    with source.sequence_for(prompt, capacity, ctx.owner, ctx.priority) as (seq, cached):
        logits = prefill(seq, prompt, ctx)
        while not req.prefill_only:
            token = pick(logits, req.sampling, rng)
            if first_ms is None:
                first_ms = (time.monotonic() - started) * 1000
            count += 1
            acc.add([token])  # an end token is text too where it is not special ("." for a sentence)
            if token in req.eos_ids or acc.stopped:
                finish = acc.post_reason or "stop"
                break
            if count >= req.max_new_tokens or len(seq.tokens) >= seq.capacity:
                break
            ctx.between_steps()
            logits = seq.append([token])
    text = acc.finish()
    return Generated(text, finish, len(prompt), count, (time.monotonic() - started) * 1000,
                     cached, first_ms)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    top = x.max(axis=-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


def loglikelihoods(source: SequenceSource, prompt: list[int], continuations: list[list[int]],
                   ctx: Cancellable) -> list[float]:
    """Sum of log P(continuation tokens | prompt) for each continuation (the prompt runs once)."""
    longest = max(len(c) for c in continuations)
    with source.sequence_for(prompt, len(prompt) + longest, ctx.owner, ctx.priority) as (seq, _cached):
        first = _log_softmax(prefill(seq, prompt, ctx))
        scores = []
        for cont in continuations:
            score = float(first[cont[0]])
            if len(cont) > 1:
                ctx.between_steps()
                seq.rewind(len(prompt))
                following = _log_softmax(seq.append(cont[:-1], all_logits=True))
                score += sum(float(following[j, cont[j + 1]]) for j in range(len(cont) - 1))
            scores.append(score if math.isfinite(score) else -math.inf)
        seq.rewind(len(prompt))
    return scores


def perplexity(seq: Sequence, ids: list[int], ctx: Cancellable) -> float:
    """exp(mean negative log-likelihood) of `ids[1:]` given what precedes each (for benchmarks)."""
    return perplexity_of(prefill(seq, ids, ctx, all_logits=True), ids)


def perplexity_of(logits: np.ndarray, ids: list[int]) -> float:
    """The same from `ids`' logits, one row per position, already computed."""
    picked = _log_softmax(logits)[np.arange(len(ids) - 1), ids[1:]]
    return float(np.exp(-picked.mean()))
