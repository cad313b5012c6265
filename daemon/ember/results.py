"""Every method's result and every notification the daemon sends, as TypedDicts.

With wire.py's params, this is the protocol's single source of truth: the daemon's replies are
checked against these types (tests run with EMBER_CHECK_RESULTS=1), the Python client returns them,
and PROTOCOL.md and the VS Code extension's types (src/wire.ts) are generated from them.
Pydantic-free on purpose, so that `ember.client` stays cheap to import. `Annotated[T, "text"]`
carries a field's description into the generated docs.
"""


from typing import (
    Annotated,
    Literal,
    NotRequired,  # pydantic needs these on Python < 3.12
)

from typing_extensions import TypedDict

FinishReason = Literal["stop", "length"]
CompleteFinishReason = Literal["stop", "length", "cut", "time"]
ProgressPhase = Literal["download", "convert", "load", "quantize", "ready", "error"]
ClassifyMethod = Literal["loglikelihood", "first-token-logprobs", "generated-answer", "classifier",
                         "zero-shot-nli"]


# -- shared pieces -----------------------------------------------------------------------------


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: NotRequired[Annotated[int, "complete: prompt tokens whose KV state was reused"]]
    typed_through: NotRequired[Annotated[int, (
        "complete: characters of an earlier completion (same supersede key) that the user typed; "
        "the text is that completion's rest, with no new prefill")]]
    context_tokens: NotRequired[Annotated[int, "complete: workspace context tokens before the prefix"]]


class Timings(TypedDict):
    queue_ms: Annotated[float, "waiting for the model worker"]
    load_ms: Annotated[float, "loading the model (0 when it was resident)"]
    run_ms: float
    total_ms: float
    tokens_per_second: NotRequired[Annotated[float, "generated tokens over run_ms"]]


class PrefixCacheEntry(TypedDict):
    """One KV sequence of the prefix cache."""

    owner: Annotated[str, "the request that last used it: a document's supersede key, or the task"]
    tokens: Annotated[int, "tokens whose KV state it holds"]
    capacity: Annotated[int, "tokens it has room for (its memory is allocated for all of them)"]
    bytes: int
    busy: Annotated[bool, "a request is using it now"]
    idle_s: float
    adapter: NotRequired[Annotated[str, "the LoRA adapter its KV state was computed with"]]


class PrefixCache(TypedDict):
    """The prompt KV states a model keeps between requests."""

    sequences: int
    bytes: int
    budget_bytes: Annotated[int, "prefix_cache_mb; idle sequences are evicted least recently used first to stay within it"]
    kv_bytes_per_token: Annotated[int, "one token's KV state"]
    requests: int
    prompt_tokens: int
    cached_tokens: Annotated[int, "prompt tokens whose KV state was reused"]
    reuse_rate: Annotated[float | None, "cached_tokens / prompt_tokens; null before the first request"]
    evictions: int
    entries: Annotated[list[PrefixCacheEntry], "busy ones first, then idle ones, most recently used first"]


class Latency(TypedDict):
    p50: float
    p95: float
    last: float


class RemoteInfo(TypedDict):
    """A remote model's server and its counters; the URL never carries a secret."""

    served_model: Annotated[str | None, "the model name the server is asked for"]
    url: Annotated[str, "the server's URL, query values masked"]
    server: Literal["tgi", "vllm", "openai"] | None
    health: Literal["ok", "down", "unauthorized", "unknown"]
    last_error: str | None
    checked_at: float | None
    in_flight: int
    max_concurrent: int
    requests: int
    failures: int
    latency_ms: Latency | None
    first_token_ms: Latency | None


class AdapterInfo(TypedDict):
    """A LoRA adapter of a causal LM (configured, or added with models/load)."""

    name: str
    source: Annotated[str, "its folder or hub id"]
    loaded: Annotated[bool, "loaded now (adapters load at their first request or models/load)"]
    engine: NotRequired[Annotated[Literal["onnxruntime", "transformers"], (
        "what runs it: the model's engine (onnxruntime: its graph with LoRA inputs), or a "
        "transformers copy of the model")]]
    engine_note: NotRequired[Annotated[str | None, "why it runs on another engine than the model's"]]
    rank: NotRequired[int | None]
    alpha: NotRequired[float | None]
    target_modules: NotRequired[list[str]]
    memory_bytes: NotRequired[Annotated[int, "its weights"]]


