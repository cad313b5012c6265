/**
 * Every Ember request and notification, declared once, with its params and result types.
 *
 * Mirrors daemon/ember/wire.py (the protocol's single source of truth): keys are snake_case as on
 * the wire. Imports only vscode-jsonrpc, never `vscode`, so plain Node tests can use it.
 */
import { createHash } from 'node:crypto';
import {
  NotificationType,
  NotificationType0,
  ParameterStructures,
  RequestType,
  RequestType0,
} from 'vscode-jsonrpc/node';

// -- shared pieces ------------------------------------------------------------------------------

export interface Message {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Sampling and length options shared by the generative tasks. */
export interface GenerationOptions {
  model?: string;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  stop?: string[];
  seed?: number;
  stream?: boolean;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

export interface Timings {
  queue_ms: number;
  load_ms: number;
  run_ms: number;
  total_ms: number;
  tokens_per_second?: number;
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

/** What every generative result carries. */
export interface GenerationResult {
  text: string;
  finish_reason: FinishReason;
  model: string;
  usage: Usage;
  timings: Timings;
}

// -- lifecycle ----------------------------------------------------------------------------------

export interface InitializeParams {
  /** The daemon exits when this process dies. */
  process_id?: number | null;
  client_info?: Record<string, unknown> | null;
}

export interface InitializeResult {
  server: { name: string; version: string };
  protocol_version: string;
  methods: string[];
  tasks: string[];
  models: ModelInfo[];
  device: string | null; // null while the daemon is still loading torch
  pid: number;
}

// -- tokenizer ----------------------------------------------------------------------------------

export interface TokenizeParams {
  text?: string;
  messages?: Message[];
  model?: string;
  add_special_tokens?: boolean;
  add_generation_prompt?: boolean;
  return_ids?: boolean;
  return_tokens?: boolean;
  return_offsets?: boolean;
}

export interface TokenizeResult {
  model: string;
  count: number;
  ids?: number[];
  tokens?: string[];
  offsets?: Array<[number, number]>;
  text?: string;
}

export interface DetokenizeParams {
  ids: number[];
  model?: string;
  skip_special_tokens?: boolean;
}

export interface DetokenizeResult {
  model: string;
  text: string;
}

// -- tasks --------------------------------------------------------------------------------------

export interface CompleteParams extends GenerationOptions {
  prompt?: string;
  messages?: Message[];
  prefix?: string;
  suffix?: string;
  /** A key such as the document URI: a later `complete` from this client with the same key cancels this one. */
  supersede?: string | null;
}

export type CompleteResult = GenerationResult;

/** A `supersede` key for a document: its URI, hashed when longer than the daemon takes (4096). */
export function supersedeKey(uri: string): string {
  return uri.length <= 4096 ? uri : `sha256:${createHash('sha256').update(uri).digest('hex')}`;
}

export type SummaryForm = 'sentence' | 'paragraph' | 'bullets';
export type SummaryLength = 'short' | 'medium' | 'long';

export interface SummarizeParams extends GenerationOptions {
  text: string;
  form?: SummaryForm;
  length?: SummaryLength;
}

export interface SummarizeResult extends GenerationResult {
  stages: unknown;
}

export interface TranslateParams extends GenerationOptions {
  text: string;
  target: string;
  source?: string;
}

export type TranslateResult = GenerationResult;

export interface ClassifyParams {
  text: string;
  labels?: string[];
  model?: string;
  calibrate?: boolean;
}

export interface LabelScore {
  label: string;
  score: number;
}

export interface ClassifyResult {
  label: string;
  scores: LabelScore[];
  calibrated: boolean;
  /** How the scores were made: loglikelihood, first-token-logprobs or generated-answer (remote
   * models whose server returns no log-probabilities), classifier, zero-shot-nli. */
  method?: string;
  /** generated-answer only: the model's own words. */
  answer?: string;
  model: string;
  usage: Usage;
  timings: Timings;
}

export interface EntitiesParams {
  text: string;
  model?: string;
}

export interface Entity {
  text: string;
  label: string;
  start: number;
  end: number;
  score: number;
}

export interface EntitiesResult {
  entities: Entity[];
  model: string;
  usage: Usage;
  timings: Timings;
}

// -- daemon and models --------------------------------------------------------------------------

/** `daemon/status`; `memory`, `models` and `workers` are shown as the daemon sends them. */
export interface StatusResult {
  version: string;
  pid: number;
  uptime_s: number;
  requests_served: number;
  queue_depth: number;
  running: unknown;
  memory: unknown;
  models: unknown;
  workers: unknown;
}

export interface ModelInfo {
  name: string;
  source?: string;
  kind?: string;
  loaded?: boolean;
  [key: string]: unknown;
}

export interface ModelsListResult {
  models: ModelInfo[];
}

export interface ModelParams {
  model: string;
}

// -- notifications ------------------------------------------------------------------------------

/** `ember/stream`: one piece of generated text of the request `id` (sent with `stream: true`). */
export interface StreamParams {
  id: number | string;
  delta: string;
  index: number;
}

export type ProgressPhase = 'download' | 'convert' | 'load' | 'quantize' | 'ready' | 'error';

/** `ember/progress`: a model is being downloaded, converted or loaded. */
export interface ProgressParams {
  model: string;
  phase: ProgressPhase;
  percent: number | null;
  bytes: number | null;
  total_bytes: number | null;
  message: string;
}

// -- error codes (PROTOCOL.md "Errors") ---------------------------------------------------------

export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  RequestCancelled: -32800,
  ModelLoadError: -32001,
  InputTooLong: -32002,
  Busy: -32003,
  ShuttingDown: -32004,
  TaskUnavailable: -32005,
} as const;

// -- the types ----------------------------------------------------------------------------------

const byName = ParameterStructures.byName;

export const Initialize = new RequestType<InitializeParams, InitializeResult, void>('initialize', byName);
export const Shutdown = new RequestType0<null, void>('shutdown');
export const Exit = new NotificationType0('exit');
export const Tokenize = new RequestType<TokenizeParams, TokenizeResult, void>('tokenize', byName);
export const Detokenize = new RequestType<DetokenizeParams, DetokenizeResult, void>('detokenize', byName);
export const Complete = new RequestType<CompleteParams, CompleteResult, void>('complete', byName);
export const Summarize = new RequestType<SummarizeParams, SummarizeResult, void>('summarize', byName);
export const Translate = new RequestType<TranslateParams, TranslateResult, void>('translate', byName);
export const Classify = new RequestType<ClassifyParams, ClassifyResult, void>('classify', byName);
export const Entities = new RequestType<EntitiesParams, EntitiesResult, void>('entities', byName);
export const DaemonStatus = new RequestType0<StatusResult, void>('daemon/status');
export const ModelsList = new RequestType0<ModelsListResult, void>('models/list');
export const ModelsLoad = new RequestType<ModelParams, { model: ModelInfo }, void>('models/load', byName);
export const ModelsUnload = new RequestType<ModelParams, { unloaded: boolean }, void>('models/unload', byName);

export const StreamNotification = new NotificationType<StreamParams>('ember/stream', byName);
export const ProgressNotification = new NotificationType<ProgressParams>('ember/progress', byName);
