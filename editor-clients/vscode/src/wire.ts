// Generated from daemon/ember/wire.py and results.py by `python -m ember.protocol_ts`: do not edit.
// Keys are snake_case, as on the wire. Params that have a default are optional here.

export type FinishReason = 'stop' | 'length';
export type ProgressPhase = 'download' | 'convert' | 'load' | 'quantize' | 'ready' | 'error';
export type ClassifyMethod = 'loglikelihood' | 'first-token-logprobs' | 'generated-answer' | 'classifier' | 'zero-shot-nli';

/** Optional handshake; `process_id` makes the daemon exit when that process dies. */
export interface InitializeParams {
  /** the editor's pid: exit when it dies (`processId`, as in LSP, is accepted too) */
  process_id?: number | null;
  /** free-form, for the log */
  client_info?: Record<string, unknown> | null;
}

export interface InitializeResult {
  server: ServerInfo;
  protocol_version: string;
  methods: string[];
  tasks: string[];
  models: ModelEntry[];
  /** cpu, cuda or mps; null while torch is still loading */
  device: string | null;
  pid: number;
}

/** Tokenize `text`, or apply the chat template to `messages` and tokenize the prompt. */
export interface TokenizeParams {
  /** text to tokenize (or give messages) */
  text?: string | null;
  /** chat messages: tokenize the templated prompt */
  messages?: Message[] | null;
  /** configured model name (default: tasks.tokenize) */
  model?: string | null;
  /** add BOS/EOS as the model does */
  add_special_tokens?: boolean;
  /** with messages: end with the assistant turn's opening */
  add_generation_prompt?: boolean;
  /** include `ids` */
  return_ids?: boolean;
  /** include `tokens` (the vocabulary's strings) */
  return_tokens?: boolean;
  /** include `offsets`: [start, end) characters */
  return_offsets?: boolean;
}

export interface TokenizeResult {
  model: string;
  count: number;
  ids?: number[];
  tokens?: string[];
  /** [start, end) characters; null where the tokenizer has none */
  offsets?: [number, number][] | null;
  /** with messages: the templated prompt */
  text?: string;
}

/** Turn token ids back into text. */
export interface DetokenizeParams {
  /** token ids */
  ids: number[];
  /** configured model name (default: tasks.tokenize) */
  model?: string | null;
  /** leave out special tokens */
  skip_special_tokens?: boolean;
}

export interface DetokenizeResult {
  model: string;
  text: string;
}

/** Continue `prompt`, answer `messages`, or fill in between `prefix` and `suffix`. */
export interface CompleteParams extends GenerationOptions {
  /** plain text to continue */
  prompt?: string | null;
  /** chat messages to answer */
  messages?: Message[] | null;
  /** text before the cursor (fill in the middle) */
  prefix?: string | null;
  /** text after the cursor (fill in the middle) */
  suffix?: string | null;
  /** a key such as the document URI: a later `complete` from this client with the same key cancels this one (it gets -32800), queued or running; if the new prefix only adds text that the earlier completion starts with, the answer is that completion's rest (typing through) */
  supersede?: string | null;
  /** the document's language id (VS Code's languageId or Neovim's filetype): picks the parser that the cut checks completions with */
  language?: string | null;
  /** the document's path or URI: names the file in workspace context */
  path?: string | null;
  /** time budget: past it, generation stops at the next line end (finish_reason `time`) */
  max_time_ms?: number | null;
  /** with prefix: end the completion where the syntax at the cursor says (one line or one block), drop fences, preambles and repeats, and keep the file parseable; false returns the model's text as generated */
  cut?: boolean;
  /** with prefix: put this client's workspace context (`context/add`) before the prefix */
  context?: boolean;
}

export interface CompleteResult {
  text: string;
  /** stop: an end token or stop sequence; length: max_tokens; cut: the cut ended it; time: max_time_ms ran out */
  finish_reason: 'stop' | 'length' | 'cut' | 'time';
  /** with prefix: names this completion in completion/feedback */
  completion_id?: string;
  fim?: FimInfo;
  cut?: CutInfo;
  /** from the start of the run to the first token */
  first_token_ms?: number;
  model: string;
  /** with a LoRA adapter */
  adapter?: AdapterUse;
  usage: Usage;
  timings: Timings;
}

/** Summarize `text`; long texts are summarized in stages. */
export interface SummarizeParams extends GenerationOptions {
  /** the text to summarize */
  text: string;
  /** shape of the summary */
  form?: 'sentence' | 'paragraph' | 'bullets';
  /** default max_tokens: 48, 120 or 256 */
  length?: 'short' | 'medium' | 'long';
}

