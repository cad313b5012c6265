/**
 * The status bar item with the live token count of the selection (or the whole document).
 *
 * The live count never starts a daemon: it counts with this window's daemon once that runs, or
 * else with the shared daemon when one is already running (through `ember connect --no-start`,
 * which exits at once when there is none). Only the Token Count command starts this window's.
 */
import * as vscode from 'vscode';
import { Daemon, DaemonOptions, Logger } from './daemon';
import { describeError, isCancelled } from './errors';
import { formatTokenCount } from './format';
import { Tokenize } from './protocol';
import type { Settings } from './settings';

export interface TokenCount {
  count: number;
  model: string;
  scope: 'selection' | 'document';
  /** Which daemon counted: this window's, or the shared one found already running. */
  source: 'window' | 'shared';
}

/** How often to look again for a shared daemon after none was running. */
const SHARED_RETRY_MS = 60_000;

export class TokenCountStatus implements vscode.Disposable {
  readonly item: vscode.StatusBarItem;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The count in flight: what it counts (so the same count is not asked twice) and its cancel. */
  private current: { key: string; cts: vscode.CancellationTokenSource; result: Promise<TokenCount | undefined> } | undefined;
  private shared: Daemon | undefined;
  private sharedTriedAt = -Infinity;
  private readonly disposables: vscode.Disposable[] = [];

  /**
   * @param sharedOptions how to reach a running shared daemon (`ember connect --no-start`), or
   *   undefined when the settings give no way to.
   */
  constructor(
    private readonly daemon: Daemon,
    private readonly sharedOptions: () => DaemonOptions | undefined,
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
        if (state === 'running' && this.shared) {
          // This window's daemon counts from now on: drop the shared connection and its count.
          this.current?.cts.cancel();
          this.current = undefined;
          void this.stopShared();
        }
        this.schedule();
      }),
    );
    this.schedule();
  }

  /** Counts again after the debounce; each new call restarts the wait. */
  schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    const { enabled, debounceMs } = this.settings().tokenCount;
    if (!enabled) {
      this.current?.cts.cancel();
      this.item.hide();
      void this.stopShared();
      return;
    }
    this.timer = setTimeout(() => void this.refresh(), debounceMs);
  }

  /** The settings changed: the shared daemon is looked for again, with the new command. */
  async reconfigure(): Promise<void> {
    await this.stopShared();
    this.sharedTriedAt = -Infinity;
    this.schedule();
  }

  /**
   * Counts now and updates the item. With `start` (the Token Count command) this window's daemon
   * is started where needed, and the count is made even when the live count is off. Resolves
   * with the count, or undefined where there is nothing to count, no daemon to count with, or a
   * newer count took over.
   */
  async refresh(start = false): Promise<TokenCount | undefined> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const { enabled } = this.settings().tokenCount;
    const editor = vscode.window.activeTextEditor;
    if (!editor || (!enabled && !start)) {
      this.current?.cts.cancel();
      this.item.hide();
      return undefined;
    }
    const { document, selections } = editor;
    const range = (r: vscode.Range) => `${r.start.line}:${r.start.character}-${r.end.line}:${r.end.character}`;
    const key = [document.uri.toString(), document.version, ...selections.map(range)].join(' ');
    if (this.current?.key === key) return this.current.result; // the same count is on its way
    const counter = start ? this.daemon : this.runningCounter();
    if (!counter) {
      this.current?.cts.cancel();
      this.item.hide();
      return undefined;
    }
    this.current?.cts.cancel(); // the older count is stale: its $/cancelRequest goes out
    const cts = new vscode.CancellationTokenSource();
    const current = { key, cts, result: this.count(editor, counter, cts.token) };
    this.current = current;
    try {
      return await current.result;
    } finally {
      if (this.current === current) this.current = undefined;
      cts.dispose();
    }
  }

  private async count(editor: vscode.TextEditor, counter: Daemon, token: vscode.CancellationToken): Promise<TokenCount | undefined> {
    const { maxChars } = this.settings().tokenCount;
    const selected = editor.selections.filter((s) => !s.isEmpty);
    const scope = selected.length > 0 ? 'selection' : 'document';
    const text = scope === 'selection' ? selected.map((s) => editor.document.getText(s)).join('\n') : editor.document.getText();
    if (text.length > maxChars) {
      this.show('$(symbol-number) -', `Ember: the ${scope} is longer than "ember.tokenCount.maxChars" (${maxChars}).`);
      return undefined;
    }
    try {
      const result = await counter.request(Tokenize, { text, return_ids: false, return_tokens: false, return_offsets: false }, token);
      if (token.isCancellationRequested) return undefined;
      const source = counter === this.daemon ? 'window' : 'shared';
      // The model's own name (SmolLM2-135M-Instruct), not its config name ("default").
      const count: TokenCount = { count: result.count, model: counter.labelOf(result.model), scope, source };
      const where = source === 'shared' ? ', counted by the shared daemon' : '';
      this.show(formatTokenCount(count.count, count.model), `Ember: ${count.count} tokens in the ${scope} (${count.model}${where})`);
      return count;
    } catch (error) {
      if (token.isCancellationRequested || isCancelled(error)) return undefined;
      this.log.debug(`token count: ${describeError(error)}`);
      this.show('$(warning) Ember', `Ember: ${describeError(error)}`);
      return undefined;
    }
  }

  /** This window's daemon when it runs, else a connection to a running shared daemon, if any. */
  private runningCounter(): Daemon | undefined {
    if (this.daemon.state === 'running') return this.daemon;
    if (this.shared?.state === 'running') return this.shared;
    this.lookForShared();
    return undefined;
  }

  private lookForShared(): void {
    if (this.shared?.state === 'starting' || Date.now() - this.sharedTriedAt < SHARED_RETRY_MS) return;
    const options = this.sharedOptions();
    if (!options) return;
    this.sharedTriedAt = Date.now();
    void this.shared?.dispose();
    // Its own logger: that no shared daemon runs is the usual case, not an error to show.
    const quiet: Logger = {
      info: (m) => options.logger.debug(`[token count] ${m}`),
      warn: (m) => options.logger.debug(`[token count] ${m}`),
      error: (m) => options.logger.debug(`[token count] ${m}`),
      debug: (m) => options.logger.debug(`[token count] ${m}`),
    };
    const shared = new Daemon({ ...options, logger: quiet, restart: { maxRestarts: 0 } });
    this.shared = shared;
    shared.start().then(
      () => {
        this.log.info('Token count: using the shared Ember daemon that is already running.');
        this.schedule();
      },
      () => this.log.info('Token count: no shared Ember daemon is running; the count starts with this window\'s daemon.'),
    );
  }

  private async stopShared(): Promise<void> {
    const shared = this.shared;
    this.shared = undefined;
    await shared?.dispose();
  }

  private show(text: string, tooltip: string): void {
    this.item.text = text;
    this.item.tooltip = tooltip;
    this.item.show();
  }

  /** Stops counting and closes the connection to the shared daemon (VS Code awaits this). */
  async close(): Promise<void> {
    const stopping = this.stopShared();
    this.dispose();
    await stopping;
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.current?.cts.cancel();
    void this.stopShared();
    for (const d of this.disposables.splice(0)) d.dispose();
  }
}
