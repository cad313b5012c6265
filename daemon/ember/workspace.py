"""Workspace context: a bounded ring of text chunks per client (`context/add`).

Clients send what the user recently opened, edited, saved, yanked or copied. Each client (the
connection's protocol object, opaque here) gets a ring of at most `completion.context_chunks` chunks,
oldest first. The lead's `complete` puts the newest chunks that fit `completion.context_tokens` before
the prefix (`fit` below picks them).

- A chunk is normalised before it is kept: `\\r\\n` becomes `\\n`, blank lines at either end go, and a
  chunk longer than MAX_CHUNK_LINES lines or MAX_CHUNK_CHARS characters keeps the whole lines nearest
  its middle (clients send a window centred on what the user looked at, so the middle is what
  matters; a middle line longer than the bound keeps MAX_CHUNK_CHARS characters of it). A chunk
  with no non-blank line is dropped.
- A new chunk that mostly repeats a kept one replaces it at the newest end. "Mostly" is the Dice
  similarity of their sets of non-blank lines (whitespace stripped): 2|A & B| / (|A| + |B|) >= 0.9,
  as llama.vim's ring does. Re-sending the same text therefore refreshes it rather than filling the ring.
- Beyond `context_chunks`, the oldest chunks are evicted.
- Nothing is kept when `completion.context` is false.

`add` runs on the event loop, so it only does bounded work: each chunk is trimmed by slicing before
it is split into lines (a 4 MB chunk costs what a small one does); only the newest `context_chunks`
chunks of a notification are looked at; and an index from lines to the kept chunks that hold them
means a new chunk is compared only with the chunks it shares lines with. Measured on the busy
two-core machine (CPU time): 0.1-0.2 ms per 64-line chunk, and a 64-chunk notification 1.5 ms with
the default 16-chunk ring, 8.5 ms into a full 256-chunk ring. `chunks` is read from the model worker
thread: it returns a copy taken under the lock.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .config import CompletionSettings

log = logging.getLogger(__name__)

MAX_CHUNK_LINES = 64  # llama.vim's ring_chunk_size
MAX_CHUNK_CHARS = 4096
SIMILAR = 0.9  # Dice similarity of line sets at or above which a new chunk replaces a kept one


@dataclass(frozen=True)
class Chunk:
    path: str | None
    text: str
    kind: str


class _ChunkLike(Protocol):
    """What `add` reads from each chunk: wire.ContextChunk or a Chunk."""

    @property
    def path(self) -> str | None: ...

    @property
    def text(self) -> str: ...

    @property
    def kind(self) -> str: ...


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: the ring's index holds them
class _Entry:
    chunk: Chunk
    lines: frozenset[str]  # its non-blank lines, stripped: what similarity compares


class _Ring:
    """Entries oldest first, and an index from each line to the entries that hold it, so that a new
    chunk is compared only with the entries it shares lines with (not with the whole ring)."""

    __slots__ = ("entries", "index", "version")

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.index: dict[str, set[_Entry]] = {}
        self.version = 0

    def push(self, new: _Entry, limit: int) -> None:
        """Add at the newest end, replacing the entries it is similar to, then evict beyond `limit`."""
        shared: dict[_Entry, int] = {}
        for line in new.lines:
            for e in self.index.get(line, ()):
                shared[e] = shared.get(e, 0) + 1
        for e, common in shared.items():
            if 2 * common >= SIMILAR * (len(e.lines) + len(new.lines)):  # similarity() >= SIMILAR
                self._remove(e)
        self.entries.append(new)
        for line in new.lines:
            self.index.setdefault(line, set()).add(new)
        while len(self.entries) > limit:
            self._remove(self.entries[0])

    def _remove(self, e: _Entry) -> None:
        self.entries.remove(e)
        for line in e.lines:
            holders = self.index[line]
            holders.discard(e)
            if not holders:
                del self.index[line]


def trim(text: str, max_lines: int = MAX_CHUNK_LINES, max_chars: int = MAX_CHUNK_CHARS) -> str:
    """The text with `\\r\\n` as `\\n`, blank lines at either end dropped, and no more than
    `max_lines` lines or `max_chars` characters: the whole lines nearest its middle."""
    if len(text) > 2 * max_chars + 2:
        # Slice first so a megabyte chunk costs no more than a small one; the partial lines at the
        # slice's ends are dropped below unless the slice reaches the text's own ends.
        mid = len(text) // 2
        start, end = mid - max_chars - 1, mid + max_chars + 1
        text = text[start:end]
        head_partial = tail_partial = True
    else:
        head_partial = tail_partial = False
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if head_partial and len(lines) > 1:
        lines = lines[1:]
    if tail_partial and len(lines) > 1:
        lines = lines[:-1]
    lines = _strip_blank_ends([line.rstrip() for line in lines])
    if not lines:
        return ""
    if len(lines) <= max_lines and sum(map(len, lines)) + len(lines) - 1 <= max_chars:
        return "\n".join(lines)
    # Grow a window outwards from the middle line while it fits both bounds.
    mid = len(lines) // 2
    lo, hi = mid, mid + 1
    size = len(lines[mid])
    if size > max_chars:
        return lines[mid][:max_chars]
    while hi - lo < max_lines:
        grew = False
        for below in (True, False):  # alternate sides so the window stays centred where it can
            if hi - lo >= max_lines:
                break
            if below and hi < len(lines) and size + 1 + len(lines[hi]) <= max_chars:
                size += 1 + len(lines[hi])
                hi += 1
                grew = True
            elif not below and lo > 0 and size + 1 + len(lines[lo - 1]) <= max_chars:
                size += 1 + len(lines[lo - 1])
                lo -= 1
                grew = True
        if not grew:
            break
    return "\n".join(_strip_blank_ends(lines[lo:hi]))


def _strip_blank_ends(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start]:
        start += 1
    while end > start and not lines[end - 1]:
        end -= 1
    return lines[start:end]


def line_set(text: str) -> frozenset[str]:
    return frozenset(s for s in (line.strip() for line in text.split("\n")) if s)


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice similarity of two line sets: 1 for the same lines, 0 for none in common."""
    if not a or not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))


