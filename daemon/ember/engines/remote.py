"""The remote engine: a causal LM that an inference server runs (TGI, vLLM, an Inference Endpoint,
`transformers serve`, any OpenAI-compatible server), behind the same task code as a local model.

A task's `Prompt` goes to the server as chat `messages` (the server applies the model's template)
or as raw `text` to its raw-prompt endpoint (FIM layouts, plain prompts). The server streams text;
Ember applies stop sequences itself (StopFilter, as for local engines) so that deltas add up to the
text on every server, and closing the stream is how a cancelled request stops the server.

Label scores for classify, best first, as the server allows (`classify` reports which was used):
- `loglikelihood`: the server scores the prompt followed by each label (prompt log-probabilities:
  TGI `generate` with decoder_input_details, vLLM completions with echo), the same scores as a
  local model; needs the model's tokenizer here for the chat template;
- `first-token-logprobs`: the chat endpoint's top log-probabilities of the first answer token
  (OpenAI `logprobs`/`top_logprobs`), each label scored by its first token;
- `generated-answer`: no log-probabilities at all: the model answers greedily and the answer is
  matched to a label (probability 1 for it, or an even split when it names none).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import EmberError, InvalidParams, TaskUnavailable
from .decode import DecodeRequest, Generated
from .endpoint import Access, Cancellable, Endpoint, NeverCancelled, closer, last_response
from .text import StopFilter

log = logging.getLogger(__name__)

# OpenAI's API and TGI take at most four stop sequences; Ember applies all of them to the text
# itself, so the server gets the first four only to stop early.
SERVER_STOPS = 4
TOP_LOGPROBS = 20  # the most OpenAI's API allows


class NotSupported(Exception):
    """The server does not return what this way of scoring needs."""


@dataclass
class Chunk:
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


@dataclass
class ServerInfo:
    """What probing the server found."""

    server: str  # tgi | vllm | openai
    served_model: str
    context_length: int | None
    models: list[str] = field(default_factory=list)


def probe(endpoint: Endpoint, access: Access, served_model: str | None) -> ServerInfo:
    """Ask the server what it is and what it serves; raises RemoteUnavailable when it cannot say."""
    try:
        return _probe(endpoint, access, served_model)
    except EmberError as exc:
        endpoint.record_failure(exc)
        raise


def _probe(endpoint: Endpoint, access: Access, served_model: str | None) -> ServerInfo:
    listed: list[dict[str, Any]] = []
    first_error: EmberError | None = None
    try:
        data = endpoint.get_json("/v1/models", access)
        listed = [m for m in (data.get("data") or []) if isinstance(m, dict) and m.get("id")]
    except EmberError as exc:
        if (exc.data or {}).get("reason") != "no-route":
            raise  # down, slow, or refusing our token: say so now
        first_error = exc
    info: dict[str, Any] = {}
    if not any(m.get("owned_by") == "vllm" for m in listed):
        try:
            info = endpoint.get_json("/info", access)  # TGI (and Inference Endpoints running it)
        except EmberError as exc:
            if first_error is not None:
                raise first_error from exc
    if isinstance(info, dict) and info.get("model_id") and (
            "max_total_tokens" in info or "max_input_tokens" in info or "router" in info):
        server = "tgi"
        ids = [str(info["model_id"])]
        length = info.get("max_input_tokens") or info.get("max_total_tokens")
    else:
        server = "vllm" if any(m.get("owned_by") == "vllm" for m in listed) else "openai"
        ids = [str(m["id"]) for m in listed]
        length = next((m.get("max_model_len") for m in listed if m.get("max_model_len")), None)
    if served_model is None:
        if not ids:
            raise TaskUnavailable(f"the server at {endpoint.public_url} lists no model; set "
                                  "served_model to the name it serves")
        served_model = ids[0]
    elif ids and served_model not in ids and server != "tgi":  # TGI serves one model, any name
        from ..errors import RemoteUnavailable

        raise RemoteUnavailable(
            f"the server at {endpoint.public_url} does not serve '{served_model}' "
            f"(it serves: {', '.join(ids[:5])})",
            {"endpoint": endpoint.public_url, "reason": "model-not-served", "served": ids[:20]})
    endpoint.server = server
    endpoint.mark_ok()
    return ServerInfo(server, served_model, int(length) if length else None, ids)


class RemoteEngine:
    """One configured model on one server. Stateless per request, so requests run concurrently
    (up to the endpoint's max_concurrent); capabilities learned from the server are kept."""

    name = "remote"

    def __init__(self, endpoint: Endpoint, access: Access, info: ServerInfo, tokenizer: Any):
        self.endpoint = endpoint
        self.access = access
        self.server = info.server
        self.served_model = info.served_model
        self.tokenizer = tokenizer  # the model's own, or None
        self.raw_prompts = True  # False once the server shows it has no raw-prompt route
        # None: unknown until tried once; OpenAI-compatible servers may ignore the fields.
        self.prompt_logprobs: bool | None = True if info.server in ("tgi", "vllm") else None
        self.top_logprobs: bool | None = True if info.server in ("tgi", "vllm") else None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "server": self.server, "served_model": self.served_model,
                "endpoint": self.endpoint.public_url}

    def close(self) -> None:
        """Nothing to free: each request's connection closes with it."""

    # -- generation ----------------------------------------------------------------------------

    def generate(self, prompt: Any, req: DecodeRequest, ctx: Cancellable) -> Generated:
        """Stream `prompt`'s continuation from the server (a tasks.generation.Prompt)."""
        started = time.monotonic()
        payload = self._sampling(req)
        stops = list(req.stop) + self._token_texts(req.eos_ids)
        server_stops = [s for s in stops if s][:SERVER_STOPS]
        if server_stops:
            payload["stop"] = server_stops
        if req.eos_ids and self.server == "vllm":
            payload["stop_token_ids"] = sorted(req.eos_ids)
        text, chunks, finish, usage, first_ms = "", 0, None, None, None
        filt = StopFilter(stops, req.on_delta, req.post)
        with self.endpoint.track() as first_token:
            with self._stream(prompt, payload, ctx) as events:
                for chunk in events:
                    ctx.check_cancelled()  # leaving the loop closes the stream: the server stops
                    if chunk.text:
                        if first_ms is None:
                            first_token()
                            first_ms = (time.monotonic() - started) * 1000
                        text += chunk.text
                        chunks += 1
                        filt.update(text)
                        if filt.stopped:
                            break
                    finish = chunk.finish_reason or finish
                    usage = chunk.usage or usage
        final = filt.finish(text)
        prompt_tokens, completion_tokens, cached = self._usage(prompt, usage, final, chunks,
                                                               filt.stopped)
        reason = filt.post_reason or ("stop" if filt.stopped or finish != "length" else "length")
        return Generated(final, reason,
                         prompt_tokens, completion_tokens, (time.monotonic() - started) * 1000,
                         cached, first_ms)

    def _sampling(self, req: DecodeRequest) -> dict[str, Any]:
        s = req.sampling
        payload: dict[str, Any] = {"model": self.served_model, "max_tokens": req.max_new_tokens,
                                   "temperature": s.temperature, "stream": True,
                                   "stream_options": {"include_usage": True}}
        if s.top_p < 1.0:
            payload["top_p"] = s.top_p
        if s.seed is not None:
            payload["seed"] = s.seed
        if s.top_k:
            if self.server != "vllm":
                raise InvalidParams(f"top_k: the {self.server} server at {self.endpoint.public_url} "
                                    "takes no top_k (OpenAI's API has none); use temperature and top_p")
            payload["top_k"] = s.top_k
        return payload

    def _token_texts(self, ids: set[int]) -> list[str]:
        """Extra end tokens (a FIM format's end-of-infill) as text, for the server's stop list."""
        if not ids or self.tokenizer is None:
            return []
        return [t for t in self.tokenizer.convert_ids_to_tokens(sorted(ids)) if t]

    @contextmanager
    def _stream(self, prompt: Any, payload: dict[str, Any], ctx: Cancellable) -> Iterator[Iterator[Chunk]]:
        if prompt.messages is not None:
            with self._chat_stream(prompt.messages, payload, ctx) as chunks:
                yield chunks
            return
        if not self.raw_prompts:
            raise self._no_raw_route()
        body = {**payload, "prompt": prompt.text if prompt.text is not None else ""}
        try:
            with self.endpoint.sse("/v1/completions", body, self.access, ctx) as events:
                yield (_completion_chunk(e) for e in events)
        except EmberError as exc:
            if (exc.data or {}).get("reason") == "no-route":
                self.raw_prompts = False
                raise self._no_raw_route() from exc
            raise

    def _no_raw_route(self) -> TaskUnavailable:
        return TaskUnavailable(
            f"the server at {self.endpoint.public_url} has no raw-prompt endpoint (/v1/completions): "
            "prompt and fill-in-the-middle completion need one; chat messages work",
            {"endpoint": self.endpoint.public_url})

    @contextmanager
    def _chat_stream(self, messages: list[dict[str, str]], payload: dict[str, Any],
                     ctx: Cancellable) -> Iterator[Iterator[Chunk]]:
        client = self.endpoint.inference_client(self.access)
        args = {k: v for k, v in payload.items() if k not in ("model", "stream", "top_k", "stop_token_ids")}
        extra = {k: payload[k] for k in ("top_k", "stop_token_ids") if k in payload}
        watched = None
        try:
            stream = self.endpoint.with_retries(
                lambda: client.chat_completion(messages=messages, model=self.served_model, stream=True,
                                               extra_body=extra or None, **args),
                self.access, ctx, "chat completion")
            watched = closer.watch(ctx.cancelled, last_response())
            yield self._chat_chunks(stream, ctx)
        finally:
            closer.unwatch(watched)
            client.close()  # closes the HTTP stream: a server stops generating for a closed client

    def _chat_chunks(self, stream: Iterator[Any], ctx: Cancellable) -> Iterator[Chunk]:
        try:
            for out in stream:
                choice = out.choices[0] if out.choices else None
                usage = getattr(out, "usage", None)
                yield Chunk(text=(choice.delta.content or "") if choice and choice.delta else "",
                            finish_reason=choice.finish_reason if choice else None,
                            usage=_usage_dict(usage))
        except EmberError:
            raise
        except Exception as exc:  # noqa: BLE001 - read timeouts, dropped connections, error events
            raise self.endpoint.stream_error(exc, self.access, "chat completion", ctx) from exc

    def _usage(self, prompt: Any, usage: dict[str, Any] | None, text: str, chunks: int,
               stopped_here: bool) -> tuple[int, int, int | None]:
        """Token counts as the server reports them; counted here when it reports none (or when
        Ember closed the stream at a stop sequence, before the server's final report)."""
        if usage and not stopped_here:
            return (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                    usage.get("cached_tokens"))
        tok = self.tokenizer
        if prompt.ids is not None:
            prompt_tokens = len(prompt.ids)
        elif usage and usage.get("prompt_tokens"):
            prompt_tokens = int(usage["prompt_tokens"])
        else:
            from ..tasks.generation import CHARS_PER_TOKEN

            source = prompt.text if prompt.messages is None else "".join(m["content"] for m in prompt.messages)
            prompt_tokens = -(-len(source or "") // CHARS_PER_TOKEN)
        completion = (len(tok(text, add_special_tokens=False)["input_ids"]) if tok is not None
                      else chunks)  # servers send about one token per event
        return prompt_tokens, completion, None

    # -- label scores --------------------------------------------------------------------------

    def loglikelihoods(self, prompt: str, answers: list[str], ctx: Cancellable) -> list[float]:
        """log P(answer | prompt) for each answer, from the server's prompt log-probabilities.
        Raises NotSupported where the server returns none."""
        if self.prompt_logprobs is False:
            raise NotSupported("prompt log-probabilities")
        scored: list[Any] | None
        with self.endpoint.track():
            if self.server == "tgi":
                scored = [self._tgi_prompt_logprobs(prompt + a, ctx) for a in answers]
            else:
                scored = self._openai_prompt_logprobs([prompt + a for a in answers], ctx)
        if scored is None or any(s is None for s in scored):
            self.prompt_logprobs = False
            log.info("%s returns no prompt log-probabilities: classify falls back", self.endpoint.public_url)
            raise NotSupported("prompt log-probabilities")
        self.prompt_logprobs = True
        return [_sum_after(tokens, len(prompt)) for tokens in scored]

    def _openai_prompt_logprobs(self, texts: list[str], ctx: Cancellable) -> list[Any] | None:
        out: list[Any] = []
        # vLLM takes a batch of prompts in one request; other servers get one each.
        batches = [texts] if self.server == "vllm" else [[t] for t in texts]
        for batch in batches:
            ctx.check_cancelled()
            body = {"model": self.served_model, "prompt": batch if len(batch) > 1 else batch[0],
                    "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 1}
            data = self.endpoint.post_json("/v1/completions", body, self.access, ctx)
            choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
            if len(choices) < len(batch):
                return None
            for choice, text in zip(choices, batch, strict=False):
                spans = choice_spans(choice, text)
                if spans is None:
                    return None
                out.append(spans)
        return out

    def _tgi_prompt_logprobs(self, text: str, ctx: Cancellable) -> Any:
        client = self.endpoint.inference_client(self.access, url=self.endpoint.url(""))
        try:
            result = self.endpoint.with_retries(
                lambda: client.text_generation(text, details=True, decoder_input_details=True,
                                               max_new_tokens=1, do_sample=False),
                self.access, ctx, "generate")
        finally:
            client.close()
        return prefill_spans(getattr(getattr(result, "details", None), "prefill", None), text)

    def first_token_logprobs(self, messages: list[dict[str, str]], ctx: Cancellable) -> dict[str, float]:
        """The top log-probabilities of the answer's first token: {token text: logprob}."""
        if self.top_logprobs is False:
            raise NotSupported("top log-probabilities")
        client = self.endpoint.inference_client(self.access)
        try:
            with self.endpoint.track():
                out = self.endpoint.with_retries(
                    lambda: client.chat_completion(messages=messages, model=self.served_model,
                                                   max_tokens=1, temperature=0, logprobs=True,
                                                   top_logprobs=TOP_LOGPROBS),
                    self.access, ctx, "chat completion")
        finally:
            client.close()
        content = getattr(getattr(out.choices[0], "logprobs", None), "content", None) if out.choices else None
        if not content or not content[0].top_logprobs:
            self.top_logprobs = False
            log.info("%s returns no top log-probabilities: classify falls back", self.endpoint.public_url)
            raise NotSupported("top log-probabilities")
        self.top_logprobs = True
        return {t.token: float(t.logprob) for t in content[0].top_logprobs}

    # -- the server's tokenizer ----------------------------------------------------------------

    def server_tokenizer(self) -> ServerTokenizer | None:
        """The server's tokenize route, where it has one (TGI, vLLM)."""
        return ServerTokenizer(self) if self.server in ("tgi", "vllm") else None


def _completion_chunk(event: dict[str, Any]) -> Chunk:
    choice = (event.get("choices") or [{}])[0]
    return Chunk(text=choice.get("text") or "", finish_reason=choice.get("finish_reason"),
                 usage=_usage_dict(event.get("usage")))


def _usage_dict(usage: Any) -> dict[str, Any] | None:
    if usage is None:
        return None
    get = usage.get if isinstance(usage, dict) else lambda k: getattr(usage, k, None)
    details = get("prompt_tokens_details")
    cached = (details.get("cached_tokens") if isinstance(details, dict)
              else getattr(details, "cached_tokens", None)) if details else None
    return {"prompt_tokens": get("prompt_tokens"), "completion_tokens": get("completion_tokens"),
            "cached_tokens": cached}


Spans = list[tuple[int, int, float | None]]  # (start, end, logprob) of each token of a text


def _spans(offsets: list[int], logprobs: list[float | None], length: int) -> Spans:
    """Tokens of a text `length` characters long; tokens past it (generated, not scored) dropped."""
    ends = [min(int(e), length) for e in offsets[1:]] + [length]
    return [(int(s), e, lp) for s, e, lp in zip(offsets, ends, logprobs, strict=False) if int(s) < length]


def choice_spans(choice: dict[str, Any], text: str) -> Spans | None:
    """The prompt's tokens from an OpenAI-style completion with `echo` and `logprobs` (vLLM):
    `logprobs.text_offset` and `logprobs.token_logprobs`, the first token's being null. None when
    the server left them out (it ignores `echo`/`logprobs`)."""
    lp = choice.get("logprobs") or {}
    values, offsets = lp.get("token_logprobs"), lp.get("text_offset")
    if not values or offsets is None or len(values) < 2 or len(offsets) != len(values):
        return None
    return _spans(offsets, values, len(text))


def prefill_spans(prefill: Any, text: str) -> Spans | None:
    """The prompt's tokens from TGI's `details.prefill` ({id, text, logprob}; offsets follow from
    the texts)."""
    if not prefill:
        return None
    offsets, at = [], 0
    for token in prefill:
        offsets.append(at)
        at += len(getattr(token, "text", None) or "")
    return _spans(offsets, [getattr(t, "logprob", None) for t in prefill], len(text))


def _sum_after(tokens: Spans, boundary: int) -> float:
    """Sum of the log-probabilities of the tokens that hold text past `boundary` (the answer's)."""
    total = 0.0
    for _start, end, lp in tokens:
        if end > boundary:
            if lp is None or not math.isfinite(lp):
                return -math.inf
            total += lp
    return total


class ServerTokenizer:
    """The server's own tokenize route, where the model's tokenizer is not here (TGI, vLLM).

    Offers what the tokenize task needs: `encode` (ids, token strings, offsets where the server
    reports them), `decode`, and `apply_chat_template` (the server renders the template).
    """

    is_server_tokenizer = True
    chat_template = "the server's"

    def __init__(self, engine: RemoteEngine):
        self.engine = engine

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        e = self.engine
        try:
            return e.endpoint.post_json(path, body, e.access, NeverCancelled())
        except EmberError as exc:
            if (exc.data or {}).get("reason") == "no-route":
                raise TaskUnavailable(
                    f"the server at {e.endpoint.public_url} has no {path} route, and the model's "
                    "tokenizer is not here (set tokenizer = \"<hub id or folder>\")") from exc
            raise

    def encode(self, text: str, add_special_tokens: bool = False) -> Encoding:
        e = self.engine
        if e.server == "tgi":
            tokens = self._post("/tokenize", {"inputs": text, "add_special_tokens": add_special_tokens})
            return Encoding([int(t["id"]) for t in tokens], [str(t.get("text", "")) for t in tokens],
                            [[int(t["start"]), int(t["stop"])] for t in tokens])
        data = self._post("/tokenize", {"model": e.served_model, "prompt": text,
                                        "add_special_tokens": add_special_tokens, "return_token_strs": True})
        ids = [int(i) for i in data.get("tokens") or []]
        return Encoding(ids, data.get("token_strs") or [None] * len(ids), None)

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True,
                            tokenize: bool = False) -> str:
        e = self.engine
        if e.server == "tgi":
            if not add_generation_prompt:
                raise TaskUnavailable("TGI's /chat_tokenize always adds the generation prompt")
            return str(self._post("/chat_tokenize", {"model": e.served_model, "messages": messages})
                       .get("templated_text", ""))
        ids = self._post("/tokenize", {"model": e.served_model, "messages": messages,
                                       "add_generation_prompt": add_generation_prompt}).get("tokens") or []
        return self.decode(ids, skip_special_tokens=False)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        e = self.engine
        if e.server == "tgi":
            raise TaskUnavailable(f"the server at {e.endpoint.public_url} (TGI) has no detokenize route")
        return str(self._post("/detokenize", {"model": e.served_model, "tokens": list(ids)}).get("prompt", ""))


@dataclass
class Encoding:
    ids: list[int]
    tokens: list[str | None]
    offsets: list[list[int]] | None
