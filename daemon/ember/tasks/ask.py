"""`ask`: answer a question about a text (the selection or the file), with the span that supports it.

Two methods; the result's `method` says which ran (docs/ask.md):

- extractive, on a question-answering model (AutoModelForQuestionAnswering, e.g. a SQuAD-tuned
  encoder). The fast tokenizer cuts question + context into overlapping windows (truncation
  "only_second", `stride` tokens of overlap); every window runs through the model, and spans of
  context tokens (end >= start, at most MAX_ANSWER_TOKENS long) are scored by the product of their
  start and end probabilities, softmaxed within the window. The best span over all windows wins, as
  transformers' question-answering pipeline did before 5.0. Its offsets come from the tokenizer's
  offset mapping, so the answer is always a verbatim span of the context.
- generative, on a causal LM: the chat model answers (the answer streams), then the passage that
  supports it is found. First the sentence of the context that holds the answer's own words (at
  least SUPPORT_COVERAGE of them, more words of the question breaking ties): a verbatim span by
  construction, and one that contains what the answer says. Where no sentence does (an answer in
  other words, or one the text does not hold), the model is asked to repeat the sentence that
  answers the question, and that quote is looked up in the context (exact first, then ignoring case
  and runs of whitespace, mapped back to the original offsets); one that is not found there makes
  the answer `supported: false` with no offsets. Only the answer streams, never the quote.
  A context longer than the model's window is narrowed first (windows.py): overlapping chunks
  ranked by BM25 against the question, the best that fit kept in document order.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from ..errors import InputTooLong, InvalidParams, TaskUnavailable
from ..models.loaded import LoadedModel
from ..wire import AskParams
from . import generation
from .base import RunContext
from .generation import Prompt, chat_prompt, count_tokens, generate, usage
from .sentences import sentence_end
from .windows import STOP_WORDS, Chunk, chunk_text, select_chunks, span_counter, words

# -- extractive ------------------------------------------------------------------------------------

MAX_SEQ_TOKENS = 384  # one window, question included (the old pipeline's max_seq_len)
STRIDE = 128  # tokens of context shared by two neighbouring windows (its doc_stride)
MAX_ANSWER_TOKENS = 30  # longest span considered (its max_answer_len was 15; code spans run longer)
MAX_QUESTION_TOKENS = 64
BATCH = 8  # windows per forward


def extractive(params: AskParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    import torch

    tok = lm.tokenizer
    if not getattr(tok, "is_fast", False):
        raise TaskUnavailable(f"ask: model '{lm.name}' has no fast tokenizer (tokenizer.json), which "
                              "extractive answering needs for its windows and offsets")
    max_len = min(MAX_SEQ_TOKENS, lm.context_length)
    question_tokens = len(tok(params.question, add_special_tokens=False)["input_ids"])
    if question_tokens > min(MAX_QUESTION_TOKENS, max_len // 2):
        raise InputTooLong(question_tokens, min(MAX_QUESTION_TOKENS, max_len // 2), "the question")
    # Question first unless the tokenizer pads on the left (then the model was trained context first).
    question_first = getattr(tok, "padding_side", "right") == "right"
    pair = (params.question, params.context) if question_first else (params.context, params.question)
    enc = tok(*pair, truncation="only_second" if question_first else "only_first", max_length=max_len,
              stride=min(STRIDE, max_len // 4), return_overflowing_tokens=True,
              return_offsets_mapping=True, padding=True, return_tensors="pt")
    context_seq = 1 if question_first else 0
    names = [n for n in getattr(tok, "model_input_names", ["input_ids", "attention_mask"])
             if n in enc and n != "offset_mapping"]
    windows = int(enc["input_ids"].shape[0])
    best: tuple[float, int, int, int] | None = None  # score, window, start token, end token
    with torch.inference_mode():
        for first in range(0, windows, BATCH):
            ctx.between_steps()
            inputs = {n: enc[n][first:first + BATCH].to(lm.device) for n in names}
            out = lm.model(**inputs)
            starts, ends = out.start_logits.float().cpu(), out.end_logits.float().cpu()
            for row in range(starts.shape[0]):
                w = first + row
                allowed = torch.tensor([s == context_seq for s in enc.sequence_ids(w)])
                if not bool(allowed.any()):
                    continue
                found = _best_span(starts[row], ends[row], allowed)
                if best is None or found[0] > best[0]:
                    best = (found[0], w, found[1], found[2])
    prompt_tokens = int(enc["attention_mask"].sum())
    if best is None:  # only possible when no window held any context token
        raise InputTooLong(question_tokens, max_len, "the question (no room is left for the context)")
    score, w, s, e = best
    offsets = enc["offset_mapping"][w]
    start, end = int(offsets[s][0]), int(offsets[e][1])
    return {
        "answer": params.context[start:end], "method": "extractive", "supported": True,
        "start": start, "end": end, "quote": params.context[start:end],
        "score": round(score, 6), "windows": windows, "windows_kept": windows,
        "usage": usage(prompt_tokens, 0),
    }


def _best_span(start_logits: Any, end_logits: Any, allowed: Any) -> tuple[float, int, int]:
    """(probability, start, end) of the best span within one window: start and end are softmaxed
    over the window's context tokens, end >= start, at most MAX_ANSWER_TOKENS tokens."""
    import torch

    neg = torch.finfo(torch.float32).min
    p_start = torch.softmax(start_logits.masked_fill(~allowed, neg), dim=-1)
    p_end = torch.softmax(end_logits.masked_fill(~allowed, neg), dim=-1)
    scores = torch.outer(p_start, p_end)
    scores = torch.triu(scores) - torch.triu(scores, diagonal=MAX_ANSWER_TOKENS)
    scores = scores * torch.outer(allowed, allowed)
    flat = int(torch.argmax(scores))
    start, end = divmod(flat, scores.shape[1])
    return float(scores[start, end]), start, end


