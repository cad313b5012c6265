"""`summarize`: an instruct model through its chat template, or a seq2seq checkpoint directly.

A text longer than the model can take is split on paragraph and sentence boundaries, each part is
summarized, and the partial summaries are summarized again until they fit: never silently truncated.

The answer is cleaned as it streams: a lead-in such as "Here is a summary:" is dropped, and the
sentence form stops at the end of its first sentence (tasks/sentences.py has the rules). A causal
model stops generating there: every token that can end a sentence ends a generation step, and when
the rules cannot tell yet ("3." may become "3.5"; "Dr." is followed by a name), generation goes on
from the text so far.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any

from ..errors import InputTooLong
from ..models.loaded import LoadedModel
from ..wire import SummarizeParams
from . import generation
from .base import RunContext
from .generation import Generated, Prompt, chat_prompt, count_tokens, generate, usage
from .sentences import UNDECIDED, answer_start, sentence_end

MAX_TOKENS = {"short": 48, "medium": 120, "long": 256}
FORMS = {
    "sentence": "in one sentence",
    "paragraph": "in one short paragraph",
    "bullets": "as three to five short bullet points, each starting with '- '",
}
SYSTEM = ("You are a precise assistant that writes faithful summaries. Use only facts from the "
          "text. Reply with the summary only.")
USER = "Summarize the following text {form}.\n\n{text}"
# Text written into the start of the answer per form (causal models only; it is part of the answer).
# None by default: beginning the bullets with "- " made SmolLM2 invent more (docs/summarize.md).
PREFILL: dict[str, str] = {}
MAX_STAGES = 6


def _prompt(lm: LoadedModel, text: str, form: str) -> Prompt | list[int]:
    if lm.kind == "seq2seq":
        prefix = "summarize: " if "t5" in type(lm.model).__name__.lower() else ""
        return lm.tokenizer(prefix + text, add_special_tokens=True)["input_ids"]
    return chat_prompt(lm, messages(text, form))


def messages(text: str, form: str) -> list[dict[str, str]]:
    system = [{"role": "system", "content": SYSTEM}] if SYSTEM else []
    return system + [{"role": "user", "content": USER.format(form=FORMS[form], text=text)}]


def split_text(text: str, count_tokens: Any, budget: int) -> list[str]:
    """Split into pieces of at most `budget` tokens, on paragraph, then sentence, then word edges."""
    pieces: list[str] = []
    current = ""
    units = _units(text, count_tokens, budget)
    for unit in units:
        candidate = f"{current}\n\n{unit}" if current else unit
        if current and count_tokens(candidate) > budget:
            pieces.append(current)
            current = unit
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def _units(text: str, count_tokens: Any, budget: int) -> list[str]:
    out: list[str] = []
    for para in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not para:
            continue
        if count_tokens(para) <= budget:
            out.append(para)
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", para):
            if count_tokens(sentence) <= budget:
                out.append(sentence)
                continue
            words = sentence.split(" ")
            chunk: list[str] = []
            for word in words:
                if chunk and count_tokens(" ".join(chunk + [word])) > budget:
                    out.append(" ".join(chunk))
                    chunk = []
                chunk.append(word)
            if chunk:
                out.append(" ".join(chunk))
    return out


# -- the answer: lead-ins dropped, the sentence form cut at its end --------------------------------


class Answer:
    """The cleaned answer, built from generated text deltas; forwards only text that is final.

    Every form drops a lead-in. "sentence" ends at the first sentence's end; a first sentence of
    fewer than MIN_WORDS words (a heading or greeting copied from the text, "Team sync, Thursday.")
    is skipped when more follows. "bullets" gives one "- " line per point: the model's list items,
    or its sentences when it wrote prose; repeated points are dropped, at most MAX_BULLETS.
    """

    MIN_WORDS = 4
    MAX_BULLETS = 5

    def __init__(self, on_delta: Callable[[str], None] | None, form: str):
        self.on_delta = on_delta
        self.form = form
        self.raw = ""  # everything generated
        self.start: int | None = None  # where the answer starts in raw (after a lead-in)
        self.end: int | None = None  # where the first sentence ends in raw (sentence form)
        self.skipped: tuple[int, int] | None = None  # a too-short first sentence (sentence form)
        self.undecided = False  # raw stops at a period that may not end the sentence
        self.sent = ""  # the answer text already forwarded

    @property
    def done(self) -> bool:
        return self.end is not None

    def feed(self, delta: str) -> None:
        if not self.done:
            self.raw += delta
            self._update(complete=False)

    def close(self) -> str:
        self._update(complete=True)
        return self.text(complete=True)

    def text(self, complete: bool) -> str:
        if self.start is None:
            return ""
        body = self.raw[self.start: self.end]
        if self.form == "bullets":
            return "\n".join(f"- {point}" for point in self._points(body, complete))
        body = body.strip()
        if self.form == "sentence" and not complete and not self.done \
                and len(body.split()) < self.MIN_WORDS:
            return ""  # may still turn out to be a short heading that is skipped
        return body

    def _update(self, complete: bool) -> None:
        if self.start is None:
            self.start = answer_start(self.raw, complete)
            if self.start is None:
                return
        if self.form == "sentence" and not self.done:
            self._find_end(complete)
        text = self.text(complete)
        if self.on_delta and len(text) > len(self.sent) and text.startswith(self.sent):
            self.on_delta(text[len(self.sent):])
            self.sent = text

    def _find_end(self, complete: bool) -> None:
        assert self.start is not None
        while True:
            end = sentence_end(self.raw, self.start, complete)
            self.undecided = end == UNDECIDED
            if end is None or end == UNDECIDED:
                if end is None and complete and not self.raw[self.start:].strip() and self.skipped:
                    self.start, self.end = self.skipped  # nothing followed the short sentence
                return
            short = len(self.raw[self.start:end].split()) < self.MIN_WORDS
            if short and self.skipped is None and not self.sent:
                self.skipped = (self.start, end)
                self.start = end
                continue
            self.end = end
            return

    def _points(self, body: str, complete: bool) -> list[str]:
        """The finished points of a bullet answer (the last one only once the text is complete)."""
        lines = body.lstrip().split("\n")
        marker = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+")
        if marker.match(lines[0]):  # a list: one point per line
            pieces = lines if complete else lines[:-1]
        else:  # prose: one point per sentence
            pieces, pos = [], 0
            while True:
                end = sentence_end(body, pos, complete)
                if end is None or end == UNDECIDED:
                    if complete:
                        pieces.append(body[pos:])
                    break
                pieces.append(body[pos:end])
                pos = end
        points: list[str] = []
        for piece in pieces:
            point = marker.sub("", piece).strip()
            if point and point.lower() not in {p.lower() for p in points}:
                points.append(point)
        return points[: self.MAX_BULLETS]


@functools.lru_cache(maxsize=8)
def sentence_stop_ids(tokenizer: Any) -> tuple[int, ...]:
    """Tokens after which a sentence may have ended: they end in . ! ? (and closing quotes or
    brackets) or hold a line break."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ids = [i for i in range(len(tokenizer)) if i not in special]
    texts = tokenizer.batch_decode([[i] for i in ids])
    ends = re.compile(r"[.!?][\"'”’)\]]*\s*$|\n")
    return tuple(i for i, t in zip(ids, texts, strict=True) if ends.search(t))


