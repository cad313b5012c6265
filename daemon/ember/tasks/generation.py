"""One generation loop for every generative task: sampling options, stop sequences, streaming and
cooperative cancellation within one decoding step."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..errors import InputTooLong, RequestCancelled
from ..models.loaded import LoadedModel
from ..wire import GenerationOptions
from .base import RunContext


@dataclass
class Generated:
    text: str
    finish_reason: str  # stop | length
    prompt_tokens: int
    completion_tokens: int
    run_ms: float


class TextAccumulator:
    """Turns generated ids into text deltas.

    Holds back text that could still turn into a stop sequence or that ends in a partial UTF-8
    character, so the deltas always concatenate to the final text.
    """

    def __init__(self, tokenizer: Any, stop: list[str], on_delta=None):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.on_delta = on_delta
        self.ids: list[int] = []
        self.text = ""  # the final text so far (after a stop, frozen)
        self.emitted = 0
        self.stopped = False

    def add(self, new_ids: list[int]) -> None:
        if self.stopped:
            return
        self.ids.extend(new_ids)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.text, self.stopped = text[:cut], True
            self._emit(len(self.text))
            return
        self.text = text
        safe = len(text)
        if text.endswith("\ufffd"):
            safe = len(text.rstrip("\ufffd"))
        for s in self.stop:  # longest tail of text that starts a stop sequence
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    safe = min(safe, len(text) - k)
                    break
        self._emit(safe)

    def finish(self) -> str:
        if not self.stopped:
            self.text = self.text.rstrip("\ufffd")  # a character cut off by the last token
        self._emit(len(self.text))
        return self.text

    def _emit(self, upto: int) -> None:
        if upto > self.emitted:
            delta = self.text[self.emitted:upto]
            self.emitted = upto
            if self.on_delta:
                self.on_delta(delta)


def check_fits(prompt_tokens: int, lm: LoadedModel, reserve: int = 1) -> None:
    if prompt_tokens + reserve > lm.context_length:
        raise InputTooLong(prompt_tokens, lm.context_length - reserve, "the prompt")


def generate(lm: LoadedModel, input_ids: list[int], opts: GenerationOptions, ctx: RunContext,
             default_max_tokens: int, stream: bool | None = None,
             extra_stop: list[str] | None = None, extra_eos: list[int] | None = None) -> Generated:
    """Generate from `input_ids` (a decoder-only prompt or a seq2seq encoder input)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    ctx.check_cancelled()
    prompt_tokens = len(input_ids)
    max_new = opts.max_tokens or default_max_tokens
    if lm.kind == "causal-lm":
        check_fits(prompt_tokens, lm)
        max_new = min(max_new, lm.context_length - prompt_tokens)
    elif prompt_tokens > lm.context_length:
        raise InputTooLong(prompt_tokens, lm.context_length, "the input")

    streaming = opts.stream if stream is None else stream
    acc = TextAccumulator(lm.tokenizer, list(opts.stop) + list(extra_stop or []),
                          ctx.on_delta if streaming else None)
    is_decoder_only = lm.kind == "causal-lm"

    class Collect(BaseStreamer):
        def __init__(self) -> None:
            self.skipped_prompt = not is_decoder_only
            self.count = 0

        def put(self, value: Any) -> None:
            if not self.skipped_prompt:  # generate() first echoes the prompt
                self.skipped_prompt = True
                return
            ids = value.reshape(-1).tolist()
            if not is_decoder_only and self.count == 0 and len(ids) == 1 and ids[0] == start_id:
                return  # the decoder start token
            self.count += len(ids)
            acc.add(ids)

        def end(self) -> None:
            pass

    class StopWhenAsked(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = ctx.cancelled.is_set() or acc.stopped
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    model = lm.model
    start_id = getattr(model.generation_config, "decoder_start_token_id", None)
    sampling: dict[str, Any] = {"do_sample": opts.temperature > 0}
    if opts.temperature > 0:
        sampling.update(temperature=opts.temperature, top_p=opts.top_p, top_k=opts.top_k or None)
        if opts.seed is not None:
            torch.manual_seed(opts.seed)
    else:
        sampling.update(temperature=None, top_p=None, top_k=None)
    pad_id = lm.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = model.generation_config.eos_token_id
        if isinstance(pad_id, list):
            pad_id = pad_id[0]

    eos = model.generation_config.eos_token_id
    eos_ids = list(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    eos_ids += [i for i in (extra_eos or []) if i not in eos_ids]

    streamer = Collect()
    ids = torch.tensor([input_ids], dtype=torch.long, device=lm.device)
    started = time.monotonic()
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max(1, max_new),
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([StopWhenAsked()]),
            pad_token_id=pad_id,
            eos_token_id=eos_ids or None,
            **sampling,
        )
    run_ms = (time.monotonic() - started) * 1000
    if ctx.cancelled.is_set():
        raise RequestCancelled("request cancelled")
    generated = out.shape[1] - (prompt_tokens if is_decoder_only else 1)
    text = acc.finish()
    last = int(out[0, -1])
    hit_eos = generated > 0 and last in eos_ids
    finish = "stop" if (acc.stopped or hit_eos) else "length"
    return Generated(text, finish, prompt_tokens, streamer.count or max(generated, 0), run_ms)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}


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
