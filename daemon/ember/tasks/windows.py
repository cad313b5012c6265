"""Narrowing a long text to the parts most relevant to a question (ask's generative method).

The text is cut into overlapping chunks of about `size` tokens (on word boundaries), each chunk is
scored against the question with BM25 (Robertson and Zaragoza's ranking function over lower-cased
word pieces, stop words dropped), and the best chunks that fit the token budget are kept, in
document order; overlapping or touching kept chunks are merged into one piece. Offsets are always
those of the original text, so whatever is found in a kept piece is found in the text.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

K1 = 1.2  # BM25's usual constants
B = 0.75
_WORD = re.compile(r"[^\W_]+")  # letters and digits: snake_case and dotted names split into words
STOP_WORDS = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its of on or that the "
    "this to was what when where which who why will with you your does did not".split())


@dataclass(frozen=True)
class Chunk:
    start: int  # [start, end) characters of the original text
    end: int


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def chunk_text(text: str, count_tokens: Callable[[str], int], size: int, overlap: int) -> list[Chunk]:
    """Overlapping chunks of about `size` tokens, `overlap` tokens shared by neighbours; chunk edges
    are moved to the nearest word boundary (up to 40 characters)."""
    tokens = max(1, count_tokens(text))
    per_token = len(text) / tokens
    width = max(1, int(size * per_token))
    step = max(1, int((size - overlap) * per_token))
    chunks: list[Chunk] = []
    at = 0
    while at < len(text):
        start = _word_start(text, at)
        end = _word_end(text, min(len(text), at + width))
        if end <= start:
            end = min(len(text), at + width)
        if not chunks or end > chunks[-1].end:
            chunks.append(Chunk(start, end))
        if end >= len(text):
            break
        at += step
    return chunks


def _word_start(text: str, at: int) -> int:
    back = at
    while back > 0 and at - back < 40 and not text[back - 1].isspace():
        back -= 1
    return back if back == 0 or text[back - 1].isspace() else at


def _word_end(text: str, at: int) -> int:
    forward = at
    while forward < len(text) and forward - at < 40 and not text[forward].isspace():
        forward += 1
    return forward if forward == len(text) or text[forward].isspace() else at


def bm25(question: str, texts: list[str]) -> list[float]:
    """BM25 score of each text for the question's words (its stop words only when it has nothing else)."""
    terms = set(words(question))
    terms = (terms - STOP_WORDS) or terms
    docs = [Counter(words(t)) for t in texts]
    if not docs or not terms:
        return [0.0] * len(texts)
    avg = sum(sum(d.values()) for d in docs) / len(docs) or 1.0
    df = {t: sum(1 for d in docs if t in d) for t in terms}
    scores = []
    for d in docs:
        length = sum(d.values())
        score = 0.0
        for t in terms:
            tf = d.get(t, 0)
            if tf:
                idf = math.log(1 + (len(docs) - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avg))
        scores.append(score)
    return scores


def select_chunks(text: str, chunks: list[Chunk], question: str, count_span: Callable[[int, int], int],
                  budget: int, gap_tokens: int) -> tuple[list[Chunk], int]:
    """The best-scoring chunks that fit `budget` tokens (`count_span(start, end)`: the tokens of
    text[start:end]; pieces joined by a gap of `gap_tokens`), merged where they overlap, in document
    order; and how many chunks were kept."""
    scores = bm25(question, [text[c.start:c.end] for c in chunks])
    order = sorted(range(len(chunks)), key=lambda i: (-scores[i], i))  # ties: earlier first
    kept: list[int] = []
    for i in order:
        pieces = merge([chunks[j] for j in sorted([*kept, i])])
        cost = sum(count_span(p.start, p.end) for p in pieces) + gap_tokens * (len(pieces) - 1)
        if cost <= budget:
            kept.append(i)
    return merge([chunks[j] for j in sorted(kept)]), len(kept)


def span_counter(text: str, tokenizer: object | None, chars_per_token: int) -> Callable[[int, int], int]:
    """Tokens of text[start:end], from one tokenization of the whole text (a fast tokenizer's offsets:
    each call is two binary searches), plus 2 for a piece's edges, which a separate tokenization may
    split differently; without a fast tokenizer, estimated from characters."""
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        return lambda start, end: -(-(end - start) // chars_per_token)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]  # type: ignore[operator]
    starts = [int(s) for s, _ in offsets]
    return lambda start, end: bisect.bisect_left(starts, end) - bisect.bisect_left(starts, start) + 2


def merge(chunks: list[Chunk]) -> list[Chunk]:
    """Chunks in document order with overlapping or touching ones joined."""
    out: list[Chunk] = []
    for c in sorted(chunks, key=lambda c: c.start):
        if out and c.start <= out[-1].end:
            out[-1] = Chunk(out[-1].start, max(out[-1].end, c.end))
        else:
            out.append(c)
    return out
