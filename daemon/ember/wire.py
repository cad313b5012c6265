"""Every request's params and result type, and the METHODS table.

This module (with results.py, the result types) is the single source of truth for the protocol:
handlers validate params with these models, replies are checked against the result types when
EMBER_CHECK_RESULTS is set (the tests set it), PROTOCOL.md and the VS Code extension's types are
generated from both, and tests fail when a generated file is stale.
Params are strict (no coercion) and closed (unknown keys are errors); so are checked results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from . import results as r


class Params(BaseModel):
    """Base of all params: strict types, unknown keys rejected."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# -- shared pieces -----------------------------------------------------------------------------

PRIORITY_HELP = (
    "scheduling class on the model worker: interactive runs before normal, normal before batch; "
    "clients take turns within a class (default: interactive for complete, normal otherwise)")
Priority = Annotated[Literal["interactive", "normal", "batch"] | None, Field(description=PRIORITY_HELP)]


class Message(Params):
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


class GenerationOptions(Params):
    """Sampling and length options shared by the generative tasks."""

    model: str | None = Field(default=None, description="configured model name (default: the task's)")
    max_tokens: Annotated[int, Field(ge=1, le=32768)] | None = Field(
        default=None, description="most tokens to generate (task default when absent)"
    )
    temperature: Annotated[float, Field(ge=0.0, le=5.0)] = Field(
        default=0.0, description="0 means greedy decoding"
    )
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = Field(default=1.0, description="nucleus sampling")
    top_k: Annotated[int, Field(ge=0)] = Field(default=0, description="top-k sampling (0: off)")
    stop: list[str] = Field(default_factory=list, description="stop sequences (not in the text)")
    seed: int | None = Field(default=None, description="seed for sampling, for repeatable output")
    stream: bool = Field(default=False, description="send ember/stream notifications")
    priority: Priority = None
    adapter: str | None = Field(default=None, max_length=64, description=(
        "a LoRA adapter of the model (models/list shows them); \"\" for none; default: the task's "
        "([tasks.adapters])"))


# -- lifecycle ---------------------------------------------------------------------------------


class InitializeParams(Params):
    """Optional handshake; `process_id` makes the daemon exit when that process dies."""

    process_id: int | None = Field(
        default=None, validation_alias=AliasChoices("process_id", "processId"),
        description="the editor's pid: exit when it dies (`processId`, as in LSP, is accepted too)")
    client_info: dict[str, Any] | None = Field(default=None, description="free-form, for the log")


class NoParams(Params):
    """Methods without parameters."""


# -- tokenizer ---------------------------------------------------------------------------------


class TokenizeParams(Params):
    """Tokenize `text`, or apply the chat template to `messages` and tokenize the prompt."""

    text: str | None = Field(default=None, description="text to tokenize (or give messages)")
    messages: list[Message] | None = Field(default=None, description="chat messages: tokenize the templated prompt")
    model: str | None = Field(default=None, description="configured model name (default: tasks.tokenize)")
    add_special_tokens: bool = Field(default=False, description="add BOS/EOS as the model does")
    add_generation_prompt: bool = Field(
        default=True, description="with messages: end with the assistant turn's opening"
    )
    return_ids: bool = Field(default=True, description="include `ids`")
    return_tokens: bool = Field(default=True, description="include `tokens` (the vocabulary's strings)")
    return_offsets: bool = Field(default=True, description="include `offsets`: [start, end) characters")


class DetokenizeParams(Params):
    """Turn token ids back into text."""

    ids: list[int] = Field(description="token ids")
    model: str | None = Field(default=None, description="configured model name (default: tasks.tokenize)")
    skip_special_tokens: bool = Field(default=False, description="leave out special tokens")


# -- tasks -------------------------------------------------------------------------------------


