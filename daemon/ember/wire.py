"""Every request's params and result type, and the METHODS table.

This module is the single source of truth for the protocol: handlers validate params with these
models, PROTOCOL.md documents them, and a test checks that both agree.
Params are strict (no coercion) and closed (unknown keys are errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    """Base of all params: strict types, unknown keys rejected."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# -- shared pieces -----------------------------------------------------------------------------


class Message(Params):
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


class GenerationOptions(Params):
    """Sampling and length options shared by the generative tasks."""

    model: str | None = Field(default=None, description="configured model name to use")
    max_tokens: Annotated[int, Field(ge=1, le=32768)] | None = Field(
        default=None, description="most tokens to generate (task default when absent)"
    )
    temperature: Annotated[float, Field(ge=0.0, le=5.0)] = Field(
        default=0.0, description="0 means greedy decoding"
    )
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    top_k: Annotated[int, Field(ge=0)] = 0
    stop: list[str] = Field(default_factory=list, description="stop sequences (not in the text)")
    seed: int | None = Field(default=None, description="seed for sampling, for repeatable output")
    stream: bool = Field(default=False, description="send ember/stream notifications")


# -- lifecycle ---------------------------------------------------------------------------------


class InitializeParams(Params):
    """Optional handshake; `process_id` makes the daemon exit when that process dies."""

    process_id: int | None = None
    client_info: dict[str, Any] | None = None


class NoParams(Params):
    """Methods without parameters."""


# -- tokenizer ---------------------------------------------------------------------------------


class TokenizeParams(Params):
    """Tokenize `text`, or apply the chat template to `messages` and tokenize the prompt."""

    text: str | None = None
    messages: list[Message] | None = None
    model: str | None = None
    add_special_tokens: bool = Field(default=False, description="add BOS/EOS as the model does")
    add_generation_prompt: bool = Field(
        default=True, description="with messages: end with the assistant turn's opening"
    )
    return_ids: bool = True
    return_tokens: bool = True
    return_offsets: bool = True


class DetokenizeParams(Params):
    """Turn token ids back into text."""

    ids: list[int]
    model: str | None = None
    skip_special_tokens: bool = False


# -- tasks -------------------------------------------------------------------------------------


class CompleteParams(GenerationOptions):
    """Continue `prompt`, answer `messages`, or fill in between `prefix` and `suffix`."""

    prompt: str | None = None
    messages: list[Message] | None = None
    prefix: str | None = None
    suffix: str | None = None


class SummarizeParams(GenerationOptions):
    """Summarize `text`; long texts are summarized in stages."""

    text: str
    form: Literal["sentence", "paragraph", "bullets"] = "paragraph"
    length: Literal["short", "medium", "long"] = "medium"


class TranslateParams(GenerationOptions):
    """Translate `text` into `target`; code blocks and Markdown structure are kept."""

    text: str
    target: str = Field(min_length=1)
    source: str | None = None


class ClassifyParams(Params):
    """Score `text` against `labels`: a probability for each label, summing to 1."""

    text: str
    labels: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["positive", "negative", "neutral"], min_length=2
    )
    model: str | None = None
    calibrate: bool = Field(default=True, description="correct each label's prior (instruct models)")


class EntitiesParams(Params):
    """Named entities in `text`, through a configured token-classification model."""

    text: str
    model: str | None = None


class ModelParams(Params):
    """Names one configured model."""

    model: str


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    name: str
    params: type[Params] | None  # None: params are ignored (and may be absent)
    summary: str
    result: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("initialize", InitializeParams, "Optional handshake; returns what the daemon offers.",
               "{server: {name, version}, protocol_version, methods, tasks, models, device, pid}"),
        Method("shutdown", None, "Stop taking work; the daemon then waits for `exit`.", "null"),
        Method("tokenize", TokenizeParams, "Tokenize text, or a chat prompt built from messages.",
               "{model, count, ids, tokens, offsets, text?}"),
        Method("detokenize", DetokenizeParams, "Decode token ids.", "{model, text}"),
        Method("complete", CompleteParams, "Continue a prompt, answer chat messages, or fill in the middle.",
               "{text, finish_reason: stop|length|cancelled, model, usage, timings}"),
        Method("summarize", SummarizeParams, "Summarize text, in stages when it is long.",
               "{text, finish_reason, stages, model, usage, timings}"),
        Method("translate", TranslateParams, "Translate text, keeping code and Markdown intact.",
               "{text, finish_reason, model, usage, timings}"),
        Method("classify", ClassifyParams, "Probability of each label and the top label.",
               "{label, scores: [{label, score}], calibrated, model, usage, timings}"),
        Method("entities", EntitiesParams, "Named entities from a token-classification model.",
               "{entities: [{text, label, start, end, score}], model, usage, timings}"),
        Method("daemon/status", None, "Loaded models, memory, queue and counters.",
               "{version, pid, uptime_s, requests_served, queue_depth, running, memory, models, workers}"),
        Method("models/list", None, "Every configured model and whether it is loaded.",
               "{models: [{name, source, kind, loaded, ...}]}"),
        Method("models/load", ModelParams, "Load a configured model now.", "{model: {...status}}"),
        Method("models/unload", ModelParams, "Unload a model and free its memory.", "{unloaded: bool}"),
    ]
}

NOTIFICATIONS_IN = ("$/cancelRequest", "exit")
NOTIFICATIONS_OUT = ("ember/stream", "ember/progress")
