/**
 * The shipped bundle (package.json `main`, built by `npm run build`) loads with only `vscode`
 * provided, activates, and runs a command against the fake daemon.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import Module from 'node:module';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { EXTENSION_ROOT, fakeDaemon } from './helpers';
import * as vscodeStub from './stub/vscode';

const { stub, extensionContext } = vscodeStub;
const packageJson = JSON.parse(readFileSync(path.join(EXTENSION_ROOT, 'package.json'), 'utf8'));

describe('the bundle', () => {
  it('activates from package.json main, runs Translate, and deactivates', { timeout: 30_000 }, async () => {
    const main = path.join(EXTENSION_ROOT, packageJson.main);
    assert.ok(existsSync(main), `${main} exists (run "npm run build" first)`);
    // The bundle's only external is `vscode`: answer it with the stub, as VS Code would with the API.
    const moduleWithLoad = Module as unknown as { _load(request: string, ...rest: unknown[]): unknown };
    const load = moduleWithLoad._load;
    moduleWithLoad._load = (request: string, ...rest: unknown[]) => (request === 'vscode' ? vscodeStub : load(request, ...rest));
    try {
      const extension = require(main) as { activate(context: unknown): unknown; deactivate(): Promise<void> };
      stub.loadDefaults(packageJson);
      const { command, args } = fakeDaemon();
      stub.configure({ 'ember.command': command, 'ember.args': args });
      extension.activate(extensionContext(packageJson));
      const editor = stub.openEditor('bonjour', 0, 7);
      stub.quickPick = (items) => items[0];
      await stub.commands.get('ember.translate')!();
      assert.equal(editor.document.getText(), '[English] bonjour');
      await extension.deactivate();
      assert.ok(stub.logs[0].lines.some((l) => l.includes('Ember daemon stopped (exit code 0)')));
    } finally {
      moduleWithLoad._load = load;
    }
  });
});