class CompleteParams(GenerationOptions):
    """Continue `prompt`, answer `messages`, or fill in between `prefix` and `suffix`."""

    prompt: str | None = Field(default=None, description="plain text to continue")
    messages: list[Message] | None = Field(default=None, description="chat messages to answer")
    prefix: str | None = Field(default=None, description="text before the cursor (fill in the middle)")
    suffix: str | None = Field(default=None, description="text after the cursor (fill in the middle)")
    supersede: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description=(
            "a key such as the document URI: a later `complete` from this client with the same key "
            "cancels this one (it gets -32800), queued or running; if the new prefix only adds "
            "text that the earlier completion starts with, the answer is that completion's rest "
            "(typing through)"))
    language: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description=(
            "the document's language id (VS Code's languageId or Neovim's filetype): picks the "
            "parser that the cut checks completions with"))
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="the document's path or URI: names the file in workspace context")
    max_time_ms: Annotated[int, Field(ge=1, le=600000)] | None = Field(
        default=None, description=(
            "time budget: past it, generation stops at the next line end (finish_reason `time`)"))
    cut: bool = Field(default=True, description=(
        "with prefix: end the completion where the syntax at the cursor says (one line or one "
        "block), drop fences, preambles and repeats, and keep the file parseable; false returns "
        "the model's text as generated"))
    context: bool = Field(default=True, description=(
        "with prefix: put this client's workspace context (`context/add`) before the prefix"))


class SummarizeParams(GenerationOptions):
    """Summarize `text`; long texts are summarized in stages."""

    text: str = Field(description="the text to summarize")
    form: Literal["sentence", "paragraph", "bullets"] = Field(default="paragraph", description="shape of the summary")
    length: Literal["short", "medium", "long"] = Field(
        default="medium", description="default max_tokens: 48, 120 or 256")


class TranslateParams(GenerationOptions):
    """Translate `text` into `target`; code blocks and Markdown structure are kept."""

    text: str = Field(description="the text to translate (Markdown and code are kept)")
    target: str = Field(min_length=1, description="target language, e.g. French")
    source: str | None = Field(default=None, description="source language (default: detected by the model)")


class ClassifyParams(Params):
    """Score `text` against `labels`: a probability for each label, summing to 1."""

    text: str = Field(description="the text to classify")
    labels: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["positive", "negative", "neutral"], min_length=2,
        description="candidate labels (at least 2)",
    )
    model: str | None = Field(default=None, description="configured model name (default: tasks.classify)")
    calibrate: bool | None = Field(default=None, description=(
        "correct the model's label priors (instruct models). Default: the sentiment labels "
        "(positive/negative/neutral, or positive/negative) are calibrated against shipped example "
        "sentences; other label sets get contextual calibration unless one is a catch-all such as "
        "neutral; false gives the plain label likelihoods"))
    priority: Priority = None


class AskParams(GenerationOptions):
    """Answer `question` from `context` (the selection or the file), with the span that supports it."""

    question: Annotated[str, Field(min_length=1, max_length=4096)] = Field(description="the question")
    context: Annotated[str, Field(min_length=1)] = Field(
        description="the text to answer from: the selection or the whole file")
    method: Literal["auto", "extractive", "generative"] = Field(default="auto", description=(
        "extractive: a question-answering model picks a span of the context; generative: the causal "
        "LM answers and quotes its support; auto: extractive for a question-answering model, "
        "generative for a causal LM"))

    @field_validator("question", "context")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty or only whitespace")
        return value


class EntitiesParams(Params):
    """Named entities in `text`, through a configured token-classification model."""

    text: str = Field(description="the text to search for entities")
    model: str | None = Field(default=None, description="configured model name (default: tasks.entities)")
    priority: Priority = None


class ContextChunk(Params):
    """A piece of text from the workspace: a file opened, edited or saved, or text yanked/copied."""

    text: Annotated[str, Field(min_length=1)] = Field(description="the text (large chunks are trimmed)")
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="the file it comes from (path or URI)")
    kind: Literal["open", "edit", "save", "yank", "copy"] = Field(default="edit", description="how the user met it")


class ContextAddParams(Params):
    """Chunks for this client's workspace context ring (a notification: no reply)."""

    chunks: list[ContextChunk] = Field(max_length=64, description="newest last")


