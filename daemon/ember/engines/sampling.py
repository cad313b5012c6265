"""Choosing the next token from logits: greedy, or temperature with top-k and top-p, seeded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# top-p sorts only the most likely tokens; this many hold the whole nucleus in all but the
# flattest distributions, which fall back to sorting everything.
_NUCLEUS_CANDIDATES = 1024


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    seed: int | None = None

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first."""
    if k >= scores.shape[-1]:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def pick(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    """The next token id."""
    if sampling.temperature <= 0:
        return int(np.argmax(logits))
    scores = logits.astype(np.float64) / sampling.temperature
    vocab = scores.shape[-1]
    limit = min(sampling.top_k or vocab, vocab)
    if sampling.top_k:
        keep = _top(scores, limit)
        masked = np.full_like(scores, -np.inf)
        masked[keep] = scores[keep]
        scores = masked
    weights = np.exp(scores - scores.max())
    probs = weights / weights.sum()
    if sampling.top_p < 1.0:
        order = _top(probs, min(limit, _NUCLEUS_CANDIDATES))
        cumulative = np.cumsum(probs[order])
        if cumulative[-1] < sampling.top_p and len(order) < limit:
            order = _top(probs, limit)
            cumulative = np.cumsum(probs[order])
        # The smallest set whose mass reaches top_p (the token that crosses it is kept).
        cut = min(int(np.searchsorted(cumulative, sampling.top_p)) + 1, len(order))
        chosen = order[:cut]
        return int(chosen[rng.choice(cut, p=probs[chosen] / probs[chosen].sum())])
    return int(rng.choice(vocab, p=probs))
