/**
 * Inline (ghost text) completions from `complete` with the text before and after the cursor.
 *
 * Off unless `ember.complete.enabled` is on for the document's language, so a window where the
 * user only edits never starts a daemon. Every request carries the document's URI as its
 * `supersede` key: a newer request for the same document cancels the older one in the daemon,
 * queued or running, so a burst of keystrokes never leaves work behind that nobody will read.
 * VS Code also cancels the token of a request that a keystroke made stale; that cancel is passed on
 * (`$/cancelRequest`) only when no newer request for the document follows within the debounce
 * (supersede.ts): the newer one replaces it in the daemon, or is answered from it when the user
 * typed its text. An answer that still arrives late is never shown.
 *
 * Each request also carries the document's languageId as `language` (the daemon's cut picks its
 * parser by it) and its `path` (relative to the workspace folder when it is in one). What becomes
 * of each suggestion is reported by its `completion_id` (feedback.ts). Typing through needs nothing
 * here: VS Code keeps showing the rest of a suggestion whose start the user types, and the daemon
 * answers the next request from the same suggestion.
 */
import * as vscode from 'vscode';
import type { Daemon } from './daemon';
import { prefixStart } from './completionWindow';
import { describeError, isCancelled } from './errors';
import type { FeedbackTracker } from './feedback';
import { Complete, supersedeKey } from './protocol';
import { CANCEL_GRACE_MS, SupersedingRequests } from './supersede';
import { DEFAULTS, Settings, isBoolean } from './settings';
import { documentPath } from './workspaceContext';

/** The command an accepted item runs: it reports the acceptance. */
export const ACCEPTED_COMMAND = 'ember.inlineCompletionAccepted';

/** The document's `path` for the daemon. */
export function pathOf(document: vscode.TextDocument): string | undefined {
  const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
  return documentPath(document.uri, folders);
}

/** An item that knows its completion_id (for the feedback hooks). */
interface EmberItem extends vscode.InlineCompletionItem {
  completionId?: string;
}

/** Resolves true after `ms`, or false as soon as `token` is cancelled. */
export function settle(ms: number, token: vscode.CancellationToken): Promise<boolean> {
  if (token.isCancellationRequested) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const listener = token.onCancellationRequested(() => {
      clearTimeout(timer);
      listener.dispose();
      resolve(false);
    });
    const timer = setTimeout(() => {
      listener.dispose();
      resolve(true);
    }, ms);
  });
}

/** `ember.complete.enabled` for this document: the setting can differ per language. */
export function completionEnabled(document: vscode.TextDocument): boolean {
  const value = vscode.workspace.getConfiguration('ember', document).get<unknown>('complete.enabled');
  return isBoolean(value) ? value : DEFAULTS.complete.enabled;
}

export class EmberInlineCompletionProvider implements vscode.InlineCompletionItemProvider {
  /** Bumped by each call: an answer to an older call is stale even if its token was not cancelled. */
  private latest = 0;
  private readonly requests = new SupersedingRequests();

  constructor(
    private readonly daemon: Daemon,
    private readonly settings: () => Settings,
    private readonly log: vscode.LogOutputChannel,
    private readonly feedback?: FeedbackTracker,
    /** Called before each request is sent (the workspace context goes out first). */
    private readonly beforeRequest?: () => void,
  ) {}

  async provideInlineCompletionItems(
    document: vscode.TextDocument,
    position: vscode.Position,
    _context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    if (!completionEnabled(document)) return undefined;
    const { debounceMs, maxTokens, maxPrefixChars, maxSuffixChars } = this.settings().complete;
    const call = ++this.latest;
    if (!(await settle(debounceMs, token)) || call !== this.latest) return undefined;

    const version = document.version;
    const offset = document.offsetAt(position);
    const start = prefixStart(offset, maxPrefixChars, (at) => {
      const pos = document.positionAt(at);
      if (pos.character === 0 || pos.line + 1 >= document.lineCount) return at;
      return Math.min(offset, document.offsetAt(new vscode.Position(pos.line + 1, 0)));
    });
    const suffixEnd = document.positionAt(offset + maxSuffixChars);
    const prefix = document.getText(new vscode.Range(document.positionAt(start), position));
    const suffix = document.getText(new vscode.Range(position, suffixEnd));
    if (prefix.trim() === '') return undefined;

    const key = supersedeKey(document.uri.toString());
    const sending = this.requests.begin(key, token, debounceMs + CANCEL_GRACE_MS);
    try {
      this.beforeRequest?.();
      const result = await this.daemon.request(
        Complete,
        {
          prefix,
          suffix,
          max_tokens: maxTokens,
          supersede: key,
          language: document.languageId ? document.languageId.slice(0, 64) : undefined,
          path: pathOf(document),
        },
        sending.token,
      );
      const stale = token.isCancellationRequested || call !== this.latest || document.version !== version;
      if (stale || result.text === '') return undefined; // a cancelled request is an error, not a result
      const item: EmberItem = new vscode.InlineCompletionItem(result.text, new vscode.Range(position, position));
      const id = result.completion_id;
      if (id) {
        item.completionId = id;
        item.command = { title: 'Ember: completion accepted', command: ACCEPTED_COMMAND, arguments: [id] };
        this.feedback?.didShow(id, document.uri.toString(), offset, result.text);
      }
      return [item];
    } catch (error) {
      if (!isCancelled(error)) this.log.debug(`inline completion: ${describeError(error)}`);
      return undefined;
    } finally {
      sending.done();
    }
  }

  /**
   * VS Code's accept-word / accept-line on one of our items. VS Code calls this only where the
   * `inlineCompletionsAdditions` API proposal is enabled (code-server enables every proposal;
   * desktop VS Code only for extensions that declare it, and refuses to register a provider that has
   * it otherwise: see registerInlineCompletions). It is called with the accepted length, and then
   * again with a PartialAcceptInfo ({ kind, acceptedLength }): both are handled, counted once.
   * Without it the feedback tracker still sees the partial accept as a change of the document.
   */
  handleDidPartiallyAcceptCompletionItem(item: vscode.InlineCompletionItem, accepted: number | { acceptedLength?: number }): void {
    const id = (item as EmberItem).completionId;
    const length = typeof accepted === 'number' ? accepted : accepted?.acceptedLength;
    if (id && typeof length === 'number') this.feedback?.didPartiallyAccept(id, length);
  }
}

/**
 * Registers the provider with its partial-accept hook where VS Code allows it, else without it (desktop
 * VS Code throws "CANNOT use API proposal" for a provider with the hook, which would end the
 * activation). VS Code's own accept-word and accept-line work on our items either way.
 */
export function registerInlineCompletions(
  selector: vscode.DocumentSelector,
  provider: EmberInlineCompletionProvider,
  log: vscode.LogOutputChannel,
): vscode.Disposable {
  try {
    return vscode.languages.registerInlineCompletionItemProvider(selector, provider);
  } catch (error) {
    log.info(`Inline completions: partial accepts are seen from the document only (${describeError(error)})`);
    return vscode.languages.registerInlineCompletionItemProvider(selector, {
      provideInlineCompletionItems: (document, position, context, token) => provider.provideInlineCompletionItems(document, position, context, token),
    });
  }
}