class AdapterUse(TypedDict):
    """The LoRA adapter a generative request ran with."""

    name: str
    engine: Literal["onnxruntime", "transformers"]
    engine_note: Annotated[str | None, "why it ran on another engine than the model's"]


class LocalModel(TypedDict):
    """A loaded model that runs in the daemon."""

    name: str
    label: Annotated[str, "the model's own name (SmolLM2-135M-Instruct), for people to read; `name` is its config name"]
    kind: str
    source: str
    path: Annotated[str | None, "its local files"]
    engine: Literal["onnxruntime", "transformers"]
    engine_note: Annotated[str | None, "why the engine differs from the one configured"]
    device: str
    dtype: str | None
    quantization: str
    quantization_note: str | None
    context_length: int
    memory_bytes: Annotated[int, "the weights (the prefix cache's KV state is counted apart)"]
    prefix_cache: PrefixCache | None
    adapters: NotRequired[Annotated[list[AdapterInfo], "causal LMs: its LoRA adapters"]]
    load_seconds: float
    loaded_at: float
    idle_s: float


class RemoteModel(TypedDict):
    """A loaded model served by a remote server (TGI, vLLM, an Inference Endpoint)."""

    name: str
    label: Annotated[str, "the model's own name (SmolLM2-135M-Instruct), for people to read; `name` is its config name"]
    kind: str
    source: Annotated[str, "the server's URL, query values masked"]
    engine: Literal["remote"]
    engine_note: str | None
    device: Literal["remote"]
    context_length: int
    memory_bytes: Literal[0]
    tokenizer: Annotated[str | None, "its tokenizer's folder; null: token counts are estimated"]
    remote: RemoteInfo
    load_seconds: float
    loaded_at: float
    idle_s: float


class ModelEntry(TypedDict):
    """A configured model; once loaded, its LocalModel or RemoteModel fields too."""

    name: str
    label: Annotated[str, "the model's own name (SmolLM2-135M-Instruct), for people to read; `name` is its config name"]
    source: str
    kind: str
    loaded: bool
    tasks: Annotated[list[str], "the tasks it is the default model of"]
    quantization_requested: NotRequired[Annotated[str, "local models"]]
    engine: NotRequired[Literal["onnxruntime", "transformers", "remote"]]
    remote: NotRequired[RemoteInfo]
    path: NotRequired[str | None]
    engine_note: NotRequired[str | None]
    device: NotRequired[str]
    dtype: NotRequired[str | None]
    quantization: NotRequired[str]
    quantization_note: NotRequired[str | None]
    context_length: NotRequired[int]
    memory_bytes: NotRequired[int]
    prefix_cache: NotRequired[PrefixCache | None]
    adapters: NotRequired[Annotated[list[AdapterInfo], "local causal LMs: their LoRA adapters"]]
    tokenizer: NotRequired[str | None]
    load_seconds: NotRequired[float]
    loaded_at: NotRequired[float]
    idle_s: NotRequired[float]


# -- lifecycle ---------------------------------------------------------------------------------


class ServerInfo(TypedDict):
    name: str
    version: str


class InitializeResult(TypedDict):
    server: ServerInfo
    protocol_version: str
    methods: list[str]
    tasks: list[str]
    models: list[ModelEntry]
    device: Annotated[str | None, "cpu, cuda or mps; null while torch is still loading"]
    pid: int


# -- tokenizer ---------------------------------------------------------------------------------


class TokenizeResult(TypedDict):
    model: str
    count: int
    ids: NotRequired[list[int]]
    tokens: NotRequired[list[str]]
    offsets: NotRequired[Annotated[list[tuple[int, int]] | None,
                                   "[start, end) characters; null where the tokenizer has none"]]
    text: NotRequired[Annotated[str, "with messages: the templated prompt"]]


class DetokenizeResult(TypedDict):
    model: str
    text: str


# -- tasks -------------------------------------------------------------------------------------


