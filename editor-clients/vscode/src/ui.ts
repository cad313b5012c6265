/** How the commands report errors and run cancellable work. */
import * as vscode from 'vscode';
import { describeError, isCancelled } from './errors';

/** Errors already put in front of the user: a failed start reaches several callers at once. */
const shown = new WeakSet<object>();

/**
 * Shows the daemon's own message (never a raw object), with a way to the log and, where given,
 * a Restart button. Resolves once the user answered or dismissed it: commands do not wait for it.
 */
export async function showError(
  error: unknown,
  log: vscode.LogOutputChannel,
  restart?: () => unknown,
): Promise<void> {
  if (isCancelled(error)) return;
  if (typeof error === 'object' && error !== null) {
    if (shown.has(error)) return;
    shown.add(error);
  }
  const message = describeError(error);
  log.error(message);
  const actions = restart ? ['Show Log', 'Restart'] : ['Show Log'];
  const choice = await vscode.window.showErrorMessage(`Ember: ${message}`, ...actions);
  if (choice === 'Show Log') log.show(true);
  else if (choice === 'Restart') await restart?.();
}

/** Runs `task` under a cancellable notification; Cancel cancels the token given to `task`. */
export function withCancellableProgress<T>(
  title: string,
  task: (token: vscode.CancellationToken, progress: vscode.Progress<{ message?: string }>) => Promise<T>,
): Thenable<T> {
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title, cancellable: true },
    (progress, token) => task(token, progress),
  );
}
