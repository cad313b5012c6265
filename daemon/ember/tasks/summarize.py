"""`summarize`: an instruct model through its chat template, or a seq2seq checkpoint directly.

A text longer than the model can take is split on paragraph and sentence boundaries, each part is
summarized, and the partial summaries are summarized again until they fit: never silently truncated.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputTooLong
from ..models.loaded import LoadedModel
from ..wire import SummarizeParams
from . import generation
from .base import RunContext
from .generation import Generated, Prompt, chat_prompt, count_tokens, generate, usage

MAX_TOKENS = {"short": 48, "medium": 120, "long": 256}
FORMS = {
    "sentence": "in one sentence",
    "paragraph": "in one short paragraph",
    "bullets": "as three to five short bullet points, each starting with '- '",
}
SYSTEM = ("You are a precise assistant that writes faithful summaries. Use only facts from the "
          "text. Reply with the summary only.")
MAX_STAGES = 6


def _prompt(lm: LoadedModel, text: str, form: str) -> Prompt | list[int]:
    if lm.kind == "seq2seq":
        prefix = "summarize: " if "t5" in type(lm.model).__name__.lower() else ""
        return lm.tokenizer(prefix + text, add_special_tokens=True)["input_ids"]
    instruction = f"Summarize the following text {FORMS[form]}.\n\n{text}"
    return chat_prompt(lm, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": instruction}])


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
            gen = generate(lm, _prompt(lm, part, "paragraph"), params, ctx,
                           MAX_TOKENS["medium"], stream=False)
            prompt_tokens += gen.prompt_tokens
            completion_tokens += gen.completion_tokens
            run_ms += gen.run_ms
            partials.append(gen.text.strip())
        text = "\n\n".join(partials)
    final: Generated = generate(lm, _prompt(lm, text, params.form), params, ctx, max_new)
    stages += 1
    return {
        "text": final.text,
        "finish_reason": final.finish_reason,
        "stages": stages,
        "usage": usage(prompt_tokens + final.prompt_tokens, completion_tokens + final.completion_tokens),
        "run_ms": run_ms + final.run_ms,
    }
