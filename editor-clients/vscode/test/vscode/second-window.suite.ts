/**
 * Runs in a second window while the first one uses the shared daemon (05-shared.test.ts opens it;
 * the user settings say `ember.args: ["connect"]`).
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { EmberApi } from '../../src/extension';
import type { ClassifyResult, StatusResult } from '../../src/protocol';
import type { TokenCount } from '../../src/statusBar';
import { driver, ember, emberChildren, openFile, select, waitFor } from './driver';

type SharedStatus = StatusResult & { model_loads: number; connections: number };

describe('a second window', () => {
  let api: EmberApi;

  before(async () => {
    api = await ember();
  });

  it('counts tokens with the running shared daemon, without starting a daemon of its own', async () => {
    const text = 'Counted by the shared daemon.';
    await openFile('second.txt', text);
    const shown = await waitFor('a token count in the status bar', async () => {
      const item = await driver<{ text: string } | null>('statusBar', { entry: 'ember.tokenCount' });
      return item && /\d+ tokens? · /.test(item.text) && item;
    });
    const count = (await api.tokenCount.refresh()) as TokenCount;
    assert.equal(count.source, 'shared');
    assert.ok(shown.text.includes(`${count.count} tokens`));
    assert.equal(api.daemon.state, 'stopped', 'this window started nothing');
    assert.deepEqual(emberChildren().filter((c) => /\bconnect\b/.test(c) && !/--no-start/.test(c)), []);
  });

  it('Classify through ember connect uses the model the first window loaded', async () => {
    const text = 'What a lovely surprise, thank you so much!';
    const editor = await openFile('second-review.txt', text);
    select(editor, 0, text.length);
    const result = await vscode.commands.executeCommand<ClassifyResult>('ember.classify');
    assert.ok(result && result.scores.length === 3);
    const status = (await api.daemon.request(api.protocol.DaemonStatus)) as SharedStatus;
    assert.equal(status.model_loads, 1, 'no second load');
    assert.ok(status.connections >= 2, `both windows are connected (${status.connections})`);
  });
});
