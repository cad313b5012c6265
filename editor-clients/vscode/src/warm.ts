/**
 * Warm when it will be needed: once a visible editor shows a document whose language has inline
 * completion on (`ember.complete.enabled`, per language), the daemon is started and the
 * completion model loaded (`models/load`) at once, so the first suggestion comes at warm latency
 * instead of waiting for the daemon's start and the model's load after the first keystrokes.
 * A window that shows no such document starts nothing. `ember.complete.warmOnOpen: false` turns
 * this off (the first completion then starts everything, as before).
 *
 * A daemon that crashed is started again only by the next such event (an editor shown, a setting
 * changed), never by a timer; one that failed to start stays down until the user restarts it.
 */
import * as vscode from 'vscode';
import type { Daemon } from './daemon';
import { describeError } from './errors';
import { ModelsLoad } from './protocol';

export class Warmer implements vscode.Disposable {
  /** The daemon process the model was loaded in; a new process is warmed again. */
  private warmedPid: number | undefined;
  private warming: Promise<void> | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly daemon: Daemon,
    /** Whether inline completion is on for this document (its language). */
    private readonly enabledFor: (document: vscode.TextDocument) => boolean,
    private readonly warmOnOpen: () => boolean,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.disposables.push(
      vscode.window.onDidChangeVisibleTextEditors(() => this.check()),
      vscode.workspace.onDidChangeConfiguration((e) => {
        // After the extension's own handler has read the new settings (warmOnOpen comes from there).
        if (e.affectsConfiguration('ember')) setTimeout(() => void this.check(), 0);
      }),
      // A daemon started for anything else (a command) while such a document is shown: load then.
      daemon.onDidChangeState((state) => {
        if (state === 'running') this.check();
      }),
    );
    this.check();
  }

  /** The documents shown now that will want completions. */
  wanted(): vscode.TextDocument[] {
    return vscode.window.visibleTextEditors
      .map((e) => e.document)
      .filter((d) => ['file', 'untitled', 'vscode-notebook-cell'].includes(d.uri.scheme) && this.enabledFor(d));
  }

  /** Starts the daemon and loads the completion model where a shown document wants it. */
  check(): Promise<void> {
    if (this.warming) return this.warming;
    if (!this.warmOnOpen() || this.daemon.state === 'failed') return Promise.resolve();
    const wanted = this.wanted();
    if (wanted.length === 0) return Promise.resolve();
    if (this.daemon.state === 'running' && this.daemon.pid === this.warmedPid) return Promise.resolve();
    const warming = this.warm(wanted[0]).finally(() => {
      this.warming = undefined;
    });
    this.warming = warming;
    return warming;
  }

  private async warm(document: vscode.TextDocument): Promise<void> {
    try {
      await this.daemon.start();
      const pid = this.daemon.pid;
      const model = this.daemon.modelFor('complete');
      if (!model || pid === this.warmedPid) return;
      this.log.info(`Warming up: ${document.languageId} document ${document.uri.path.split('/').pop()} shown with inline completion on; loading ${model}`);
      this.warmedPid = pid;
      await this.daemon.request(ModelsLoad, { model });
    } catch (error) {
      // A start failure is shown by the daemon's onDidFail, a load failure by its progress.
      this.log.warn(`Warm-up: ${describeError(error)}`);
    }
  }

  dispose(): void {
    for (const d of this.disposables.splice(0)) d.dispose();
  }
}