class Workspace:
    def __init__(self, settings: CompletionSettings):
        self.settings = settings
        self._rings: dict[Any, _Ring] = {}
        self._lock = threading.Lock()
        # One counter for every ring: a version is never reused, even after `forget`.
        self._versions = itertools.count(1)
        # Called with the client after its ring changed (outside the lock, on the caller's thread).
        self.on_change: Callable[[Any], None] | None = None

    def add(self, client: Hashable, chunks: Iterable[_ChunkLike]) -> bool:
        """Keep these chunks (oldest first, newest last) in the client's ring. True when it changed."""
        if not self.settings.context:
            return False
        limit = self.settings.context_chunks
        fresh: list[_Entry] = []
        # Newest first: chunks beyond what the ring keeps are never trimmed or compared.
        for c in reversed(list(chunks)):
            text = trim(c.text)
            lines = line_set(text)
            if lines:
                fresh.append(_Entry(Chunk(c.path, text, c.kind), lines))
                if len(fresh) == limit:
                    break
        if not fresh:
            return False
        fresh.reverse()
        with self._lock:
            ring = self._rings.get(client)
            if ring is None:
                ring = self._rings[client] = _Ring()
            before = [e.chunk for e in ring.entries]
            for new in fresh:
                ring.push(new, limit)
            changed = [e.chunk for e in ring.entries] != before
            if changed:
                ring.version = next(self._versions)
        if changed and self.on_change is not None:
            try:
                self.on_change(client)
            except Exception:  # noqa: BLE001 - a listener's bug must not lose the client's context
                log.exception("workspace on_change failed")
        return changed

    def chunks(self, client: Hashable) -> list[Chunk]:
        """The client's chunks, oldest first (a copy: safe to read from any thread)."""
        with self._lock:
            ring = self._rings.get(client)
            return [e.chunk for e in ring.entries] if ring is not None else []

    def version(self, client: Hashable) -> int:
        """Increases whenever the client's ring changes; 0 for a client without one."""
        with self._lock:
            ring = self._rings.get(client)
            return ring.version if ring is not None else 0

    def forget(self, client: Hashable) -> None:
        with self._lock:
            self._rings.pop(client, None)

    def clients(self) -> int:
        with self._lock:
            return len(self._rings)


def fit(chunks: Sequence[Chunk], count_tokens: Callable[[Chunk], int], budget: int) -> list[Chunk]:
    """The newest chunks whose tokens add up to at most `budget`, oldest first.

    Whole chunks only, taken newest first and stopping at the first that does not fit, so the result
    is always the ring's newest end: older chunks never jump over a newer one that was left out.
    `count_tokens` counts a chunk as the prompt will render it (its file header included)."""
    kept: list[Chunk] = []
    used = 0
    for chunk in reversed(chunks):
        cost = count_tokens(chunk)
        if used + cost > budget:
            break
        kept.append(chunk)
        used += cost
    kept.reverse()
    return kept
