/**
 * The extension's failure paths against the stub `vscode` module and the fake daemon: errors
 * shown as readable messages, Cancel, restarts on configuration change, model progress.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type * as vscodeTypes from 'vscode';
import { EmberApi, activate, deactivate } from '../src/extension';
import { DaemonStatus } from '../src/protocol';
import { EXTENSION_ROOT, fakeDaemon, next } from './helpers';
import { extensionContext, stub } from './stub/vscode';

const TIMEOUT = { timeout: 30_000 };
const packageJson = JSON.parse(readFileSync(path.join(EXTENSION_ROOT, 'package.json'), 'utf8'));

/** Points the extension at the fake daemon with these switches; resolves once it runs. */
async function useFake(api: EmberApi, ...switches: string[]): Promise<void> {
  const { command, args } = fakeDaemon(...switches);
  stub.configure({ 'ember.command': command, 'ember.args': args });
  await next(api.daemon.onDidChangeState, (s) => s === 'running' || s === 'failed');
}

describe('extension failure paths (fake daemon)', () => {
  let api: EmberApi;

  before(async () => {
    stub.loadDefaults(packageJson);
    const { command, args } = fakeDaemon();
    stub.configure({ 'ember.command': command, 'ember.args': args, 'ember.tokenCount.enabled': false });
    api = activate(extensionContext(packageJson) as unknown as vscodeTypes.ExtensionContext);
    await api.daemon.start();
  });
  after(async () => {
    await deactivate();
  });
  beforeEach(() => stub.reset());

  it('Translate replaces exactly the selection', TIMEOUT, async () => {
    const editor = stub.openEditor('keep hello world keep', 5, 16);
    stub.quickPick = (items) => items.find((i: { label: string }) => i.label === 'German');
    await stub.commands.get('ember.translate')!();
    assert.equal(editor.document.getText(), 'keep [German] hello world keep');
  });

  it('Summarize: Replace Selection replaces the selection with the summary', TIMEOUT, async () => {
    const editor = stub.openEditor('alpha beta gamma delta epsilon\nrest', 0, 30);
    stub.messageChoice = (m) => (m.message.includes('summary ready') ? 'Replace Selection' : undefined);
    await stub.commands.get('ember.summarize')!();
    assert.equal(stub.shownDocuments.at(-1)!.getText(), 'Summary: alpha beta gamma.');
    assert.equal(editor.document.getText(), 'Summary: alpha beta gamma.\nrest');
  });

  it('a daemon error is shown as its message, with Show Log, and nothing is edited', TIMEOUT, async () => {
    await useFake(api, '--error', '-32002');
    try {
      const editor = stub.openEditor('some text', 0, 9);
      const shown = next(stub.messageShown.event, (m) => m.severity === 'error');
      stub.messageChoice = (m) => (m.severity === 'error' ? 'Show Log' : undefined);
      await stub.commands.get('ember.translate')!();
      const message = await shown;
      assert.equal(message.message, 'Ember: fake error -32002 (9000 tokens, the model takes 2048)');
      assert.deepEqual(message.items, ['Show Log']);
      assert.ok(stub.logs[0].shown, 'Show Log opened the log');
      assert.equal(editor.document.getText(), 'some text');
    } finally {
      await useFake(api);
    }
  });

  it('Cancel on the progress notification cancels the request and edits nothing', TIMEOUT, async () => {
    await useFake(api, '--slow', '20');
    try {
      const text = 'w '.repeat(200).trim();
      const editor = stub.openEditor(text, 0, text.length);
      stub.onProgress = (p) => {
        p.onReport = () => p.cancel();
      };
      const result = await stub.commands.get('ember.translate')!();
      assert.equal(result, undefined);
      assert.equal(editor.document.getText(), text);
      assert.ok(!stub.messages.some((m) => m.severity === 'error'), 'a cancel is not an error');
      const status = (await api.daemon.request(DaemonStatus)) as unknown as { cancelled_requests: number };
      assert.equal(status.cancelled_requests, 1);
    } finally {
      await useFake(api);
    }
  });

  it('does not overwrite text that changed while the daemon worked', TIMEOUT, async () => {
    await useFake(api, '--slow', '5');
    try {
      const editor = stub.openEditor('one two three', 0, 13);
      stub.onProgress = (p) => {
        p.onReport = () => {
          if (editor.document.getText() === 'one two three') stub.type(editor, '1. ', 0);
        };
      };
      await stub.commands.get('ember.translate')!();
      assert.equal(editor.document.getText(), '1. one two three');
      assert.ok(stub.messages.some((m) => m.severity === 'warning' && m.message.includes('text changed')));
    } finally {
      await useFake(api);
    }
  });

  it('shows model progress notifications until the model is ready', TIMEOUT, async () => {
    await useFake(api, '--progress');
    stub.openEditor('a b c', 0, 5);
    await stub.commands.get('ember.summarize')!();
    const loading = stub.progress.find((p) => p.title === 'Ember: fake-model');
    assert.ok(loading, JSON.stringify(stub.progress.map((p) => p.title)));
    assert.equal(loading.location, 15 /* Notification */);
    assert.deepEqual(
      loading.reports.map((r) => r.increment),
      [undefined, 50, 50, undefined],
    );
    assert.equal(loading.reports[0].message, 'loading 0%');
    assert.ok(loading.done, 'closed once ready');
  });

  it('a daemon that cannot start is reported once, with Restart', TIMEOUT, async () => {
    const shown = next(stub.messageShown.event, (m) => m.severity === 'error');
    await useFake(api, '--fail-start');
    const message = await shown;
    assert.match(message.message, /^Ember: The Ember daemon exited during start-up \(exit code 2\)/);
    assert.deepEqual(message.items, ['Show Log', 'Restart']);
    // A command now gets the same explanation, without a new spawn.
    stub.openEditor('x y', 0, 3);
    await stub.commands.get('ember.classify')!();
    assert.equal(stub.messages.filter((m) => m.severity === 'error').length, 2);
    await useFake(api);
    assert.equal(api.daemon.state, 'running');
  });

  it('Restart Daemon starts a fresh daemon', TIMEOUT, async () => {
    await api.daemon.start();
    const before = api.daemon.pid;
    await stub.commands.get('ember.restartDaemon')!();
    assert.equal(api.daemon.state, 'running');
    assert.notEqual(api.daemon.pid, before);
    assert.ok(stub.messages.some((m) => m.message === 'Ember: daemon restarted.'));
  });

  it('invalid settings fall back to defaults, with a warning', TIMEOUT, async () => {
    const shown = next(stub.messageShown.event, (m) => m.severity === 'warning');
    stub.configure({ 'ember.translate.mode': 'sideways' });
    try {
      const message = await shown;
      assert.match(message.message, /"ember\.translate\.mode" has an invalid value "sideways"; using "replace"/);
      const editor = stub.openEditor('hi', 0, 2);
      await stub.commands.get('ember.translate')!();
      assert.equal(editor.document.getText(), '[English] hi');
    } finally {
      stub.configure({ 'ember.translate.mode': 'replace' });
    }
  });
});