class FimInfo(TypedDict):
    format: Annotated[str, "the model family's fill-in-the-middle tokens"]
    truncated: Annotated[bool, "prefix or suffix was cut to fit the context"]


class CutInfo(TypedDict):
    """How an inline completion was ended (complete with prefix)."""

    mode: Annotated[Literal["line", "block", "lines"], (
        "line: finish the cursor's statement; block: the block the cursor opens or is in, ended by "
        "indentation; lines: lines up to a blank line")]
    parser: Annotated[Literal["tree-sitter", "indentation"], "what checked the result: a grammar, or indentation and brackets"]
    language: str | None
    rules: Annotated[list[str], "the rules that changed the model's text, in the order they fired"]


class CompleteResult(TypedDict):
    text: str
    finish_reason: Annotated[CompleteFinishReason, (
        "stop: an end token or stop sequence; length: max_tokens; cut: the cut ended it; "
        "time: max_time_ms ran out")]
    completion_id: NotRequired[Annotated[str, "with prefix: names this completion in completion/feedback"]]
    fim: NotRequired[FimInfo]
    cut: NotRequired[CutInfo]
    first_token_ms: NotRequired[Annotated[float, "from the start of the run to the first token"]]
    model: str
    adapter: NotRequired[Annotated[AdapterUse, "with a LoRA adapter"]]
    usage: Usage
    timings: Timings


class SummarizeResult(TypedDict):
    text: str
    finish_reason: FinishReason
    stages: Annotated[int, "model calls: one per chunk of a long text, plus the final one"]
    model: str
    adapter: NotRequired[Annotated[AdapterUse, "with a LoRA adapter"]]
    usage: Usage
    timings: Timings


class TranslateResult(TypedDict):
    text: str
    finish_reason: FinishReason
    model: str
    adapter: NotRequired[Annotated[AdapterUse, "with a LoRA adapter"]]
    usage: Usage
    timings: Timings


class LabelScore(TypedDict):
    label: str
    score: float


class ClassifyResult(TypedDict):
    label: Annotated[str, "the top label"]
    scores: Annotated[list[LabelScore], "every label, best first; the scores sum to 1"]
    calibrated: bool
    method: Annotated[ClassifyMethod, "how the scores were made"]
    answer: NotRequired[Annotated[str, "generated-answer: the model's own words"]]
    model: str
    usage: Usage
    timings: Timings


class AskResult(TypedDict):
    answer: Annotated[str, "extractive: the span of the context; generative: the model's answer"]
    method: Annotated[Literal["extractive", "generative"], "how the answer was made"]
    supported: Annotated[bool, (
        "extractive: always true (the answer is a span of the context); generative: the passage the "
        "model quoted was found in the context (false: no quote was found there, and none is shown)")]
    start: Annotated[int | None, (
        "[start, end) characters (Unicode code points, as `offsets` of tokenize) of the supporting "
        "span in `context`: the answer (extractive) or the quoted passage (generative); null when "
        "not supported")]
    end: Annotated[int | None, "see `start`"]
    quote: Annotated[str | None, "context[start:end]: the supporting passage, verbatim; null when not supported"]
    score: NotRequired[Annotated[float, (
        "extractive: probability of the span (start times end probability, normalized within its window)")]]
    windows: Annotated[int, (
        "extractive: overlapping windows the context was read in; generative: chunks the context "
        "was split into (1 when it fit the model)")]
    windows_kept: Annotated[int, (
        "generative: chunks kept in the prompt, the most relevant to the question in document order "
        "(fewer than `windows` when the context was narrowed); extractive: equal to `windows`")]
    finish_reason: NotRequired[Annotated[FinishReason, "generative"]]
    model: str
    adapter: NotRequired[Annotated[AdapterUse, "with a LoRA adapter"]]
    usage: Usage
    timings: Timings


class Entity(TypedDict):
    text: str
    label: str
    start: int
    end: int
    score: float


class EntitiesResult(TypedDict):
    entities: list[Entity]
    model: str
    usage: Usage
    timings: Timings


# -- daemon and models -------------------------------------------------------------------------


