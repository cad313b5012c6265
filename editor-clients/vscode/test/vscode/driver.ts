/**
 * What the suites share: the extension under test, the browser driver (scripts/run-vscode.mjs)
 * for what only the UI can do, the Ember log, settings, documents and waiting.
 *
 * The driver is reached through files: a request `<id>.request.json` in $EMBER_VSCODE_DRIVER_DIR,
 * answered by `<id>.reply.json`.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { EmberApi } from '../../src/extension';

export const EXTENSION_ID = 'ember.ember-vscode';
const channel = requiredEnv('EMBER_VSCODE_DRIVER_DIR');
/** `dev` (the extension folder) or `vsix` (the packaged extension, installed). */
export const PASS = requiredEnv('EMBER_VSCODE_TEST_PASS');
export const EXTENSION_ROOT = requiredEnv('EMBER_VSCODE_EXTENSION_ROOT');
const WORKSPACES = requiredEnv('EMBER_VSCODE_WORKSPACES');

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite with scripts/test-vscode.sh`);
  return value;
}

/**
 * Which browser window this extension host belongs to (the driver keeps one page per window). On
 * globalThis: every test file is its own bundle, with its own copy of this module.
 */
const state = globalThis as { emberTestWindow?: string };
export function setWindow(name: string): void {
  state.emberTestWindow = name;
}
function windowName(): string {
  return state.emberTestWindow ?? 'main';
}

/** Asks the driver to do `action` in this window's page; resolves with its answer. */
export async function driver<T = unknown>(action: string, args: Record<string, unknown> = {}, timeoutMs = 120_000): Promise<T> {
  const id = randomUUID();
  const request = path.join(channel, `${id}.request.json`);
  fs.writeFileSync(`${request}.tmp`, JSON.stringify({ id, window: windowName(), action, args }));
  fs.renameSync(`${request}.tmp`, request);
  const replyFile = path.join(channel, `${id}.reply.json`);
  await waitFor(`the driver's answer to ${action}`, () => fs.existsSync(replyFile), timeoutMs);
  const reply = JSON.parse(fs.readFileSync(replyFile, 'utf8')) as { result?: T; error?: string };
  fs.rmSync(replyFile, { force: true });
  if (reply.error !== undefined) throw new Error(`driver ${action}: ${reply.error}`);
  return reply.result as T;
}

/**
 * Resolves with the first truthy value of `probe`, checked every 50 ms; fails after `timeoutMs`
 * naming `what`. (Conditions only: never a fixed sleep.)
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | null | false | '' | Promise<T | undefined | null | false | ''>,
  timeoutMs = 120_000,
  describe: () => unknown = () => undefined,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > until) {
      const seen = describe() ?? last;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${typeof seen === 'string' ? seen : JSON.stringify(seen) ?? String(seen)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface OutputPanel {
  visible: boolean;
  channel: string | null;
  text: string;
}

/** Resolves once the Output panel shows the Ember channel with a line matching `pattern`. */
export async function outputPanelShows(pattern: RegExp): Promise<OutputPanel> {
  let panel: OutputPanel | undefined;
  return waitFor(
    `the Ember channel in the Output panel, showing ${pattern}`,
    async () => {
      panel = await driver<OutputPanel>('outputPanel');
      return panel.visible && panel.channel === 'Ember' && pattern.test(panel.text) && panel;
    },
    60_000,
    () => panel,
  );
}

/** Resolves with the next event that satisfies `predicate`. */
export function nextEvent<T>(event: vscode.Event<T>, predicate: (e: T) => boolean = () => true): Promise<T> {
  return new Promise((resolve) => {
    const listener = event((e) => {
      if (predicate(e)) {
        listener.dispose();
        resolve(e);
      }
    });
  });
}

export function extension(): vscode.Extension<EmberApi> {
  const ext = vscode.extensions.getExtension<EmberApi>(EXTENSION_ID);
  if (!ext) throw new Error(`${EXTENSION_ID} is not installed`);
  return ext;
}

/** The extension's API, once VS Code activated it by itself (the suite never activates it). */
export async function ember(): Promise<EmberApi> {
  const ext = extension();
  await waitFor('VS Code to activate the extension', () => ext.isActive, 60_000);
  return ext.exports;
}

// -- notifications ------------------------------------------------------------------------------

export interface Notifications {
  /** Every notification text the window showed since it opened (progress messages included). */
  seen: string[];
  /** The ones in the notification center now. */
  visible: string[];
}

/**
 * Opens the notification center and keeps it open with a notification of its own. VS Code shows
 * no toasts while its smoke-test driver is on, so notifications are read (and clicked) there.
 */
export async function watchNotifications(): Promise<void> {
  void vscode.window.showInformationMessage('Ember tests: notifications are recorded while this one is open.');
  await driver('watchNotifications');
}

