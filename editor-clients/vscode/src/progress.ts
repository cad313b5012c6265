/** `ember/progress` notifications shown as VS Code progress notifications, one per model. */
import * as vscode from 'vscode';
import type { Daemon } from './daemon';
import { describeProgress } from './format';
import type { ProgressParams } from './protocol';

interface Shown {
  latest: ProgressParams;
  /** Set once the progress notification is up; before that only `latest` is kept. */
  apply?: (params: ProgressParams) => void;
}

export class ModelProgress implements vscode.Disposable {
  private readonly models = new Map<string, Shown>();
  private readonly subscription: vscode.Disposable;

  constructor(
    daemon: Daemon,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.subscription = daemon.onProgress((p) => this.update(p));
  }

  private update(p: ProgressParams): void {
    this.log.info(`${p.model}: ${p.phase}${p.percent !== null ? ` ${p.percent}%` : ''} ${p.message ?? ''}`);
    const shown = this.models.get(p.model);
    if (shown) {
      shown.latest = p;
      shown.apply?.(p);
    } else if (p.phase !== 'ready' && p.phase !== 'error') {
      this.open(p);
    }
    if (p.phase === 'error') {
      void vscode.window.showErrorMessage(`Ember: ${p.model}: ${p.message || 'the model could not be loaded'}`);
    }
  }

  private open(first: ProgressParams): void {
    const shown: Shown = { latest: first };
    this.models.set(first.model, shown);
    void vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Ember: ${first.model}` },
      (progress) =>
        new Promise<void>((resolve) => {
          let percent = 0;
          shown.apply = (p) => {
            const increment = p.percent !== null && p.percent > percent ? p.percent - percent : undefined;
            if (increment !== undefined) percent = p.percent!;
            progress.report({ message: describeProgress(p), increment });
            if (p.phase === 'ready' || p.phase === 'error') {
              this.models.delete(p.model);
              resolve();
            }
          };
          shown.apply(shown.latest);
        }),
    );
  }

  dispose(): void {
    this.subscription.dispose();
    for (const shown of this.models.values()) shown.apply?.({ ...shown.latest, phase: 'ready' });
    this.models.clear();
  }
}