export interface SummarizeResult {
  text: string;
  finish_reason: 'stop' | 'length';
  /** model calls: one per chunk of a long text, plus the final one */
  stages: number;
  model: string;
  /** with a LoRA adapter */
  adapter?: AdapterUse;
  usage: Usage;
  timings: Timings;
}

/** Translate `text` into `target`; code blocks and Markdown structure are kept. */
export interface TranslateParams extends GenerationOptions {
  /** the text to translate (Markdown and code are kept) */
  text: string;
  /** target language, e.g. French */
  target: string;
  /** source language (default: detected by the model) */
  source?: string | null;
}

export interface TranslateResult {
  text: string;
  finish_reason: 'stop' | 'length';
  model: string;
  /** with a LoRA adapter */
  adapter?: AdapterUse;
  usage: Usage;
  timings: Timings;
}

/** Score `text` against `labels`: a probability for each label, summing to 1. */
export interface ClassifyParams {
  /** the text to classify */
  text: string;
  /** candidate labels (at least 2) */
  labels?: string[];
  /** configured model name (default: tasks.classify) */
  model?: string | null;
  /** correct the model's label priors (instruct models). Default: the sentiment labels (positive/negative/neutral, or positive/negative) are calibrated against shipped example sentences; other label sets get contextual calibration unless one is a catch-all such as neutral; false gives the plain label likelihoods */
  calibrate?: boolean | null;
  /** scheduling class on the model worker: interactive runs before normal, normal before batch; clients take turns within a class (default: interactive for complete, normal otherwise) */
  priority?: 'interactive' | 'normal' | 'batch' | null;
}

export interface ClassifyResult {
  /** the top label */
  label: string;
  /** every label, best first; the scores sum to 1 */
  scores: LabelScore[];
  calibrated: boolean;
  /** how the scores were made */
  method: 'loglikelihood' | 'first-token-logprobs' | 'generated-answer' | 'classifier' | 'zero-shot-nli';
  /** generated-answer: the model's own words */
  answer?: string;
  model: string;
  usage: Usage;
  timings: Timings;
}

/** Answer `question` from `context` (the selection or the file), with the span that supports it. */
export interface AskParams extends GenerationOptions {
  /** the question */
  question: string;
  /** the text to answer from: the selection or the whole file */
  context: string;
  /** extractive: a question-answering model picks a span of the context; generative: the causal LM answers and quotes its support; auto: extractive for a question-answering model, generative for a causal LM */
  method?: 'auto' | 'extractive' | 'generative';
}

export interface AskResult {
  /** extractive: the span of the context; generative: the model's answer */
  answer: string;
  /** how the answer was made */
  method: 'extractive' | 'generative';
  /** extractive: always true (the answer is a span of the context); generative: the passage the model quoted was found in the context (false: no quote was found there, and none is shown) */
  supported: boolean;
  /** [start, end) characters (Unicode code points, as `offsets` of tokenize) of the supporting span in `context`: the answer (extractive) or the quoted passage (generative); null when not supported */
  start: number | null;
  /** see `start` */
  end: number | null;
  /** context[start:end]: the supporting passage, verbatim; null when not supported */
  quote: string | null;
  /** extractive: probability of the span (start times end probability, normalized within its window) */
  score?: number;
  /** extractive: overlapping windows the context was read in; generative: chunks the context was split into (1 when it fit the model) */
  windows: number;
  /** generative: chunks kept in the prompt, the most relevant to the question in document order (fewer than `windows` when the context was narrowed); extractive: equal to `windows` */
  windows_kept: number;
  /** generative */
  finish_reason?: 'stop' | 'length';
  model: string;
  /** with a LoRA adapter */
  adapter?: AdapterUse;
  usage: Usage;
  timings: Timings;
}

/** Named entities in `text`, through a configured token-classification model. */
export interface EntitiesParams {
  /** the text to search for entities */
  text: string;
  /** configured model name (default: tasks.entities) */
  model?: string | null;
  /** scheduling class on the model worker: interactive runs before normal, normal before batch; clients take turns within a class (default: interactive for complete, normal otherwise) */
  priority?: 'interactive' | 'normal' | 'batch' | null;
}

export interface EntitiesResult {
  entities: Entity[];
  model: string;
  usage: Usage;
  timings: Timings;
}

