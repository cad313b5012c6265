"""`translate`: prose is translated, code and Markdown structure are copied through untouched.

The text is cut into blocks: fenced and indented code, blank lines and table rules are kept
verbatim; headings, list items and quotes keep their markers and only their words are translated;
inline code spans are protected by placeholders, and if the model loses one, the words around the
code are translated separately instead, so code always survives byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..models.loaded import LoadedModel
from ..wire import TranslateParams
from .base import RunContext
from .generation import Prompt, chat_prompt, count_tokens, generate, usage

FENCE = re.compile(r"^\s*(```+|~~~+)")
MARKER = re.compile(r"^(\s*(?:#{1,6}\s+|[-*+]\s+(?:\[[ xX]\]\s+)?|\d+[.)]\s+|>\s?)*)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1|https?://\S+")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


@dataclass
class Block:
    text: str
    translate: bool


def split_blocks(text: str) -> list[Block]:
    """Blocks in order; joining every block's text gives back the input exactly."""
    blocks: list[Block] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence.group(1)):
                j += 1
            blocks.append(Block("".join(lines[i:j + 1]), False))
            i = j + 1
            continue
        body = line.rstrip("\r\n")
        ending = line[len(body):]
        if not body.strip() or line.startswith(("    ", "\t")) or TABLE_RULE.match(body):
            blocks.append(Block(line, False))
        elif body.lstrip().startswith("|"):
            for cell in re.split(r"(\|)", body):
                blocks.append(Block(cell, bool(cell.strip()) and cell != "|"))
            blocks.append(Block(ending, False))
        else:
            prefix = MARKER.match(body).group(1)  # type: ignore[union-attr]
            words = body[len(prefix):]
            lead = len(words) - len(words.lstrip())
            trail = len(words.rstrip())
            blocks += [Block(prefix + words[:lead], False), Block(words[lead:trail], True),
                       Block(words[trail:] + ending, False)]
        i += 1
    return [b for b in blocks if b.text]


class Translator:
    def __init__(self, params: TranslateParams, lm: LoadedModel, ctx: RunContext):
        self.params, self.lm, self.ctx = params, lm, ctx
        self.prompt_tokens = self.completion_tokens = 0
        self.run_ms = 0.0
        self.out: list[str] = []

    def emit(self, piece: str) -> None:
        self.out.append(piece)
        if self.params.stream and self.ctx.on_delta and piece:
            self.ctx.on_delta(piece)

    def _prompt(self, text: str) -> Prompt | list[int]:
        p = self.params
        if self.lm.kind == "seq2seq":
            prefix = ""
            if "t5" in type(self.lm.model).__name__.lower():
                prefix = f"translate {p.source or 'English'} to {p.target}: "
            return self.lm.tokenizer(prefix + text, add_special_tokens=True)["input_ids"]
        source = f"from {p.source} " if p.source else ""
        system = (f"You are a translator. Translate the user's text {source}into {p.target}. "
                  "Copy markers like [[0]] unchanged. Reply with the translation only.")
        return chat_prompt(self.lm, [{"role": "system", "content": system}, {"role": "user", "content": text}])

    def _generate(self, text: str) -> str:
        self.ctx.check_cancelled()
        words = count_tokens(self.lm, text)
        gen = generate(self.lm, self._prompt(text), self.params, self.ctx,
                       max(32, min(1024, 3 * words + 16)), stream=False,
                       extra_stop=["\n"])  # every block is one line: a newline means rambling
        self.prompt_tokens += gen.prompt_tokens
        self.completion_tokens += gen.completion_tokens
        self.run_ms += gen.run_ms
        return gen.text.strip()

    def translate_words(self, text: str) -> None:
        """Translate one run of words; each finished piece is streamed as it is done."""
        spans = [m.group(0) for m in INLINE_CODE.finditer(text)]
        if not spans:
            self.emit(self._generate(text))
            return
        counter = iter(range(len(spans)))
        masked = INLINE_CODE.sub(lambda m: f"[[{next(counter)}]]", text)
        translated = self._generate(masked)
        if all(translated.count(f"[[{k}]]") == 1 for k in range(len(spans))):
            self.emit(re.sub(r"\[\[(\d+)\]\]", lambda m: spans[int(m.group(1))], translated))
            return
        # The model lost a placeholder: translate the words between code spans one by one.
        pos = 0
        for match in INLINE_CODE.finditer(text):
            self._words_between(text[pos:match.start()])
            self.emit(match.group(0))
            pos = match.end()
        self._words_between(text[pos:])

    def _words_between(self, piece: str) -> None:
        if not piece.strip():
            self.emit(piece)
            return
        lead = piece[: len(piece) - len(piece.lstrip())]
        trail = piece[len(piece.rstrip()):]
        self.emit(lead + self._generate(piece.strip()) + trail)


def run(params: TranslateParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    t = Translator(params, lm, ctx)
    for block in split_blocks(params.text):
        if block.translate:
            t.translate_words(block.text)
        else:
            t.emit(block.text)
    return {
        "text": "".join(t.out),
        "finish_reason": "stop",
        "usage": usage(t.prompt_tokens, t.completion_tokens),
        "run_ms": t.run_ms,
    }