class CompletionFeedbackParams(Params):
    """What the user did with a completion (a notification: no reply); kept locally, never sent."""

    completion_id: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="the `completion_id` of a `complete` result")
    event: Literal["shown", "accepted", "partial", "dismissed"] = Field(description=(
        "shown in the editor; accepted whole; partly accepted (a word or a line); dismissed"))
    accepted_chars: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="with accepted or partial: characters accepted")


class ModelParams(Params):
    """Names one configured model."""

    model: str = Field(description="configured model name")


class ModelAdapterParams(ModelParams):
    """Names one configured model, or one LoRA adapter of it."""

    adapter: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description=(
        "only this LoRA adapter of the model (loading the model too if needed)"))
    source: str | None = Field(default=None, min_length=1, description=(
        "models/load: add the adapter from this folder or hub id (until the daemon exits)"))
    revision: str | None = Field(default=None, description="models/load: the adapter's hub revision")


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    name: str
    params: type[Params] | None  # None: params are ignored (and may be absent)
    summary: str
    result: Any  # a TypedDict of results.py, or None for a null result
    priority: str = "normal"  # the scheduling class of its model work when params give none


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("initialize", InitializeParams, "Optional handshake; returns what the daemon offers.",
               r.InitializeResult),
        Method("shutdown", None, "Stop taking work; the daemon then waits for `exit`.", None),
        Method("tokenize", TokenizeParams, "Tokenize text, or a chat prompt built from messages.",
               r.TokenizeResult),
        Method("detokenize", DetokenizeParams, "Decode token ids.", r.DetokenizeResult),
        Method("complete", CompleteParams, "Continue a prompt, answer chat messages, or fill in the middle.",
               r.CompleteResult, priority="interactive"),
        Method("summarize", SummarizeParams, "Summarize text, in stages when it is long.", r.SummarizeResult),
        Method("translate", TranslateParams, "Translate text, keeping code and Markdown intact.",
               r.TranslateResult),
        Method("classify", ClassifyParams, "Probability of each label and the top label.", r.ClassifyResult),
        Method("ask", AskParams, "Answer a question about a text, with the span that supports it.",
               r.AskResult),
        Method("entities", EntitiesParams, "Named entities from a token-classification model.",
               r.EntitiesResult),
        Method("daemon/status", None, "Loaded models, memory, queue and counters.", r.StatusResult),
        Method("models/list", None, "Every configured model and whether it is loaded.", r.ModelsListResult),
        Method("models/load", ModelAdapterParams, "Load a configured model now, or one of its LoRA adapters.",
               r.ModelsLoadResult),
        Method("models/unload", ModelAdapterParams, "Unload a model and free its memory, or only one of its "
               "LoRA adapters.", r.ModelsUnloadResult),
    ]
}

STREAM = "ember/stream"
PROGRESS = "ember/progress"
CONTEXT_ADD = "context/add"
COMPLETION_FEEDBACK = "completion/feedback"
NOTIFICATIONS_IN = ("$/cancelRequest", "exit", CONTEXT_ADD, COMPLETION_FEEDBACK)
# Params of the notifications a client sends that carry data (validated like a request's params).
NOTIFICATION_PARAMS: dict[str, type[Params]] = {
    CONTEXT_ADD: ContextAddParams, COMPLETION_FEEDBACK: CompletionFeedbackParams}
NOTIFICATIONS_OUT: dict[str, Any] = {STREAM: r.StreamParams, PROGRESS: r.ProgressParams}
CHECK_RESULTS_ENV = "EMBER_CHECK_RESULTS"


@cache
def _adapter(shape: Any) -> TypeAdapter[Any]:
    return TypeAdapter(shape)


def check_payload(shape: Any, payload: bytes | Any, what: str) -> None:
    """Raise ValueError naming `what` and the problem unless `payload` (JSON bytes or a value) fits
    `shape` exactly: no unknown keys, no missing ones, no coerced types."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload)
    try:
        _adapter(shape).validate_json(data)
    except ValidationError as exc:
        raise ValueError(f"{what} does not match wire.py/results.py: {exc}") from None


def valid_request_id(value: Any) -> bool:
    """A JSON-RPC id: a string, a number or null (not a boolean, which JSON parsers call a number)."""
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))