class Memory(TypedDict):
    rss_bytes: int
    models_bytes: Annotated[int, "weights plus prefix-cache KV state of the loaded models"]


class WorkerInfo(TypedDict):
    device: Annotated[str, 'a remote server\'s worker: "remote URL"']
    threads: Annotated[int, "a local worker: the transformers engine's threads (the onnxruntime engine's are "
                            "in `ember config`); a remote server's worker: its max_concurrent"]
    queue_depth: int
    jobs_done: int
    interleaved: NotRequired[Annotated[int, "a device's worker: jobs run between the steps of another"]]
    held_for_typing: NotRequired[Annotated[int, "a device's worker: times a batch job waited for a typist to pause"]]


class LatencyFigures(TypedDict):
    """A latency histogram's percentiles (buckets 10% wide: within 5% of the true value)."""

    samples: int
    p50: Annotated[float | None, "ms; null without samples"]
    p95: Annotated[float | None, "ms; null without samples"]


class LanguageFigures(TypedDict):
    """Inline completions of one language (or of all) and what users did with them."""

    completions: int
    empty: Annotated[int, "completions whose text was empty"]
    typed_through: Annotated[int, "completions answered from an earlier one that the user typed"]
    shown: Annotated[int, "completions shown (once each; an outcome implies shown)"]
    accepted: Annotated[int, "accepted whole (each completion counts one outcome: its best)"]
    partial: Annotated[int, "partly accepted, never whole"]
    dismissed: int
    accepted_chars: int
    acceptance_rate: Annotated[float | None, "(accepted + partial) / shown; null before one was shown"]
    first_token_ms: LatencyFigures
    total_ms: LatencyFigures
    rules: Annotated[dict[str, int], "the cut's rules: how many completions each changed, most first"]


class CompletionFigures(TypedDict):
    """Local acceptance figures of inline completions, never sent anywhere (`ember stats`)."""

    enabled: Annotated[bool, "completion.stats: false counts nothing"]
    since: Annotated[float | None, "when counting began (Unix seconds): the daemon's start in daemon/status"]
    file: Annotated[str | None, "where they are kept (completion.stats_file)"]
    total: LanguageFigures
    languages: Annotated[dict[str, LanguageFigures], 'by the clients\' language id; "unknown": none was '
                                                     "sent, or feedback named an unknown completion"]


class StatusResult(TypedDict):
    version: str
    pid: int
    uptime_s: float
    requests_served: int
    queue_depth: int
    side_queue_depth: Annotated[int, "tokenizer work waiting"]
    running: Annotated[list[str], "what the workers run now"]
    connections: Annotated[int, "clients of the shared daemon"]
    device: str | None
    memory: Memory
    models: Annotated[list[LocalModel | RemoteModel], "the loaded models"]
    model_loads: int
    workers: list[WorkerInfo]
    completions: NotRequired[Annotated[CompletionFigures, "this daemon's inline completions since it started"]]


class ModelsListResult(TypedDict):
    models: list[ModelEntry]


class ModelsLoadResult(TypedDict):
    model: LocalModel | RemoteModel


class ModelsUnloadResult(TypedDict):
    unloaded: Annotated[bool, "false: it was not loaded"]


# -- notifications the daemon sends ------------------------------------------------------------


class StreamParams(TypedDict):
    """`ember/stream`: one piece of generated text of request `id` (requests with `stream: true`)."""

    id: int | str
    delta: str
    index: Annotated[int, "0, 1, 2, ... within the request"]


class ProgressParams(TypedDict):
    """`ember/progress`: a model is being downloaded, converted or loaded (clients that sent
    `initialize`)."""

    model: str
    label: Annotated[str, "the model's own name"]
    phase: ProgressPhase
    percent: float | None
    bytes: int | None
    total_bytes: int | None
    message: str


def _closed_and_strict() -> None:
    """Checked replies may hold no unknown keys and no coerced values (JSON numbers stay numbers)."""
    from typing_extensions import is_typeddict

    for value in list(globals().values()):
        if is_typeddict(value):
            value.__pydantic_config__ = {"extra": "forbid", "strict": True}  # read by pydantic


_closed_and_strict()