MAX_STEPS = 12  # generation steps for one sentence (each abbreviation or decimal point adds one)


def _generate_answer(lm: LoadedModel, prompt: Prompt | list[int], params: SummarizeParams,
                     ctx: RunContext, max_new: int, form: str, stream: bool) -> Generated:
    """Generate the summary; stream its cleaned text when asked."""
    answer = Answer(ctx.on_delta if stream else None, form)
    inner = dataclasses.replace(ctx, on_delta=answer.feed)  # the same request, its deltas shaped
    # Writing into the answer, and stopping at a sentence's end, take the prompt's token ids:
    # a local causal model's. A remote model's chat endpoint answers whole; the answer is cut after.
    steered = lm.kind == "causal-lm" and not lm.remote
    prompt_ids = (prompt.ids if isinstance(prompt, Prompt) else prompt) if steered else None
    prefill = PREFILL.get(form, "") if steered else ""
    if prefill and prompt_ids is not None:
        answer.feed(prefill)
        prompt_ids = prompt_ids + lm.tokenizer(prefill, add_special_tokens=False)["input_ids"]
        prompt = prompt_ids
    if form != "sentence" or prompt_ids is None:
        gen = generate(lm, prompt, params, inner, max_new, stream=True)
        text = answer.close()
        finish = "stop" if answer.done else gen.finish_reason
        return Generated(text, finish, gen.prompt_tokens, gen.completion_tokens, gen.run_ms)

    stops = list(sentence_stop_ids(lm.tokenizer))
    used, run_ms, finish = 0, 0.0, "length"
    for _ in range(MAX_STEPS):
        left = max_new - used
        if left <= 0:
            break
        # Undecided ("in 2025." or "3."): one token tells whether the sentence goes on.
        step = 1 if answer.undecided else left
        so_far = answer.raw[len(prefill):]
        ids = prompt_ids + (lm.tokenizer(so_far, add_special_tokens=False)["input_ids"] if so_far else [])
        gen = generate(lm, ids, params.model_copy(update={"max_tokens": step}), inner, step,
                       stream=True, extra_eos=stops)
        used += gen.completion_tokens
        run_ms += gen.run_ms
        if answer.done:
            finish = "stop"
            break
        if gen.finish_reason == "stop" and not _at_possible_end(gen.text):
            finish = "stop"  # the model's own end of turn, or a stop sequence
            break
    text = answer.close()
    if answer.done:
        finish = "stop"
    return Generated(text, finish, len(prompt_ids), used, run_ms)


