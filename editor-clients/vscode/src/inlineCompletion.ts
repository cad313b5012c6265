/**
 * Inline (ghost text) completions from `complete` with the text before and after the cursor.
 *
 * VS Code cancels the token of a request that a newer keystroke made stale; passing that token
 * to the request makes vscode-jsonrpc send `$/cancelRequest`, and a stale answer is never shown.
 */
import * as vscode from 'vscode';
import type { Daemon } from './daemon';
import { describeError, isCancelled } from './errors';
import { Complete } from './protocol';
import type { Settings } from './settings';

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
    const { enabled, debounceMs, maxTokens, maxPrefixChars, maxSuffixChars } = this.settings().complete;
    if (!enabled) return undefined;
    const call = ++this.latest;
    if (!(await settle(debounceMs, token)) || call !== this.latest) return undefined;

    const version = document.version;
    const offset = document.offsetAt(position);
    const prefixStart = document.positionAt(Math.max(0, offset - maxPrefixChars));
    const suffixEnd = document.positionAt(offset + maxSuffixChars);
    const prefix = document.getText(new vscode.Range(prefixStart, position));
    const suffix = document.getText(new vscode.Range(position, suffixEnd));
    if (prefix.trim() === '') return undefined;

    try {
      const result = await this.daemon.request(Complete, { prefix, suffix, max_tokens: maxTokens }, token);
      const stale = token.isCancellationRequested || call !== this.latest || document.version !== version;
      if (stale || result.finish_reason === 'cancelled' || result.text === '') return undefined;
      return [new vscode.InlineCompletionItem(result.text, new vscode.Range(position, position))];
    } catch (error) {
      if (!isCancelled(error)) this.log.debug(`inline completion: ${describeError(error)}`);
      return undefined;
    }
  }
}
