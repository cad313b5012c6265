/**
 * The daemon's life in a window: its stderr in the output channel, a killed daemon started again
 * (by the next request, or by Restart Daemon), and a restart with new arguments when the settings
 * change.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { EmberApi } from '../../src/extension';
import type { ClassifyResult } from '../../src/protocol';
import { driver, ember, emberChildren, emberLog, logMark, logged, nextEvent, notificationMark, notifications, openFile, outputPanelShows, select, setSetting, waitFor } from './driver';

/** Kills the daemon as a crash would, and resolves once the extension has seen it go. */
async function killDaemon(api: EmberApi): Promise<number> {
  await api.daemon.start();
  const pid = api.daemon.pid!;
  const gone = nextEvent(api.daemon.onDidChangeState, (s) => s !== 'running');
  process.kill(pid, 'SIGKILL');
  assert.equal(await gone, 'stopped');
  return pid;
}

describe('the daemon in a window', () => {
  let api: EmberApi;

  before(async () => {
    api = await ember();
  });

  it("the Ember output channel receives the daemon's stderr, and Show Log opens it", async () => {
    // A fresh daemon, so that its start-up lines are the last ones in the channel.
    await vscode.commands.executeCommand('ember.restartDaemon');
    assert.match(emberLog(api), /\[daemon\] .* INFO ember\./);
    await vscode.commands.executeCommand('ember.showLog');
    await outputPanelShows(/\[daemon\] .* INFO ember\./);
    await vscode.commands.executeCommand('workbench.action.closePanel');
  });

  it('a killed daemon is started again by the next request, and not before', async () => {
    const mark = logMark(api);
    const pid = await killDaemon(api);
    await logged(api, /Ember daemon exited unexpectedly \(signal SIGKILL\)/, mark);
    assert.equal(api.daemon.pid, undefined);
    assert.deepEqual(emberChildren().filter((c) => /\bserve\b/.test(c)), [], 'nothing respawned on its own');

    const text = 'This release fixed every bug I reported. Great work!';
    const editor = await openFile('after-crash.txt', text);
    select(editor, 0, text.length);
    const result = await vscode.commands.executeCommand<ClassifyResult>('ember.classify');
    assert.ok(result && result.scores.length === 3, 'the request was answered');
    assert.equal(api.daemon.state, 'running');
    assert.notEqual(api.daemon.pid, pid);
  });

  it('a killed daemon is started again by Restart Daemon, shown in the status bar, not as a notification', async () => {
    const pid = await killDaemon(api);
    await notificationMark();
    await vscode.commands.executeCommand('ember.restartDaemon');
    assert.equal(api.daemon.state, 'running');
    assert.notEqual(api.daemon.pid, pid);
    const { seen } = await notifications();
    assert.deepEqual(seen.filter((t) => /restart|loading|starting/i.test(t) && !/Ember tests:/.test(t)), [], 'no pop-up for a restart');
    await waitFor('the daemon in the status bar', async () => {
      const s = await driver<{ text: string } | null>('statusBar', { entry: 'ember.model' });
      return s && /\$\(flame\)|flame|Ember|SmolLM2/.test(s.text) && s;
    });
  });

  it('changing ember.args restarts the running daemon with the new arguments', async () => {
    await api.daemon.start();
    const pid = api.daemon.pid;
    const before = await api.daemon.request(api.protocol.DaemonStatus);
    const threads = (before.workers as { threads: number }[])[0].threads === 2 ? 1 : 2;
    const mark = logMark(api);
    await setSetting('args', ['serve', '--threads', String(threads)]);
    try {
      await waitFor('the restarted daemon', () => api.daemon.state === 'running' && api.daemon.pid !== pid);
      await logged(api, new RegExp(`Starting \\S+ serve --threads ${threads}\\n`), mark);
      const after = await api.daemon.request(api.protocol.DaemonStatus);
      assert.equal((after.workers as { threads: number }[])[0].threads, threads);
    } finally {
      const restarted = api.daemon.pid;
      await setSetting('args', undefined);
      await waitFor('the daemon with the default arguments', () => api.daemon.state === 'running' && api.daemon.pid !== restarted);
    }
  });
});
