"""Generation for the tasks: their prompts and options in, the text out.

A local model runs Ember's decode loop (engines/decode.py) on its engine, with prefix reuse for
causal LMs. A remote model (engine = "remote") sends the same prompt to its inference server
(engines/remote.py). Tasks build a `Prompt` and never ask which kind of engine they have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engines.decode import DecodeRequest, Generated, SingleUse
from ..engines.decode import generate as decode
from ..engines.sampling import Sampling
from ..engines.text import PostFilter
from ..errors import InputTooLong
from ..models.loaded import LoadedModel
from ..wire import GenerationOptions
from .base import RunContext

__all__ = ["Generated", "Prompt", "chat_ids", "chat_prompt", "check_fits", "count_tokens", "generate",
           "prompt_tokens", "text_prompt", "usage"]

# Without the model's tokenizer here (a remote model whose tokenizer is not available), token counts
# are estimated from characters: about 4 per token for English and 3 for code, so 3 errs on the
# side of more tokens (more summary stages, an earlier FIM cut), never on a prompt that overflows.
CHARS_PER_TOKEN = 3


@dataclass(frozen=True)
class Prompt:
    """What a task asks the model to continue.

    A local engine runs `ids`. A remote engine sends `messages` to the server's chat endpoint (the
    server applies the model's chat template) or else `text` to its raw-prompt endpoint, special
    tokens written out (FIM layouts). Where the model's tokenizer is here, `ids` are set for a
    remote model too: they count tokens and check the context before anything is sent.
    """

    ids: list[int] | None = None
    text: str | None = None
    messages: list[dict[str, str]] | None = None


def text_prompt(lm: LoadedModel, text: str, add_special_tokens: bool = True) -> Prompt:
    tok = lm.tokenizer
    ids = list(tok(text, add_special_tokens=add_special_tokens)["input_ids"]) if tok is not None else None
    return Prompt(ids=ids, text=text)


def chat_prompt(lm: LoadedModel, messages: list[dict[str, str]]) -> Prompt:
    ids = chat_ids(lm, messages) if lm.tokenizer is not None else None
    return Prompt(ids=ids, messages=messages)


def count_tokens(lm: LoadedModel, text: str) -> int:
    """Tokens of `text` alone: exact with the model's tokenizer, else estimated (CHARS_PER_TOKEN)."""
    if lm.tokenizer is not None:
        return len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
    return -(-len(text) // CHARS_PER_TOKEN)


def prompt_tokens(lm: LoadedModel, prompt: Prompt | list[int]) -> int:
    if not isinstance(prompt, Prompt):
        return len(prompt)
    if prompt.ids is not None:
        return len(prompt.ids)
    if prompt.messages is not None:  # the template adds a few tokens per turn
        return sum(count_tokens(lm, m["content"]) + 8 for m in prompt.messages)
    return count_tokens(lm, prompt.text or "")


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


def generate(lm: LoadedModel, prompt: Prompt | list[int], opts: GenerationOptions, ctx: RunContext,
             default_max_tokens: int, stream: bool | None = None,
             extra_stop: list[str] | None = None, extra_eos: list[int] | None = None,
             post: PostFilter | None = None) -> Generated:
    """Generate from `prompt` (token ids: a decoder-only prompt or a seq2seq encoder input).
    A `post` stage (the completion cut) sees the text after the stop sequences and sends the
    stream's deltas itself."""
    ctx.check_cancelled()
    max_new = opts.max_tokens or default_max_tokens
    streaming = opts.stream if stream is None else stream
    if lm.remote:
        if not isinstance(prompt, Prompt):
            prompt = Prompt(ids=list(prompt), text=lm.tokenizer.decode(prompt))
        if prompt.ids is not None:
            check_fits(len(prompt.ids), lm)
            max_new = min(max_new, lm.context_length - len(prompt.ids))
        return lm.engine.generate(prompt, DecodeRequest(
            prompt=prompt.ids or [],
            max_new_tokens=max(1, max_new),
            sampling=Sampling(opts.temperature, opts.top_p, opts.top_k, opts.seed),
            stop=list(opts.stop) + list(extra_stop or []),
            eos_ids=set(extra_eos or []),
            on_delta=ctx.on_delta if streaming and post is None else None,
            post=post,
        ), ctx)
    input_ids = prompt.ids if isinstance(prompt, Prompt) else prompt
    assert input_ids is not None, "a local engine needs the prompt's token ids"
    if lm.kind == "causal-lm":
        tokens = list(input_ids) or start_ids(lm)
        check_fits(len(tokens), lm)
        max_new = min(max_new, lm.context_length - len(tokens))
        source: Any = lm.sequences(ctx.adapter)
    else:
        if len(input_ids) > lm.context_length:
            raise InputTooLong(len(input_ids), lm.context_length, "the input")
        from ..engines.torch_engine import Seq2SeqSequence

        encoder_input = list(input_ids)
        source = SingleUse(lambda capacity: Seq2SeqSequence(lm.engine, encoder_input, capacity))
        tokens = list(lm.decoder_prefix) or [int(lm.tokenizer.pad_token_id or 0)]
    eos = set(lm.eos_ids) | set(extra_eos or [])
    request = DecodeRequest(
        prompt=tokens,
        max_new_tokens=max(1, max_new),
        sampling=Sampling(opts.temperature, opts.top_p, opts.top_k, opts.seed),
        stop=list(opts.stop) + list(extra_stop or []),
        eos_ids=eos,
        on_delta=ctx.on_delta if streaming and post is None else None,
        post=post,
        prefill_only=ctx.prefill_only,
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
