"""Generated token ids to streamed text: incremental detokenization and stop sequences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

# Decoding restarts this many tokens back, so tokenizers that merge or strip spaces at a piece's
# start decode the new tokens in context.
_CONTEXT_TOKENS = 6


class PostFilter(Protocol):
    """A stage after the stop sequences (the completion cut): it is fed the text that no stop
    sequence can still change, streams its own deltas, and may end generation."""

    stopped: bool
    reason: str | None  # the finish_reason it gives when it ended generation

    def update(self, text: str) -> None: ...

    def finish(self, text: str) -> Any: ...  # an object with the final `.text`


class StopFilter:
    """Text that grows (from any source) to streamed deltas, cut at the first stop sequence.

    Holds back the tail that could still become a stop sequence, so the deltas always add up to
    the final text and never include a stop. Local engines feed it decoded tokens (through
    TextAccumulator); a remote engine feeds it the text a server streams. With a `post` stage, the
    text goes on to it, and it sends the deltas.
    """

    def __init__(self, stop: list[str], on_delta: Callable[[str], None] | None = None,
                 post: PostFilter | None = None):
        self.stop = [s for s in stop if s]
        self.on_delta = on_delta
        self.post = post
        self.text = ""  # the final text so far (after a stop, frozen)
        self.emitted = 0
        self._hit = False  # a stop sequence came

    @property
    def stopped(self) -> bool:
        return self._hit or (self.post is not None and self.post.stopped)

    @property
    def post_reason(self) -> str | None:
        """The post stage's finish_reason when it, not a stop sequence, ended generation."""
        return self.post.reason if self.post is not None and self.post.stopped and not self._hit else None

    def update(self, text: str) -> None:
        """`text` is everything so far; it only ever grows."""
        if self.stopped:
            return
        cut = _first_stop(text, self.stop)
        if cut >= 0:
            self.text, self._hit = text[:cut], True
            self._emit(len(self.text))
            return
        self.text = text
        safe = len(text)
        for s in self.stop:  # longest tail of text that starts a stop sequence
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    safe = min(safe, len(text) - k)
                    break
        self._emit(safe)

    def finish(self, text: str | None = None) -> str:
        """The final text (from `text`, the whole output, unless a stop already froze it)."""
        if not self.stopped and text is not None:
            cut = _first_stop(text, self.stop)
            self.text = text[:cut] if cut >= 0 else text
        if self.post is not None:
            self.text = self.post.finish(self.text).text
            return self.text
        self._emit(len(self.text))
        return self.text

    def _emit(self, upto: int) -> None:
        if self.post is not None:
            self.post.update(self.text[:upto])
            return
        if upto > self.emitted:
            delta = self.text[self.emitted:upto]
            self.emitted = upto
            if self.on_delta:
                self.on_delta(delta)


def _first_stop(text: str, stop: list[str]) -> int:
    return min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)


class TextAccumulator:
    """Turns generated ids into text deltas.

    Holds back text that could still turn into a stop sequence (StopFilter) or that ends in a
    partial UTF-8 character, so the deltas always concatenate to the final text. Only the last few
    tokens are decoded per step, so a long generation costs linear, not quadratic, time.
    """

    def __init__(self, tokenizer: Any, stop: list[str], on_delta: Callable[[str], None] | None = None,
                 post: PostFilter | None = None):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._stops = StopFilter(stop, on_delta, post)
        self._decoded = ""  # text of ids[:_read] (complete characters only)
        self._read = 0  # ids decoded into _decoded
        self._pending = ""  # text past _decoded that ends in a partial character

    @property
    def text(self) -> str:
        return self._stops.text

    @property
    def stopped(self) -> bool:
        return self._stops.stopped

    @property
    def post_reason(self) -> str | None:
        return self._stops.post_reason

    def add(self, new_ids: list[int]) -> None:
        if self.stopped:
            return
        self.ids.extend(new_ids)
        start = max(0, self._read - _CONTEXT_TOKENS)
        before = self._decode(self.ids[start:self._read])
        after = self._decode(self.ids[start:])
        if after.startswith(before):
            new = after[len(before):]
        else:  # the window decodes differently out of context: decode the whole text once
            new = self._decode(self.ids)[len(self._decoded):]
        if new.endswith("\ufffd"):
            self._pending = new  # a character still arriving: wait for its last bytes
        else:
            self._decoded += new
            self._read = len(self.ids)
            self._pending = ""
        self._stops.update(self._decoded)

    def finish(self) -> str:
        # What is still pending is a character cut off by the last token: drop its bytes.
        return self._stops.finish(self._decoded + self._pending.rstrip("\ufffd"))

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True) if ids else ""
