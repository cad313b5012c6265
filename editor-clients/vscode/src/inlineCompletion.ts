/**
 * Inline (ghost text) completions from `complete` with the text before and after the cursor.
 *
 * Off unless `ember.complete.enabled` is on for the document's language, so a window where the
 * user only edits never starts a daemon. Every request carries the document's URI as its
 * `supersede` key: a newer request for the same document cancels the older one in the daemon,
 * queued or running, so a burst of keystrokes never leaves work behind that nobody will read.
 * VS Code also cancels the token of a request that a keystroke made stale; that sends
 * `$/cancelRequest` at once. An answer that still arrives late is never shown.
 */
import * as vscode from 'vscode';
import type { Daemon } from './daemon';
import { prefixStart } from './completionWindow';
import { describeError, isCancelled } from './errors';
import { Complete, supersedeKey } from './protocol';
import { DEFAULTS, Settings, isBoolean } from './settings';

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

  constructor(
    private readonly daemon: Daemon,
    private readonly settings: () => Settings,
    private readonly log: vscode.LogOutputChannel,
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

    try {
      const result = await this.daemon.request(
        Complete,
        { prefix, suffix, max_tokens: maxTokens, supersede: supersedeKey(document.uri.toString()) },
        token,
      );
      const stale = token.isCancellationRequested || call !== this.latest || document.version !== version;
      if (stale || result.text === '') return undefined; // a cancelled request is an error, not a result
      return [new vscode.InlineCompletionItem(result.text, new vscode.Range(position, position))];
    } catch (error) {
      if (!isCancelled(error)) this.log.debug(`inline completion: ${describeError(error)}`);
      return undefined;
    }
  }
}