# -- generative -----------------------------------------------------------------------------------

MAX_TOKENS = 96  # the answer
QUOTE_TOKENS = 96  # the quote (one line of the text)
SYSTEM = "You answer questions about a text. Use only the text. Be brief."
# Both prompts start with the text, so the second reuses the first's KV state (the prefix cache).
TEXT = 'Here is a text:\n"""\n{context}\n"""\n\n'
ANSWER_ASK = "Answer this question in one short sentence, using only the text: {question}"
# A small model paraphrases when asked to "quote" after answering; asked on its own to repeat the
# sentence, with the reply opened by a quotation mark, it copies.
QUOTE_ASK = ("Which sentence of the text answers this question: {question}\n"
             "Repeat that sentence exactly as it is written in the text.")
QUOTE_OPEN = '"'
CHUNK_TOKENS = 128  # narrowing: chunk size and the overlap of neighbours
CHUNK_OVERLAP = 32
GAP = "\n[...]\n"  # between kept chunks that are not neighbours in the context

# Where the quote starts: "Quote:", "Supporting quote:", "**Evidence:**" ...
_MARKER = re.compile(r"(?i)(?<![^\s*_\"'])[*_]*(?:supporting\s+(?:quote|passage|sentence|text)|quote|"
                     r"passage|evidence)[*_]*\s*:[*_]*")
_MARKER_PHRASES = ("quote:", "supporting quote:", "supporting passage:", "supporting sentence:",
                   "supporting text:", "passage:", "evidence:")
_ANSWER_LABEL = re.compile(r"(?i)^\s*[*_]*answer[*_]*\s*:[*_]*\s*")
_QUOTE_CHARS = "\"'`“”‘’«»"


def messages(context: str, question: str, ask: str = ANSWER_ASK) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": TEXT.format(context=context) + ask.format(question=question)}]


