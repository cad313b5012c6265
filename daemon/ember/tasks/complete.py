"""`complete`: continue a prompt, answer chat messages, or fill in the middle at the cursor."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidParams, TaskUnavailable
from ..models.loaded import LoadedModel
from ..wire import CompleteParams
from .base import RunContext
from .generation import chat_ids, generate, usage

DEFAULT_MAX_TOKENS = 128

# Fill-in-the-middle formats, by the special tokens a tokenizer has: (prefix, suffix, middle, style)
FIM_FORMATS = [
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "starcoder"),
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "qwen"),
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "deepseek"),
    ("▁<PRE>", "▁<SUF>", "▁<MID>", "codellama"),
    ("<PRE>", "<SUF>", "<MID>", "codellama"),
]

CURSOR = "<CURSOR>"
FIM_FALLBACK_SYSTEM = (
    "You are a code completion engine. The user shows a file with the marker <CURSOR>. "
    "Reply with only the text to insert at <CURSOR>: no explanation, no repetition of the "
    "surrounding code, no Markdown fences."
)


def fim_format(tokenizer: Any) -> tuple[str, str, str, str] | None:
    vocab = tokenizer.get_vocab()
    for fmt in FIM_FORMATS:
        if all(tok in vocab for tok in fmt[:3]):
            return fmt
    return None


def _fit_fim(tokenizer: Any, prefix: str, suffix: str, budget: int) -> tuple[list[int], list[int], bool]:
    """Token ids of prefix and suffix, keeping the text nearest the cursor when they are too long."""
    pre = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    suf = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    if len(pre) + len(suf) <= budget:
        return pre, suf, False
    keep_suf = min(len(suf), budget // 4)
    keep_pre = budget - keep_suf
    return pre[len(pre) - keep_pre:] if keep_pre else [], suf[:keep_suf], True


def _strip_fences(text: str) -> str:
    match = re.fullmatch(r"\s*```[\w+-]*\n(.*?)\n?```\s*", text, re.S)
    return match.group(1) if match else text


def run(params: CompleteParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    if lm.kind != "causal-lm":
        raise TaskUnavailable(f"complete needs a causal LM; model '{lm.name}' is a {lm.kind} model")
    given = [k for k in ("prompt", "messages", "prefix") if getattr(params, k) is not None]
    if params.suffix is not None and params.prefix is None:
        given.append("prefix")  # suffix alone means "fill at the start of the file"
    if len(given) != 1:
        raise InvalidParams("give exactly one of: prompt, messages, or prefix (with optional suffix)")
    tok = lm.tokenizer
    max_new = params.max_tokens or DEFAULT_MAX_TOKENS
    result: dict[str, Any] = {}
    if params.prompt is not None:
        ids = tok(params.prompt, add_special_tokens=True)["input_ids"]
        gen = generate(lm, ids, params, ctx, DEFAULT_MAX_TOKENS)
    elif params.messages is not None:
        if not params.messages:
            raise InvalidParams("messages: must not be empty")
        ids = chat_ids(lm, [m.model_dump() for m in params.messages])
        gen = generate(lm, ids, params, ctx, DEFAULT_MAX_TOKENS)
    else:
        prefix, suffix = params.prefix or "", params.suffix or ""
        budget = max(16, lm.context_length - max_new - 64)
        fmt = fim_format(tok)
        pre_ids, suf_ids, truncated = _fit_fim(tok, prefix, suffix, budget)
        if fmt is not None:
            p, s, m, style = fmt
            ids = ([tok.convert_tokens_to_ids(p)] + pre_ids + [tok.convert_tokens_to_ids(s)]
                   + suf_ids + [tok.convert_tokens_to_ids(m)])
            gen = generate(lm, ids, params, ctx, DEFAULT_MAX_TOKENS)
        else:
            style = "chat-fallback"
            shown = tok.decode(pre_ids) + CURSOR + tok.decode(suf_ids)
            ids = chat_ids(lm, [{"role": "system", "content": FIM_FALLBACK_SYSTEM},
                                {"role": "user", "content": shown}])
            # Fences would appear in the stream before we could strip them: stream the stripped text.
            gen = generate(lm, ids, params, ctx, DEFAULT_MAX_TOKENS, stream=False)
            gen.text = _strip_fences(gen.text)
            if params.stream and ctx.on_delta and gen.text:
                ctx.on_delta(gen.text)
        result["fim"] = {"format": style, "truncated": truncated}
    result.update(text=gen.text, finish_reason=gen.finish_reason,
                  usage=usage(gen.prompt_tokens, gen.completion_tokens), run_ms=gen.run_ms)
    return result