export function notifications(): Promise<Notifications> {
  return driver<Notifications>('notifications');
}

/** Resolves with the first notification seen after `since` (an index into `seen`) that matches. */
export async function notified(pattern: RegExp, since = 0, timeoutMs = 120_000): Promise<string> {
  let seen: string[] = [];
  return waitFor(
    `a notification matching ${pattern}`,
    async () => {
      seen = (await notifications()).seen.slice(since);
      return seen.find((t) => pattern.test(t));
    },
    timeoutMs,
    () => seen,
  );
}

/**
 * Clears the notification center and what was recorded, so that `notified(pattern)` finds only
 * what comes next (a message the same as an earlier one included). Returns the mark for it.
 */
export async function notificationMark(): Promise<number> {
  await vscode.commands.executeCommand('notifications.clearAll');
  await driver('clearNotifications');
  await watchNotifications();
  return 0;
}

// -- the Ember log (the "Ember" output channel's file) --------------------------------------------

export function emberLog(api: EmberApi): string {
  try {
    return fs.readFileSync(path.join(api.logUri.fsPath, 'Ember.log'), 'utf8');
  } catch {
    return '';
  }
}

/** A position in the log: `logged(..., since)` only looks at what came after it. */
export function logMark(api: EmberApi): number {
  return emberLog(api).length;
}

/** Resolves with the log's text after `since` once `pattern` appears in it. */
export async function logged(api: EmberApi, pattern: RegExp, since = 0, timeoutMs = 120_000): Promise<string> {
  return waitFor(`${pattern} in the Ember log`, () => {
    const text = emberLog(api).slice(since);
    return pattern.test(text) && text;
  }, timeoutMs);
}

// -- settings -----------------------------------------------------------------------------------

/**
 * Sets `ember.<key>` in the user settings (as the Settings editor does) and resolves once the
 * extension host sees the new value, so the extension's change handler has run.
 */
export async function setSetting(key: string, value: unknown, languageId?: string): Promise<void> {
  const scope = languageId ? { languageId } : undefined;
  const config = vscode.workspace.getConfiguration('ember', scope);
  await config.update(key, value, vscode.ConfigurationTarget.Global, languageId ? true : undefined);
  await waitFor(`ember.${key} to be ${JSON.stringify(value)}`, () => {
    const now = vscode.workspace.getConfiguration('ember', scope).inspect(key);
    const set = languageId ? now?.globalLanguageValue : now?.globalValue;
    return JSON.stringify(set) === JSON.stringify(value);
  });
}

// -- documents ----------------------------------------------------------------------------------

/** Writes `name` into this window's workspace folder and opens it in an editor (focused). */
export async function openFile(name: string, text: string): Promise<vscode.TextEditor> {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? path.join(WORKSPACES, windowName());
  const file = path.join(folder, name);
  fs.writeFileSync(file, text);
  const document = await vscode.workspace.openTextDocument(vscode.Uri.file(file));
  const editor = await vscode.window.showTextDocument(document, { viewColumn: vscode.ViewColumn.One, preview: false });
  return editor;
}

/**
 * Types `text` at the end of the editor's document with real keystrokes (focus, Ctrl+End, keys),
 * and resolves once the document has it.
 */
export async function typeAtEnd(editor: vscode.TextEditor, text: string): Promise<void> {
  const before = editor.document.getText();
  await vscode.window.showTextDocument(editor.document, { viewColumn: editor.viewColumn, preserveFocus: false });
  await vscode.commands.executeCommand('workbench.action.focusActiveEditorGroup');
  await driver('keys', { press: 'Control+End' });
  await waitFor('the cursor at the end', () => editor.selection.active.isEqual(editor.document.positionAt(before.length)), 10_000);
  await driver('keys', { type: text });
  await waitFor(`"${text}" typed`, () => editor.document.getText() === before + text, 10_000);
}

/** Selects [start, end) of the editor's text (offsets), or puts the cursor at `start`. */
export function select(editor: vscode.TextEditor, start: number, end = start): void {
  const { document } = editor;
  editor.selection = new vscode.Selection(document.positionAt(start), document.positionAt(end));
}

/** Saves and closes every editor: a clean workbench for the next test, and no "Save?" dialog. */
export async function closeEditors(): Promise<void> {
  await vscode.commands.executeCommand('workbench.action.files.saveAll');
  await vscode.commands.executeCommand('workbench.action.closeAllEditors');
}

// -- processes ----------------------------------------------------------------------------------

/** The command lines of this extension host's child processes that run `ember`. */
export function emberChildren(): string[] {
  const children: string[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (/ember/.test(cmdline)) children.push(cmdline);
    } catch {
      // gone meanwhile
    }
  }
  return children;
}