class Reply:
    """The model's reply, split into the answer (streamed as it grows) and the quote (never
    streamed). Text that may still turn into the quote's marker ("Quo", "Supporting") is held
    back until the next delta tells, so the streamed deltas always add up to the final answer."""

    def __init__(self, on_delta: Callable[[str], None] | None):
        self.on_delta = on_delta
        self.raw = ""
        self.sent = ""

    def feed(self, delta: str) -> None:
        self.raw += delta
        self._send(self.answer(complete=False))

    def close(self) -> str:
        answer = self.answer(complete=True)
        self._send(answer)
        return answer

    def _send(self, text: str) -> None:
        if self.on_delta and len(text) > len(self.sent) and text.startswith(self.sent):
            self.on_delta(text[len(self.sent):])
            self.sent = text

    def parts(self) -> tuple[str, str]:
        """(the text before the marker, the text after it); the second is "" without a marker."""
        found = _MARKER.search(self.raw)
        if found is None:
            return self.raw, ""
        return self.raw[:found.start()], self.raw[found.end():]

    def answer(self, complete: bool) -> str:
        before, after = self.parts()
        if complete and not before.strip() and after:
            # The quote came first: the answer follows it on an "Answer:" line.
            label = re.search(r"(?im)^\s*[*_]*answer[*_]*\s*:", after)
            before = after[label.start():] if label else ""
        if not complete and not after and _MARKER.search(self.raw) is None:
            before = before[:_held_back(before)]
        label = _ANSWER_LABEL.match(before)
        if label:
            before = before[label.end():]
        elif not complete and "answer:".startswith(before.strip().lower().strip("*_")):
            return ""  # may still become the "Answer:" label
        return before.strip()

    def quote(self) -> str:
        _, after = self.parts()
        after = re.split(r"(?im)^\s*[*_]*answer[*_]*\s*:", after)[0]  # an answer after the quote
        return _strip_quote(after)


def _strip_quote(text: str) -> str:
    text = re.sub(r"(?i)^\s*[*_]*(?:quote|supporting\s+\w+)[*_]*\s*:", "", text)
    return text.strip().strip(_QUOTE_CHARS).strip()


def _held_back(text: str) -> int:
    """Where text that may be the start of a marker begins (len(text) when none may)."""
    cut = len(text)
    spaces = [m.end() for m in re.finditer(r"\s+", text)][-2:]
    for start in [*spaces, 0]:
        tail = re.sub(r"\s+", " ", text[start:].lower()).strip("*_\"' ")
        if tail and any(p.startswith(tail) for p in _MARKER_PHRASES):
            cut = min(cut, start)
    return cut


