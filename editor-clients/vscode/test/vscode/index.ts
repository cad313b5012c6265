/**
 * The suite's entry point in the extension host (the `extensionTestsPath` of the main window):
 * runs every `*.test.js` next to it with mocha, in name order (they share one daemon, one window).
 * $EMBER_VSCODE_GREP (a regular expression) runs only the tests whose title matches it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';
import { closeEditors, driver, setWindow } from './driver';

export function run(): Promise<void> {
  return runSuites('main', fs.readdirSync(__dirname).filter((f) => f.endsWith('.test.js')).sort());
}

/** Runs `files` (next to this module) in the window `name`; a failed test leaves a screenshot. */
export function runSuites(name: string, files: string[]): Promise<void> {
  setWindow(name);
  const mocha = new Mocha({
    ui: 'bdd',
    color: false,
    reporter: 'spec',
    timeout: 180_000, // the machine may be busy: model loads and generations take seconds each
    rootHooks: {
      async afterEach(this: Mocha.Context) {
        const test = this.currentTest;
        if (test?.state === 'failed') await driver('screenshot', { name: `${name}-${test.fullTitle()}` }).catch(() => undefined);
        await closeEditors();
      },
    },
  });
  if (process.env.EMBER_VSCODE_GREP) mocha.grep(new RegExp(process.env.EMBER_VSCODE_GREP));
  for (const file of files) mocha.addFile(path.join(__dirname, file));
  return new Promise((resolve, reject) => {
    mocha.run((failures) => (failures > 0 ? reject(new Error(`${failures} test(s) failed`)) : resolve()));
  });
}
