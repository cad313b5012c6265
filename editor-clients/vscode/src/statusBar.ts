/** The status bar item with the live token count of the selection (or the whole document). */
import * as vscode from 'vscode';
import type { Daemon } from './daemon';
import { describeError, isCancelled } from './errors';
import { Tokenize } from './protocol';
import type { Settings } from './settings';

export interface TokenCount {
  count: number;
  model: string;
  scope: 'selection' | 'document';
}

export class TokenCountStatus implements vscode.Disposable {
  readonly item: vscode.StatusBarItem;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private current: vscode.CancellationTokenSource | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly daemon: Daemon,
    private readonly settings: () => Settings,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.item = vscode.window.createStatusBarItem('ember.tokenCount', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'Ember Token Count';
    this.item.command = 'ember.tokenCount';
    this.disposables.push(
      this.item,
      vscode.window.onDidChangeActiveTextEditor(() => this.schedule()),
      vscode.window.onDidChangeTextEditorSelection((e) => {
        if (e.textEditor === vscode.window.activeTextEditor) this.schedule();
      }),
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.document === vscode.window.activeTextEditor?.document) this.schedule();
      }),
      daemon.onDidChangeState((state) => {
        if (state === 'running') this.schedule();
      }),
    );
    this.schedule();
  }

  /** Counts again after the debounce; each new call restarts the wait. */
  schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    const { enabled, debounceMs } = this.settings().tokenCount;
    if (!enabled) {
      this.current?.cancel();
      this.item.hide();
      return;
    }
    this.timer = setTimeout(() => void this.refresh(), debounceMs);
  }

  /**
   * Counts now (even when the live count is off, with `force`) and updates the item. Resolves
   * with the count, or undefined where there is nothing to count or a newer count took over.
   */
  async refresh(force = false): Promise<TokenCount | undefined> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.current?.cancel(); // the older count is stale: its $/cancelRequest goes out
    const cts = new vscode.CancellationTokenSource();
    this.current = cts;
    const { enabled, maxChars } = this.settings().tokenCount;
    const editor = vscode.window.activeTextEditor;
    if (!editor || (!enabled && !force)) {
      this.item.hide();
      return undefined;
    }
    const selected = editor.selections.filter((s) => !s.isEmpty);
    const scope = selected.length > 0 ? 'selection' : 'document';
    const text = scope === 'selection' ? selected.map((s) => editor.document.getText(s)).join('\n') : editor.document.getText();
    if (text.length > maxChars) {
      this.show('$(symbol-number) -', `Ember: the ${scope} is longer than "ember.tokenCount.maxChars" (${maxChars}).`);
      return undefined;
    }
    try {
      const result = await this.daemon.request(
        Tokenize,
        { text, return_ids: false, return_tokens: false, return_offsets: false },
        cts.token,
      );
      if (cts.token.isCancellationRequested) return undefined;
      const count: TokenCount = { count: result.count, model: result.model, scope };
      this.show(
        `$(symbol-number) ${count.count} ${count.count === 1 ? 'token' : 'tokens'} · ${count.model}`,
        `Ember: ${count.count} tokens in the ${scope} (${count.model})`,
      );
      return count;
    } catch (error) {
      if (cts.token.isCancellationRequested || isCancelled(error)) return undefined;
      this.log.debug(`token count: ${describeError(error)}`);
      this.show('$(warning) Ember', `Ember: ${describeError(error)}`);
      return undefined;
    } finally {
      if (this.current === cts) this.current = undefined;
      cts.dispose();
    }
  }

  private show(text: string, tooltip: string): void {
    this.item.text = text;
    this.item.tooltip = tooltip;
    this.item.show();
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.current?.cancel();
    for (const d of this.disposables) d.dispose();
  }
}
