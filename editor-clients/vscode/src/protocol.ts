/**
 * Every Ember request and notification as vscode-jsonrpc types.
 *
 * The params and result types live in ./wire.ts, generated from daemon/ember/wire.py and
 * results.py (the protocol's single source of truth): a change there shows up here as a type
 * error. Imports only vscode-jsonrpc, never `vscode`, so plain Node tests can use it.
 */
import { createHash } from 'node:crypto';
import {
  NotificationType,
  NotificationType0,
  ParameterStructures,
  RequestType,
  RequestType0,
} from 'vscode-jsonrpc/node';
import type { ClientNotifications, CompletionFeedbackParams, Methods, Notifications } from './wire';

export * from './wire';

// -- names the extension uses for the generated types ---------------------------------------------

import type {
  CompleteResult, LocalModel, ModelEntry, RemoteModel, SummarizeParams, SummarizeResult, TranslateResult,
} from './wire';

/** What every generative result carries. */
export type GenerationResult = CompleteResult | SummarizeResult | TranslateResult;
export type SummaryForm = NonNullable<SummarizeParams['form']>;
export type SummaryLength = NonNullable<SummarizeParams['length']>;
/** A configured model (initialize, models/list) or a loaded one (daemon/status, models/load). */
export type ModelInfo = ModelEntry | LocalModel | RemoteModel;

/** A `supersede` key for a document: its URI, hashed when longer than the daemon takes (4096). */
export function supersedeKey(uri: string): string {
  return uri.length <= 4096 ? uri : `sha256:${createHash('sha256').update(uri).digest('hex')}`;
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

type WithParams = { [M in keyof Methods]: Methods[M]['params'] extends null ? never : M }[keyof Methods];
type WithoutParams = Exclude<keyof Methods, WithParams>;

function request<M extends WithParams>(method: M) {
  return new RequestType<Methods[M]['params'], Methods[M]['result'], void>(method, ParameterStructures.byName);
}

function request0<M extends WithoutParams>(method: M) {
  return new RequestType0<Methods[M]['result'], void>(method);
}

function notification<N extends keyof Notifications>(method: N) {
  return new NotificationType<Notifications[N]>(method, ParameterStructures.byName);
}

export const Initialize = request('initialize');
export const Shutdown = request0('shutdown');
export const Exit = new NotificationType0('exit');
export const Tokenize = request('tokenize');
export const Detokenize = request('detokenize');
export const Complete = request('complete');
export const Summarize = request('summarize');
export const Translate = request('translate');
export const Classify = request('classify');
export const Entities = request('entities');
export const Ask = request('ask');
export const DaemonStatus = request0('daemon/status');
export const ModelsList = request0('models/list');
export const ModelsLoad = request('models/load');
export const ModelsUnload = request('models/unload');

// -- notifications to the daemon -----------------------------------------------------------------

export type FeedbackEvent = CompletionFeedbackParams['event'];

function clientNotification<K extends keyof ClientNotifications>(name: K): NotificationType<ClientNotifications[K]> {
  return new NotificationType<ClientNotifications[K]>(name, ParameterStructures.byName);
}

export const ContextAdd = clientNotification('context/add');
export const CompletionFeedback = clientNotification('completion/feedback');

export const StreamNotification = notification('ember/stream');
export const ProgressNotification = notification('ember/progress');