export interface StatusResult {
  version: string;
  pid: number;
  uptime_s: number;
  requests_served: number;
  queue_depth: number;
  /** tokenizer work waiting */
  side_queue_depth: number;
  /** what the workers run now */
  running: string[];
  /** clients of the shared daemon */
  connections: number;
  device: string | null;
  memory: Memory;
  /** the loaded models */
  models: (LocalModel | RemoteModel)[];
  model_loads: number;
  workers: WorkerInfo[];
  /** this daemon's inline completions since it started */
  completions?: CompletionFigures;
}

export interface ModelsListResult {
  models: ModelEntry[];
}

/** Names one configured model, or one LoRA adapter of it. */
export interface ModelAdapterParams extends ModelParams {
  /** only this LoRA adapter of the model (loading the model too if needed) */
  adapter?: string | null;
  /** models/load: add the adapter from this folder or hub id (until the daemon exits) */
  source?: string | null;
  /** models/load: the adapter's hub revision */
  revision?: string | null;
}

export interface ModelsLoadResult {
  model: LocalModel | RemoteModel;
}

export interface ModelsUnloadResult {
  /** false: it was not loaded */
  unloaded: boolean;
}

/** `ember/stream`: one piece of generated text of request `id` (requests with `stream: true`). */
export interface StreamParams {
  id: number | string;
  delta: string;
  /** 0, 1, 2, ... within the request */
  index: number;
}

/** `ember/progress`: a model is being downloaded, converted or loaded (clients that sent `initialize`). */
export interface ProgressParams {
  model: string;
  /** the model's own name */
  label: string;
  phase: 'download' | 'convert' | 'load' | 'quantize' | 'ready' | 'error';
  percent: number | null;
  bytes: number | null;
  total_bytes: number | null;
  message: string;
}

/** Chunks for this client's workspace context ring (a notification: no reply). */
export interface ContextAddParams {
  /** newest last */
  chunks: ContextChunk[];
}

/** What the user did with a completion (a notification: no reply); kept locally, never sent. */
export interface CompletionFeedbackParams {
  /** the `completion_id` of a `complete` result */
  completion_id: string;
  /** shown in the editor; accepted whole; partly accepted (a word or a line); dismissed */
  event: 'shown' | 'accepted' | 'partial' | 'dismissed';
  /** with accepted or partial: characters accepted */
  accepted_chars?: number | null;
}

/** Sampling and length options shared by the generative tasks. */
export interface GenerationOptions {
  /** configured model name (default: the task's) */
  model?: string | null;
  /** most tokens to generate (task default when absent) */
  max_tokens?: number | null;
  /** 0 means greedy decoding */
  temperature?: number;
  /** nucleus sampling */
  top_p?: number;
  /** top-k sampling (0: off) */
  top_k?: number;
  /** stop sequences (not in the text) */
  stop?: string[];
  /** seed for sampling, for repeatable output */
  seed?: number | null;
  /** send ember/stream notifications */
  stream?: boolean;
  /** scheduling class on the model worker: interactive runs before normal, normal before batch; clients take turns within a class (default: interactive for complete, normal otherwise) */
  priority?: 'interactive' | 'normal' | 'batch' | null;
  /** a LoRA adapter of the model (models/list shows them); "" for none; default: the task's ([tasks.adapters]) */
  adapter?: string | null;
}

export interface ServerInfo {
  name: string;
  version: string;
}

/** A configured model; once loaded, its LocalModel or RemoteModel fields too. */
export interface ModelEntry {
  name: string;
  /** the model's own name (SmolLM2-135M-Instruct), for people to read; `name` is its config name */
  label: string;
  source: string;
  kind: string;
  loaded: boolean;
  /** the tasks it is the default model of */
  tasks: string[];
  /** local models */
  quantization_requested?: string;
  engine?: 'onnxruntime' | 'transformers' | 'remote';
  remote?: RemoteInfo;
  path?: string | null;
  engine_note?: string | null;
  device?: string;
  dtype?: string | null;
  quantization?: string;
  quantization_note?: string | null;
  context_length?: number;
  memory_bytes?: number;
  prefix_cache?: PrefixCache | null;
  /** local causal LMs: their LoRA adapters */
  adapters?: AdapterInfo[];
  tokenizer?: string | null;
  load_seconds?: number;
  loaded_at?: number;
  idle_s?: number;
}

