"""`complete`: continue a prompt, answer chat messages, or fill in the middle at the cursor."""

from __future__ import annotations

import time
from typing import Any
from weakref import WeakKeyDictionary

from ..errors import InvalidParams, TaskUnavailable
from ..models.loaded import LoadedModel
from ..wire import CompleteParams
from .base import RunContext
from .cut import Cut, LineDeadline
from .generation import CHARS_PER_TOKEN, Prompt, chat_prompt, generate, text_prompt, usage
from .repo_context import ContextFitter, render, repo_format

DEFAULT_MAX_TOKENS = 128

# Fill-in-the-middle layouts, recognised by the special tokens a tokenizer has:
# (style, prefix token, suffix token, middle token, end-of-infill token, text between PRE and prefix)
FIM_FORMATS = [
    ("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>", ""),
    ("qwen", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>", ""),
    ("deepseek", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<|EOT|>", ""),
    ("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>", " "),
]

# Chat-only models have no infill tokens. Asked in chat, a small instruct model explains the code
# instead of writing it, so the fallback continues the prefix as plain text (the model is still a
# language model) and stops before it would rewrite what follows the cursor.
FALLBACK = "prefix-continuation"


def _fallback_stops(suffix: str) -> list[str]:
    stops = ["\n\n"]  # one block at the cursor, as editors show inline completions
    first = next((line.strip() for line in suffix.splitlines() if line.strip()), "")
    if len(first) >= 3:
        stops.append(first)
    return stops


# What fim_format found, per tokenizer: reading a 50,000-token vocabulary costs about 20 ms, too much
# to pay on every keystroke.
_FIM_FOUND: WeakKeyDictionary[Any, tuple[tuple[str, str, str, str, str, str], int | None] | None] = \
    WeakKeyDictionary()


def fim_format(tokenizer: Any) -> tuple[tuple[str, str, str, str, str, str], int | None] | None:
    """The tokenizer's infill layout (a FIM_FORMATS row) and its end-of-infill token id, if any."""
    try:
        return _FIM_FOUND[tokenizer]
    except (KeyError, TypeError):  # TypeError: a tokenizer that cannot be weakly referenced
        pass
    vocab = tokenizer.get_vocab()
    found = next(((fmt, vocab.get(fmt[4])) for fmt in FIM_FORMATS if all(t in vocab for t in fmt[1:4])), None)
    try:
        _FIM_FOUND[tokenizer] = found
    except TypeError:
        pass
    return found


def _fits_untokenized(prefix: str, suffix: str, budget: int) -> bool:
    """True when the text fits without counting: a token covers at least one UTF-8 byte (the
    reserve kept beside `budget` covers the few a tokenizer adds), so an editor's usual few
    thousand characters skip tokenizing twice on every keystroke."""
    return len(prefix.encode()) + len(suffix.encode()) <= budget


def _fit_fim(tokenizer: Any, prefix: str, suffix: str, budget: int) -> tuple[list[int], list[int], bool]:
    """Token ids of prefix and suffix, keeping the text nearest the cursor when they are too long."""
    pre = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    suf = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    if len(pre) + len(suf) <= budget:
        return pre, suf, False
    keep_suf = min(len(suf), budget // 4)
    keep_pre = budget - keep_suf
    return pre[len(pre) - keep_pre:] if keep_pre else [], suf[:keep_suf], True


def _fitter(tok: Any) -> ContextFitter:
    try:
        return _FITTERS[tok]
    except (KeyError, TypeError):
        pass
    fitter = ContextFitter(lambda text: len(tok(text, add_special_tokens=False)["input_ids"]),
                           repo_format(tok.get_vocab()))
    try:
        _FITTERS[tok] = fitter
    except TypeError:
        pass
    return fitter


# Per tokenizer: its repository format (reading the vocabulary costs ~20 ms) and chunk token counts.
_FITTERS: WeakKeyDictionary[Any, ContextFitter] = WeakKeyDictionary()


def _workspace_context(params: CompleteParams, tok: Any, ctx: RunContext, budget: int) -> tuple[str, int]:
    """The workspace context to put before the prefix, and its size in tokens (estimated)."""
    if not ctx.context or tok is None:
        return "", 0
    fitter = _fitter(tok)
    chunks = fitter.fit([c for c in ctx.context if c.path != params.path or c.path is None],
                        min(ctx.context_tokens, budget // 2))
    if not chunks:
        return "", 0
    used = sum(fitter.cost(c) for c in chunks)
    return render(fitter.fmt, chunks, params.path, params.language), used


def _post_stage(params: CompleteParams, ctx: RunContext, prefix: str, suffix: str | None) -> Cut | LineDeadline | None:
    """The cut (inline completions) and the time budget, after the stop sequences."""
    deadline = time.monotonic() + params.max_time_ms / 1000 if params.max_time_ms else None
    on_delta = ctx.on_delta if params.stream else None
    if suffix is not None and params.cut:
        return Cut(prefix, suffix, params.language, on_delta, deadline, ctx.on_preview)
    if deadline is not None:
        return LineDeadline(deadline, on_delta)
    return None


def run(params: CompleteParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    if lm.kind != "causal-lm":
        raise TaskUnavailable(f"complete needs a causal LM; model '{lm.name}' is a {lm.kind} model")
    given = [k for k in ("prompt", "messages", "prefix") if getattr(params, k) is not None]
    if params.suffix is not None and params.prefix is None:
        given.append("prefix")  # suffix alone means "fill at the start of the file"
    if len(given) != 1:
        raise InvalidParams("give exactly one of: prompt, messages, or prefix (with optional suffix)")
    tok = lm.tokenizer  # None for a remote model whose tokenizer is not here
    max_new = params.max_tokens or DEFAULT_MAX_TOKENS
    result: dict[str, Any] = {}
    post: Cut | LineDeadline | None = None
    if params.prompt is not None:
        post = _post_stage(params, ctx, params.prompt, None)
        gen = generate(lm, text_prompt(lm, params.prompt), params, ctx, DEFAULT_MAX_TOKENS, post=post)
    elif params.messages is not None:
        if not params.messages:
            raise InvalidParams("messages: must not be empty")
        post = _post_stage(params, ctx, "", None)
        gen = generate(lm, chat_prompt(lm, [m.model_dump() for m in params.messages]), params, ctx,
                       DEFAULT_MAX_TOKENS, post=post)
    else:
        prefix, suffix = params.prefix or "", params.suffix or ""
        budget = max(16, lm.context_length - max_new - 64)
        context, context_tokens = _workspace_context(params, tok, ctx, budget)
        budget -= context_tokens
        post = _post_stage(params, ctx, prefix, suffix)
        found = fim_format(tok) if tok is not None else None
        if found is not None:
            (style, p, s, m, _eot, lead), eot_id = found
            truncated = False
            if not _fits_untokenized(prefix, suffix, budget):
                pre_ids, suf_ids, truncated = _fit_fim(tok, prefix, suffix, budget)
            if truncated:
                prefix, suffix = tok.decode(pre_ids), tok.decode(suf_ids)
            # Tokenized as one text, as the model saw it in training: special tokens are matched
            # whole and the text between them is pre-tokenized in place.
            # Repository formats put other files before the infill tokens; comment headers are
            # text of the file, inside the prefix.
            repo, inline = (context, "") if context.startswith(("<", "▁<")) else ("", context)
            layout = f"{repo}{p}{lead}{inline}{prefix}{s}{suffix}{m}"
            gen = generate(lm, text_prompt(lm, layout), params, ctx, DEFAULT_MAX_TOKENS,
                           extra_eos=[eot_id] if eot_id is not None else None, post=post)
        else:
            style = FALLBACK
            # Without the cut, stop where a block at the cursor ends (the cut decides that itself).
            stops = _fallback_stops(suffix) if not params.cut else None
            if tok is not None:
                pre_ids, _, truncated = _fit_fim(tok, prefix, "", budget)
                text = tok.decode(pre_ids) if truncated else prefix
                ids = tok(context, add_special_tokens=False)["input_ids"] + pre_ids if context else pre_ids
                prompt = Prompt(ids=ids, text=context + text)
            else:  # no tokenizer here: keep about `budget` tokens' worth of the prefix
                keep = budget * CHARS_PER_TOKEN
                truncated = len(prefix) > keep
                prompt = Prompt(text=prefix[len(prefix) - keep:] if truncated else prefix)
            gen = generate(lm, prompt, params, ctx, DEFAULT_MAX_TOKENS, extra_stop=stops, post=post)
        result["fim"] = {"format": style, "truncated": truncated}
        if isinstance(post, Cut):
            result["cut"] = post.describe()
        if context_tokens:
            result["context_tokens"] = context_tokens
    result.update(text=gen.text, finish_reason=gen.finish_reason,
                  usage=usage(gen.prompt_tokens, gen.completion_tokens, gen.cached_tokens),
                  run_ms=gen.run_ms)
    if "context_tokens" in result:
        result["usage"]["context_tokens"] = result.pop("context_tokens")
    if gen.first_token_ms is not None:
        result["first_token_ms"] = round(gen.first_token_ms, 2)
    return result
