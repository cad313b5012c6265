/** Status, Restart Daemon and Show Log. */
import * as vscode from 'vscode';
import { formatStatus } from './format';
import { DaemonStatus, StatusResult } from './protocol';
import type { Services } from './textCommands';
import { showError } from './ui';

/**
 * A notification with the daemon's version, load and models; Show Details opens everything it
 * said (memory, workers) in a read-only document beside the editor.
 */
export async function showStatus(services: Services): Promise<StatusResult | undefined> {
  try {
    const status = await services.daemon.request(DaemonStatus);
    services.log.info(`daemon/status: ${JSON.stringify(status)}`);
    const { message, detail } = formatStatus(status);
    void vscode.window.showInformationMessage(message, 'Show Details').then(async (choice) => {
      if (choice !== 'Show Details') return;
      const view = await services.outputs.open('Ember status');
      view.set(`${message}\n\n${detail}\n`);
    });
    return status;
  } catch (error) {
    void showError(error, services.log);
    return undefined;
  }
}

/**
 * Stops the daemon and starts a fresh one. Its progress shows in the Ember status item only: a
 * restart needs no answer from the user; a failure does.
 */
export async function restartDaemon(services: Services): Promise<void> {
  try {
    // The Ember status item shows the start (a spinner, then the model); no progress of its own:
    // even window progress ends up in the notification center.
    await services.daemon.restart();
    services.log.info('Daemon restarted.');
    vscode.window.setStatusBarMessage('Ember: daemon restarted.', 5000);
  } catch (error) {
    void showError(error, services.log);
  }
}

export function showLog(services: Services): void {
  services.log.show(true);
}