SUPPORT_COVERAGE = 0.6  # of the answer's content words that its supporting sentence must hold


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence of `text` (lines without an end mark count as sentences)."""
    spans, start = [], 0
    while start < len(text):
        while start < len(text) and text[start].isspace():
            start += 1
        if start >= len(text):
            break
        end = sentence_end(text, start) or len(text)
        spans.append((start, len(text[:end].rstrip())))
        start = end
    return [(a, b) for a, b in spans if b > a]


def anchored_support(answer: str, question: str, context: str) -> tuple[int, int] | None:
    """The sentence of `context` that holds the most of the answer's content words (the question's
    words break ties, then the shorter sentence), if it holds SUPPORT_COVERAGE of them."""
    wanted = set(words(answer)) - STOP_WORDS
    if not wanted:
        return None
    asked = set(words(question)) - STOP_WORDS
    best: tuple[float, int, int] | None = None
    best_span = None
    for start, end in sentence_spans(context):
        held = set(words(context[start:end]))
        key = (len(wanted & held) / len(wanted), len(asked & held), start - end)
        if best is None or key > best:
            best, best_span = key, (start, end)
    if best is None or best[0] < SUPPORT_COVERAGE:
        return None
    return best_span


def locate(quote: str, context: str) -> tuple[int, int] | None:
    """[start, end) of `quote` in `context`: exactly, else ignoring case and runs of whitespace
    (offsets of the original context). A trailing period or ellipsis the model added is dropped.
    Too short a quote (under 3 letters or digits) supports nothing."""
    quote = quote.strip()
    candidates = [quote]
    trimmed = quote.rstrip(".…").rstrip()
    if trimmed != quote:
        candidates.append(trimmed)
    for q in candidates:
        if sum(ch.isalnum() for ch in q) < 3:
            continue
        at = context.find(q)
        if at >= 0:
            return at, at + len(q)
    norm_context, index = _normalized(context)
    for q in candidates:
        if sum(ch.isalnum() for ch in q) < 3:
            continue
        norm_q, _ = _normalized(q)
        norm_q = norm_q.strip()
        at = norm_context.find(norm_q) if norm_q else -1
        if at >= 0:
            return index[at], index[at + len(norm_q) - 1] + 1
    return None


def _normalized(text: str) -> tuple[str, list[int]]:
    """`text` case-folded with each run of whitespace as one space (curly quotes as straight ones),
    and for each of its characters the offset in `text` it came from."""
    out: list[str] = []
    index: list[int] = []
    space = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if not space:
                out.append(" ")
                index.append(i)
            space = True
            continue
        space = False
        ch = {"“": '"', "”": '"', "‘": "'", "’": "'"}.get(ch, ch)
        for folded in ch.casefold():
            out.append(folded)
            index.append(i)
    return "".join(out), index


def narrow(lm: LoadedModel, context: str, question: str, budget: int) -> tuple[list[Chunk], int, int]:
    """The pieces of `context` the prompt shows (all of it when it fits `budget` tokens), the number
    of chunks it was cut into, and how many of them were kept."""
    if count_tokens(lm, context) <= budget:
        return [Chunk(0, len(context))], 1, 1
    chunks = chunk_text(context, lambda t: count_tokens(lm, t), CHUNK_TOKENS, CHUNK_OVERLAP)
    count_span = span_counter(context, lm.tokenizer, generation.CHARS_PER_TOKEN)
    pieces, kept = select_chunks(context, chunks, question, count_span, budget, count_tokens(lm, GAP))
    return pieces, len(chunks), kept


def budget_for(lm: LoadedModel, question: str, max_new: int) -> int:
    """Tokens of context the prompts have room for."""
    overhead = max(generation.prompt_tokens(lm, chat_prompt(lm, messages("", question, ask)))
                   for ask in (ANSWER_ASK, QUOTE_ASK))
    return lm.context_length - overhead - max(max_new, QUOTE_TOKENS) - 8


def generative(params: AskParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    max_new = params.max_tokens or MAX_TOKENS
    budget = budget_for(lm, params.question, max_new)
    if budget < 32:
        raise InputTooLong(lm.context_length - budget + 32, lm.context_length, "the question and max_tokens")
    pieces, chunks, kept = narrow(lm, params.context, params.question, budget)
    shown = GAP.join(params.context[c.start:c.end] for c in pieces)
    ctx.check_cancelled()
    reply = Reply(ctx.on_delta if params.stream else None)
    inner = dataclasses.replace(ctx, on_delta=reply.feed)  # the same request; its deltas parsed first
    gen = generate(lm, chat_prompt(lm, messages(shown, params.question)), params, inner, max_new,
                   stream=True)
    answer = reply.close()
    prompt_used, completion_used, run_ms = gen.prompt_tokens, gen.completion_tokens, gen.run_ms
    found = anchored_support(answer, params.question, params.context) if answer else None
    quote = "" if found else reply.quote()  # the model may have quoted on its own ("Quote: ...")
    if not found and not quote and answer:
        ctx.check_cancelled()
        prompt = chat_prompt(lm, messages(shown, params.question, QUOTE_ASK))
        if prompt.ids is not None and not lm.remote:  # the reply opens with the quotation mark
            prompt = Prompt(ids=prompt.ids + lm.tokenizer(QUOTE_OPEN, add_special_tokens=False)["input_ids"])
        said = generate(lm, prompt, params.model_copy(update={"max_tokens": QUOTE_TOKENS, "stop": []}),
                        dataclasses.replace(ctx, on_delta=None), QUOTE_TOKENS, stream=False,
                        extra_stop=["\n"])
        prompt_used += said.prompt_tokens
        completion_used += said.completion_tokens
        run_ms += said.run_ms
        quote = _strip_quote(said.text)
    if found is None and quote:
        found = locate(quote, params.context)
    result: dict[str, Any] = {
        "answer": answer, "method": "generative", "supported": found is not None,
        "start": found[0] if found else None, "end": found[1] if found else None,
        "quote": params.context[found[0]:found[1]] if found else None,
        "windows": chunks, "windows_kept": kept,
        "finish_reason": gen.finish_reason,
        "usage": usage(prompt_used, completion_used),
        "run_ms": run_ms,
    }
    return result


def run(params: AskParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    method = params.method
    if method == "auto":
        method = "extractive" if lm.kind == "question-answering" else "generative"
    if method == "extractive" and lm.kind != "question-answering":
        raise InvalidParams(f"method: extractive needs a question-answering model; model '{lm.name}' is "
                            f"{lm.kind} (configure one and name it in `model` or tasks.ask)",
                            {"model": lm.name, "kind": lm.kind})
    if method == "generative" and lm.kind != "causal-lm":
        raise InvalidParams(f"method: generative needs a causal LM; model '{lm.name}' is {lm.kind}",
                            {"model": lm.name, "kind": lm.kind})
    return extractive(params, lm, ctx) if method == "extractive" else generative(params, lm, ctx)