def _at_possible_end(text: str) -> bool:
    return bool(text) and (text.rstrip(" ").endswith("\n")
                           or bool(re.search(r"[.!?][\"'”’)\]]*$", text.rstrip())))


def run(params: SummarizeParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    if not params.text.strip():
        return {"text": "", "finish_reason": "stop", "stages": 0, "usage": usage(0, 0), "run_ms": 0.0}
    max_new = params.max_tokens or MAX_TOKENS[params.length]
    overhead = generation.prompt_tokens(lm, _prompt(lm, "", params.form))
    reserve = max_new if lm.kind == "causal-lm" else 0
    budget = lm.context_length - overhead - reserve - 8
    if budget < 32:
        raise InputTooLong(overhead + reserve, lm.context_length, "the summary prompt and length")

    def count(t: str) -> int:
        return count_tokens(lm, t)

    text, stages = params.text, 0
    prompt_tokens = completion_tokens = 0
    run_ms = 0.0
    # Map-reduce until the text fits in one prompt; only the final stage streams.
    while count(text) > budget:
        stages += 1
        if stages > MAX_STAGES:
            raise InputTooLong(count(params.text), budget * MAX_STAGES, "the text")
        parts = split_text(text, count, budget)
        partials = []
        for part in parts:
            ctx.check_cancelled()
            gen = _generate_answer(lm, _prompt(lm, part, "paragraph"), params, ctx,
                                   MAX_TOKENS["medium"], "paragraph", stream=False)
            prompt_tokens += gen.prompt_tokens
            completion_tokens += gen.completion_tokens
            run_ms += gen.run_ms
            partials.append(gen.text.strip())
        text = "\n\n".join(partials)
    final = _generate_answer(lm, _prompt(lm, text, params.form), params, ctx, max_new,
                             params.form, stream=params.stream)
    stages += 1
    return {
        "text": final.text,
        "finish_reason": final.finish_reason,
        "stages": stages,
        "usage": usage(prompt_tokens + final.prompt_tokens, completion_tokens + final.completion_tokens),
        "run_ms": run_ms + final.run_ms,
    }
