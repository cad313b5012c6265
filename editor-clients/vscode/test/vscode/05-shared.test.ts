/**
 * The shared daemon: this window configured with `ember connect`, and a second window that shares
 * its model load (second-window.suite.ts runs there).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { EmberApi } from '../../src/extension';
import type { ClassifyResult, StatusResult } from '../../src/protocol';
import { driver, ember, openFile, select, setSetting, waitFor } from './driver';

type SharedStatus = StatusResult & { model_loads: number; connections: number };

/** Runs `ember ARGS` as a user would in a terminal of this window (same environment). */
function emberCli(...args: string[]): string {
  const command = String(vscode.workspace.getConfiguration('ember').get('command'));
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 60_000 });
  return `${result.stdout}${result.stderr}`;
}

describe('the shared daemon', () => {
  let api: EmberApi;

  before(async () => {
    api = await ember();
  });
  after(async () => {
    await setSetting('args', undefined);
    emberCli('daemon', 'stop');
  });

  it('with ember.args ["connect"], the window works through the shared daemon', async () => {
    const pid = api.daemon.pid;
    await setSetting('args', ['connect']);
    // A running daemon is restarted as a bridge to the shared one; a stopped one stays stopped.
    if (pid !== undefined) await waitFor('the window to reconnect', () => api.daemon.state === 'running' && api.daemon.pid !== pid);
    const text = 'The build broke again and nobody knows why.';
    const editor = await openFile('shared.txt', text);
    select(editor, 0, text.length);
    const result = await vscode.commands.executeCommand<ClassifyResult>('ember.classify');
    assert.ok(result && result.scores.length === 3);
    const status = (await api.daemon.request(api.protocol.DaemonStatus)) as SharedStatus;
    assert.notEqual(status.pid, api.daemon.pid, 'the window runs the bridge; the daemon is another process');
    assert.equal(status.model_loads, 1);
    assert.match(emberCli('daemon', 'status'), /ember shared daemon: running/);
  });

  it('a second window shares the model load: daemon/status says model_loads 1', async () => {
    const folder = path.join(process.env.EMBER_VSCODE_WORKSPACES!, 'second');
    const code = await driver<number>('openWindow', { name: 'second', tests: 'companion.js', folder }, 600_000);
    assert.equal(code, 0, 'the second window\'s tests passed (its output is above)');
    const status = (await api.daemon.request(api.protocol.DaemonStatus)) as SharedStatus;
    assert.equal(status.model_loads, 1, 'one model load for both windows');
  });
});