/** One chat message. */
export interface Message {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface FimInfo {
  /** the model family's fill-in-the-middle tokens */
  format: string;
  /** prefix or suffix was cut to fit the context */
  truncated: boolean;
}

/** How an inline completion was ended (complete with prefix). */
export interface CutInfo {
  /** line: finish the cursor's statement; block: the block the cursor opens or is in, ended by indentation; lines: lines up to a blank line */
  mode: 'line' | 'block' | 'lines';
  /** what checked the result: a grammar, or indentation and brackets */
  parser: 'tree-sitter' | 'indentation';
  language: string | null;
  /** the rules that changed the model's text, in the order they fired */
  rules: string[];
}

/** The LoRA adapter a generative request ran with. */
export interface AdapterUse {
  name: string;
  engine: 'onnxruntime' | 'transformers';
  /** why it ran on another engine than the model's */
  engine_note: string | null;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  /** complete: prompt tokens whose KV state was reused */
  cached_tokens?: number;
  /** complete: characters of an earlier completion (same supersede key) that the user typed; the text is that completion's rest, with no new prefill */
  typed_through?: number;
  /** complete: workspace context tokens before the prefix */
  context_tokens?: number;
}

export interface Timings {
  /** waiting for the model worker */
  queue_ms: number;
  /** loading the model (0 when it was resident) */
  load_ms: number;
  run_ms: number;
  total_ms: number;
  /** generated tokens over run_ms */
  tokens_per_second?: number;
}

export interface LabelScore {
  label: string;
  score: number;
}

export interface Entity {
  text: string;
  label: string;
  start: number;
  end: number;
  score: number;
}

export interface Memory {
  rss_bytes: number;
  /** weights plus prefix-cache KV state of the loaded models */
  models_bytes: number;
}

/** A loaded model that runs in the daemon. */
export interface LocalModel {
  name: string;
  /** the model's own name (SmolLM2-135M-Instruct), for people to read; `name` is its config name */
  label: string;
  kind: string;
  source: string;
  /** its local files */
  path: string | null;
  engine: 'onnxruntime' | 'transformers';
  /** why the engine differs from the one configured */
  engine_note: string | null;
  device: string;
  dtype: string | null;
  quantization: string;
  quantization_note: string | null;
  context_length: number;
  /** the weights (the prefix cache's KV state is counted apart) */
  memory_bytes: number;
  prefix_cache: PrefixCache | null;
  /** causal LMs: its LoRA adapters */
  adapters?: AdapterInfo[];
  load_seconds: number;
  loaded_at: number;
  idle_s: number;
}

/** A loaded model served by a remote server (TGI, vLLM, an Inference Endpoint). */
export interface RemoteModel {
  name: string;
  /** the model's own name (SmolLM2-135M-Instruct), for people to read; `name` is its config name */
  label: string;
  kind: string;
  /** the server's URL, query values masked */
  source: string;
  engine: 'remote';
  engine_note: string | null;
  device: 'remote';
  context_length: number;
  memory_bytes: 0;
  /** its tokenizer's folder; null: token counts are estimated */
  tokenizer: string | null;
  remote: RemoteInfo;
  load_seconds: number;
  loaded_at: number;
  idle_s: number;
}

export interface WorkerInfo {
  /** a remote server's worker: "remote URL" */
  device: string;
  /** a local worker: the transformers engine's threads (the onnxruntime engine's are in `ember config`); a remote server's worker: its max_concurrent */
  threads: number;
  queue_depth: number;
  jobs_done: number;
  /** a device's worker: jobs run between the steps of another */
  interleaved?: number;
  /** a device's worker: times a batch job waited for a typist to pause */
  held_for_typing?: number;
}

/** Local acceptance figures of inline completions, never sent anywhere (`ember stats`). */
export interface CompletionFigures {
  /** completion.stats: false counts nothing */
  enabled: boolean;
  /** when counting began (Unix seconds): the daemon's start in daemon/status */
  since: number | null;
  /** where they are kept (completion.stats_file) */
  file: string | null;
  total: LanguageFigures;
  /** by the clients' language id; "unknown": none was sent, or feedback named an unknown completion */
  languages: Record<string, unknown>;
}

/** Names one configured model. */
export interface ModelParams {
  /** configured model name */
  model: string;
}

/** A piece of text from the workspace: a file opened, edited or saved, or text yanked/copied. */
export interface ContextChunk {
  /** the text (large chunks are trimmed) */
  text: string;
  /** the file it comes from (path or URI) */
  path?: string | null;
  /** how the user met it */
  kind?: 'open' | 'edit' | 'save' | 'yank' | 'copy';
}

/** A remote model's server and its counters; the URL never carries a secret. */
export interface RemoteInfo {
  /** the model name the server is asked for */
  served_model: string | null;
  /** the server's URL, query values masked */
  url: string;
  server: 'tgi' | 'vllm' | 'openai' | null;
  health: 'ok' | 'down' | 'unauthorized' | 'unknown';
  last_error: string | null;
  checked_at: number | null;
  in_flight: number;
  max_concurrent: number;
  requests: number;
  failures: number;
  latency_ms: Latency | null;
  first_token_ms: Latency | null;
}

/** The prompt KV states a model keeps between requests. */
export interface PrefixCache {
  sequences: number;
  bytes: number;
  /** prefix_cache_mb; idle sequences are evicted least recently used first to stay within it */
  budget_bytes: number;
  /** one token's KV state */
  kv_bytes_per_token: number;
  requests: number;
  prompt_tokens: number;
  /** prompt tokens whose KV state was reused */
  cached_tokens: number;
  /** cached_tokens / prompt_tokens; null before the first request */
  reuse_rate: number | null;
  evictions: number;
  /** busy ones first, then idle ones, most recently used first */
  entries: PrefixCacheEntry[];
}

/** A LoRA adapter of a causal LM (configured, or added with models/load). */
export interface AdapterInfo {
  name: string;
  /** its folder or hub id */
  source: string;
  /** loaded now (adapters load at their first request or models/load) */
  loaded: boolean;
  /** what runs it: the model's engine (onnxruntime: its graph with LoRA inputs), or a transformers copy of the model */
  engine?: 'onnxruntime' | 'transformers';
  /** why it runs on another engine than the model's */
  engine_note?: string | null;
  rank?: number | null;
  alpha?: number | null;
  target_modules?: string[];
  /** its weights */
  memory_bytes?: number;
}

/** Inline completions of one language (or of all) and what users did with them. */
export interface LanguageFigures {
  completions: number;
  /** completions whose text was empty */
  empty: number;
  /** completions answered from an earlier one that the user typed */
  typed_through: number;
  /** completions shown (once each; an outcome implies shown) */
  shown: number;
  /** accepted whole (each completion counts one outcome: its best) */
  accepted: number;
  /** partly accepted, never whole */
  partial: number;
  dismissed: number;
  accepted_chars: number;
  /** (accepted + partial) / shown; null before one was shown */
  acceptance_rate: number | null;
  first_token_ms: LatencyFigures;
  total_ms: LatencyFigures;
  /** the cut's rules: how many completions each changed, most first */
  rules: Record<string, unknown>;
}

export interface Latency {
  p50: number;
  p95: number;
  last: number;
}

/** One KV sequence of the prefix cache. */
export interface PrefixCacheEntry {
  /** the request that last used it: a document's supersede key, or the task */
  owner: string;
  /** tokens whose KV state it holds */
  tokens: number;
  /** tokens it has room for (its memory is allocated for all of them) */
  capacity: number;
  bytes: number;
  /** a request is using it now */
  busy: boolean;
  idle_s: number;
  /** the LoRA adapter its KV state was computed with */
  adapter?: string;
}

/** A latency histogram's percentiles (buckets 10% wide: within 5% of the true value). */
export interface LatencyFigures {
  samples: number;
  /** ms; null without samples */
  p50: number | null;
  /** ms; null without samples */
  p95: number | null;
}

/** Every method: its params (null: none) and its result. */
export interface Methods {
  'initialize': { params: InitializeParams; result: InitializeResult };
  'shutdown': { params: null; result: null };
  'tokenize': { params: TokenizeParams; result: TokenizeResult };
  'detokenize': { params: DetokenizeParams; result: DetokenizeResult };
  'complete': { params: CompleteParams; result: CompleteResult };
  'summarize': { params: SummarizeParams; result: SummarizeResult };
  'translate': { params: TranslateParams; result: TranslateResult };
  'classify': { params: ClassifyParams; result: ClassifyResult };
  'ask': { params: AskParams; result: AskResult };
  'entities': { params: EntitiesParams; result: EntitiesResult };
  'daemon/status': { params: null; result: StatusResult };
  'models/list': { params: null; result: ModelsListResult };
  'models/load': { params: ModelAdapterParams; result: ModelsLoadResult };
  'models/unload': { params: ModelAdapterParams; result: ModelsUnloadResult };
}

/** Every notification the daemon sends, and its params. */
export interface Notifications {
  'ember/stream': StreamParams;
  'ember/progress': ProgressParams;
}

/** Every notification a client sends that carries data, and its params. */
export interface ClientNotifications {
  'context/add': ContextAddParams;
  'completion/feedback': CompletionFeedbackParams;
}
