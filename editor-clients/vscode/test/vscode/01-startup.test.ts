/**
 * Start-up: what a window with the extension does before the user asks Ember for anything (it
 * starts no daemon), its contributions (commands, palette, context menu, settings), and a daemon
 * that cannot start.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { EmberApi } from '../../src/extension';
import {
  EXTENSION_ROOT,
  PASS,
  driver,
  ember,
  emberChildren,
  emberLog,
  extension,
  logged,
  notificationMark,
  notified,
  openFile,
  outputPanelShows,
  select,
  setSetting,
  watchNotifications,
} from './driver';

describe('start-up', () => {
  let api: EmberApi;

  before(async () => {
    api = await ember();
    await watchNotifications();
  });

  it(`runs the extension this pass is about (${PASS})`, () => {
    const { extensionPath, packageJSON } = extension();
    if (PASS === 'dev') {
      assert.equal(extensionPath, EXTENSION_ROOT);
    } else {
      assert.notEqual(extensionPath, EXTENSION_ROOT, 'the installed .vsix, not the development folder');
      assert.match(extensionPath, /ember\.ember-vscode-\d+\.\d+\.\d+$/);
    }
    // engines.vscode admits the VS Code it runs in.
    const [wantMajor, wantMinor] = String(packageJSON.engines.vscode).replace(/^\^/, '').split('.').map(Number);
    const [major, minor] = vscode.version.split('.').map(Number);
    assert.ok(major > wantMajor || (major === wantMajor && minor >= wantMinor), `${packageJSON.engines.vscode} admits ${vscode.version}`);
  });

  it('is activated at start-up by VS Code and starts no daemon', async () => {
    // ember() only waited for VS Code to activate it (onStartupFinished); nothing asked for Ember.
    await openFile('startup.txt', 'Opening a file starts nothing.');
    await logged(api, /Token count: no shared Ember daemon is running/);
    assert.equal(api.daemon.state, 'stopped');
    assert.deepEqual(
      emberChildren().filter((c) => /\bserve\b/.test(c)),
      [],
    );
    assert.doesNotMatch(emberLog(api), /Starting \S+ serve/);
  });

  it('shows no token count while no daemon runs', async () => {
    await openFile('startup.txt', 'No count yet.');
    assert.equal(await driver('statusBar', { entry: 'ember.tokenCount' }), null);
  });

  it('lists every command in the Command Palette', async () => {
    await openFile('palette.txt', 'The text commands are offered where an editor is open.');
    // The result commands (Insert, Replace, Copy) are offered only where a summary is shown. (VS Code
    // hands the manifest over with its when clauses normalized: `resourceScheme == 'ember'`.)
    const onlyThere = new Set(
      (extension().packageJSON.contributes.menus.commandPalette as { command: string; when?: string }[])
        .filter((m) => /resourceScheme == '?ember'?/.test(m.when ?? ''))
        .map((m) => m.command),
    );
    const declared = (extension().packageJSON.contributes.commands as { command: string; title: string; category: string }[])
      .filter((c) => !onlyThere.has(c.command))
      .map((c) => `${c.category}: ${c.title}`);
    const listed = await driver<string[]>('palette', { text: 'Ember:' });
    for (const title of declared) assert.ok(listed.some((l) => l.startsWith(title)), `${title} in ${JSON.stringify(listed)}`);
    const registered = await vscode.commands.getCommands(true);
    for (const c of extension().packageJSON.contributes.commands as { command: string }[]) assert.ok(registered.includes(c.command), c.command);
  });

  it("offers Summarize, Translate, Classify and Token Count in the editor's context menu", async () => {
    await openFile('menu.txt', 'Right click here.');
    const labels = await driver<string[]>('contextMenu');
    for (const title of ['Summarize', 'Translate', 'Classify', 'Token Count']) assert.ok(labels.includes(title), `${title} in ${JSON.stringify(labels)}`);
  });

  it('warns about a setting of the wrong type and uses its default', async () => {
    const since = await notificationMark();
    await setSetting('translate.mode', 'sideways');
    try {
      await notified(/"ember\.translate\.mode" has an invalid value "sideways"; using "replace"/, since);
    } finally {
      await setSetting('translate.mode', undefined);
    }
  });

  it('reports a daemon that cannot start with a readable error and Show Log, and edits nothing', async () => {
    await setSetting('args', ['serve', '--no-such-flag']);
    try {
      const original = 'Good morning, my friend.';
      const editor = await openFile('fails.txt', original);
      select(editor, 0, original.length);
      const since = await notificationMark();
      const translating = vscode.commands.executeCommand('ember.translate');
      await driver('quickInput', { text: 'French' });
      assert.equal(await translating, undefined);
      const message = await notified(/Ember: The Ember daemon exited during start-up \(exit code 2\)/, since);
      assert.match(message, /Show Log/);
      assert.equal(api.daemon.state, 'failed');
      assert.equal(editor.document.getText(), original);
      // Show Log opens the Ember output channel, where the daemon's complaint is.
      await driver('click', { notification: 'exited during start-up', button: 'Show Log' });
      await outputPanelShows(/\[daemon\] .*unrecognized arguments: --no-such-flag/);
    } finally {
      // Back to a daemon that starts, without starting it: the next test's command does that.
      await api.daemon.stop();
      await setSetting('args', undefined);
      await vscode.commands.executeCommand('workbench.action.closePanel');
    }
    assert.equal(api.daemon.state, 'stopped');
  });
});
