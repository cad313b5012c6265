/**
 * The status bar item that says what the daemon and its models are doing: starting, loading or
 * converting a model (with its percentage), the model ready (by its own name), or failed.
 *
 * Loads, conversions and restarts show here only, never as notifications: they happen while the
 * user types (a completion or the warm-up starts them) and a pop-up would take the focus or cover
 * the text. Only what needs the user is a notification: a model that could not be loaded (here)
 * and a daemon that cannot start (extension.ts, with Show Log and Restart).
 */
import * as vscode from 'vscode';
import type { Daemon, DaemonState } from './daemon';
import { describeProgress } from './format';
import type { ProgressParams } from './protocol';

export class ModelStatus implements vscode.Disposable {
  readonly item: vscode.StatusBarItem;
  /** Every text the item showed, oldest first (bounded): the tests read it. */
  readonly history: string[] = [];
  /** Models being loaded, by config name: their latest progress. */
  private readonly loading = new Map<string, ProgressParams>();
  /** The model loaded last (config name). */
  private ready: string | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly daemon: Daemon,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.item = vscode.window.createStatusBarItem('ember.model', vscode.StatusBarAlignment.Right, 101);
    this.item.name = 'Ember Model';
    this.item.command = 'ember.status';
    this.disposables.push(
      this.item,
      daemon.onProgress((p) => this.progress(p)),
      daemon.onDidChangeState((state) => this.state(state)),
    );
    this.render();
  }

  private state(state: DaemonState): void {
    if (state !== 'running') {
      this.loading.clear();
      this.ready = undefined;
    }
    this.render();
  }

  private progress(p: ProgressParams): void {
    this.log.info(`${p.model} (${p.label || p.model}): ${p.phase}${p.percent !== null ? ` ${p.percent}%` : ''} ${p.message ?? ''}`);
    if (p.phase === 'ready') {
      this.loading.delete(p.model);
      this.ready = p.model;
    } else if (p.phase === 'error') {
      this.loading.delete(p.model);
      // The user has to act on this one (the model's files or settings): it stays visible.
      void vscode.window.showErrorMessage(`Ember: ${this.daemon.labelOf(p.model)}: ${p.message || 'the model could not be loaded'}`, 'Show Log').then(
        (choice) => choice === 'Show Log' && this.log.show(true),
      );
    } else {
      this.loading.set(p.model, p);
    }
    this.render();
  }

  private render(): void {
    const state = this.daemon.state;
    const [busy] = [...this.loading.values()].slice(-1);
    if (state === 'stopped') {
      this.item.hide();
      return;
    }
    if (state === 'failed') {
      this.show('$(error) Ember', 'Ember: the daemon is not running; see "Ember: Show Log".', 'ember.showLog');
    } else if (state === 'starting') {
      this.show('$(loading~spin) Ember', 'Ember: starting the daemon…');
    } else if (busy) {
      const label = this.daemon.labelOf(busy.model);
      const percent = busy.percent !== null ? ` ${busy.percent}%` : '';
      this.show(`$(loading~spin) ${label}${percent}`, `Ember: ${label}: ${describeProgress(busy)}`);
    } else if (this.ready) {
      const label = this.daemon.labelOf(this.ready);
      this.show(`$(flame) ${label}`, `Ember: ${label} is loaded ("${this.ready}" in the config). Click for the daemon's status.`);
    } else {
      this.show('$(flame) Ember', 'Ember: the daemon is running; no model loaded yet.');
    }
  }

  private show(text: string, tooltip: string, command = 'ember.status'): void {
    this.item.text = text;
    this.item.tooltip = tooltip;
    this.item.command = command;
    this.item.show();
    if (this.history.at(-1) !== text) {
      this.history.push(text);
      if (this.history.length > 200) this.history.shift();
    }
  }

  dispose(): void {
    for (const d of this.disposables.splice(0)) d.dispose();
  }
}
