"""Generation for the tasks: their prompts and options in, Ember's decode loop (engines/decode.py)
on the model's engine, with prefix reuse for causal LMs, and the text out."""

from __future__ import annotations

from typing import Any

from ..engines.decode import DecodeRequest, Generated, SingleUse
from ..engines.decode import generate as decode
from ..engines.sampling import Sampling
from ..errors import InputTooLong
from ..models.loaded import LoadedModel
from ..wire import GenerationOptions
from .base import RunContext

__all__ = ["Generated", "chat_ids", "check_fits", "generate", "usage"]


def check_fits(prompt_tokens: int, lm: LoadedModel, reserve: int = 1) -> None:
    if prompt_tokens + reserve > lm.context_length:
        raise InputTooLong(prompt_tokens, lm.context_length - reserve, "the prompt")


def start_ids(lm: LoadedModel) -> list[int]:
    """What an empty prompt continues from: the start of a document (BOS, or the end-of-text
    token that separates documents where the model has no BOS)."""
    tok = lm.tokenizer
    for candidate in (tok.bos_token_id, tok.eos_token_id, *lm.eos_ids):
        if candidate is not None:
            return [int(candidate)]
    return [0]


def generate(lm: LoadedModel, input_ids: list[int], opts: GenerationOptions, ctx: RunContext,
             default_max_tokens: int, stream: bool | None = None,
             extra_stop: list[str] | None = None, extra_eos: list[int] | None = None) -> Generated:
    """Generate from `input_ids` (a decoder-only prompt or a seq2seq encoder input)."""
    ctx.check_cancelled()
    max_new = opts.max_tokens or default_max_tokens
    if lm.kind == "causal-lm":
        prompt = list(input_ids) or start_ids(lm)
        check_fits(len(prompt), lm)
        max_new = min(max_new, lm.context_length - len(prompt))
        source: Any = lm.prefix_cache
    else:
        if len(input_ids) > lm.context_length:
            raise InputTooLong(len(input_ids), lm.context_length, "the input")
        from ..engines.torch_engine import Seq2SeqSequence

        encoder_input = list(input_ids)
        source = SingleUse(lambda capacity: Seq2SeqSequence(lm.engine, encoder_input, capacity))
        prompt = list(lm.decoder_prefix) or [int(lm.tokenizer.pad_token_id or 0)]
    streaming = opts.stream if stream is None else stream
    eos = set(lm.eos_ids) | set(extra_eos or [])
    request = DecodeRequest(
        prompt=prompt,
        max_new_tokens=max(1, max_new),
        sampling=Sampling(opts.temperature, opts.top_p, opts.top_k, opts.seed),
        stop=list(opts.stop) + list(extra_stop or []),
        eos_ids=eos,
        on_delta=ctx.on_delta if streaming else None,
    )
    generated = decode(source, lm.tokenizer, request, ctx, lm.context_length)
    if lm.kind != "causal-lm":
        generated.prompt_tokens = len(input_ids)  # the encoder's input, not the decoder's start
        generated.cached_tokens = 0
    return generated


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> dict[str, int]:
    out = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    if cached_tokens is not None:
        out["cached_tokens"] = cached_tokens
    return out


def chat_ids(lm: LoadedModel, messages: list[dict[str, str]]) -> list[int]:
    """Apply the model's chat template (with the assistant turn opened) and return token ids."""
    tok = lm.tokenizer
    if not getattr(tok, "chat_template", None):
        text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages) + "\n\nAssistant:"
        return tok(text, add_special_tokens=True)["input_ids"]
    out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)
