/**
 * Issue 23 in the real VS Code: warm when it will be needed (and not otherwise), prose off by
 * default, partial accept (word, line) with our items and its feedback, VS Code's own keys.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { EmberApi } from '../../src/extension';
import { driver, ember, emberChildren, emberLog, logMark, logged, notificationMark, notifications, openFile, setSetting, typeAtEnd, waitFor } from './driver';

type Feedback = { completion_id: string; event: string; accepted_chars?: number };

/** The params of the `completion/feedback` notifications in the trace after `since`. */
function feedbackSent(api: EmberApi, since: number): Feedback[] {
  const log = emberLog(api).slice(since);
  return [...log.matchAll(/Sending notification 'completion\/feedback'\.\nParams: (\{[\s\S]*?\n\})/g)].map((m) => JSON.parse(m[1]) as Feedback);
}

/** The newest `complete` answer in the trace after `since`: its text and completion_id. */
async function lastAnswer(api: EmberApi, since: number): Promise<{ text: string; completion_id: string }> {
  const text = await logged(api, /Received response 'complete - \(\d+\)'[\s\S]*?Result: \{/, since);
  const results = [...text.matchAll(/Received response 'complete - \(\d+\)'[^\n]*\nResult: (\{[\s\S]*?\n\})/g)];
  assert.ok(results.length > 0, 'a complete answer in the trace');
  return JSON.parse(results.at(-1)![1]) as { text: string; completion_id: string };
}

/** Writes `name` into the workspace folder and opens it without showing it. */
async function load(name: string, text: string): Promise<vscode.TextDocument> {
  const file = path.join(vscode.workspace.workspaceFolders![0].uri.fsPath, name);
  fs.writeFileSync(file, text);
  return vscode.workspace.openTextDocument(vscode.Uri.file(file));
}

describe('staying out of the way', () => {
  let api: EmberApi;

  before(async () => {
    api = await ember();
    await setSetting('trace', 'messages');
    await setSetting('complete.maxTokens', 16);
  });
  after(async () => {
    await setSetting('complete.enabled', undefined, 'python');
    await setSetting('complete.enabled', undefined, 'markdown');
    await setSetting('complete.enabled', undefined);
    await setSetting('complete.maxTokens', undefined);
    await setSetting('trace', undefined);
  });

  it('a window that shows no document wanting completions starts nothing', async () => {
    await api.daemon.stop();
    await setSetting('complete.enabled', true, 'python');
    await openFile('readme.txt', 'Plain text: completion is off here.');
    await api.warmer.check();
    assert.equal(api.daemon.state, 'stopped');
    assert.deepEqual(emberChildren().filter((c) => /\bserve\b/.test(c)), []);
  });

  it('showing a Python file with completion on starts the daemon and loads the model, quietly', async () => {
    assert.equal(api.daemon.state, 'stopped');
    await notificationMark();
    const mark = logMark(api);
    await openFile('warm.py', 'def warm():\n');
    // Nothing was typed: the editor being shown is what starts it.
    await logged(api, /Warming up: python document warm\.py shown with inline completion on; loading default/, mark);
    await logged(api, /Sending request 'models\/load - \(\d+\)'/, mark);
    await waitFor('the model loaded', async () => {
      const status = await api.daemon.request(api.protocol.DaemonStatus);
      return (status.models as { name: string }[]).some((m) => m.name === 'default');
    });
    const { seen } = await notifications();
    assert.deepEqual(seen.filter((t) => !/^Ember tests:/.test(t)), [], 'no notification while warming');
    const item = await waitFor('the model in the status bar', async () => {
      const s = await driver<{ text: string } | null>('statusBar', { entry: 'ember.model' });
      return s?.text.includes('SmolLM2-135M-Instruct') && s;
    });
    assert.ok(item);
  });

  it('ember.complete.warmOnOpen false: showing the file starts nothing; turning it on warms up', async () => {
    await api.daemon.stop();
    await setSetting('complete.warmOnOpen', false);
    try {
      await openFile('cold.py', 'x = 1\n');
      await api.warmer.check();
      assert.equal(api.daemon.state, 'stopped');
    } finally {
      await setSetting('complete.warmOnOpen', undefined);
    }
    // The file is still shown: the setting's change is enough.
    await waitFor('the warm-up after the setting changed', () => api.daemon.state === 'running');
  });

  it('prose is off by default even with completion on for all files; on per language', async () => {
    await api.daemon.stop();
    await setSetting('complete.enabled', true);
    const md = await openFile('prose.md', '# Title\n\nSome prose.\n');
    const config = (d: vscode.TextDocument) => vscode.workspace.getConfiguration('ember', d).get<boolean>('complete.enabled');
    assert.equal(config(md.document), false, 'Markdown off');
    // Files, not untitled documents (the suite's saveAll would ask where to save those), and not
    // shown (a shown JavaScript file would rightly start the warm-up).
    const txt = await load('prose.txt', 'text');
    assert.equal(config(txt), false, 'plain text off');
    const commit = await vscode.languages.setTextDocumentLanguage(await load('MESSAGE', 'Fix'), 'git-commit');
    assert.equal(config(commit), false, 'commit messages off');
    const js = await load('code.js', 'let a');
    assert.equal(config(js), true, 'code on');
    await api.warmer.check();
    assert.equal(api.daemon.state, 'stopped', 'a Markdown file wants no completions: nothing started');
    // Typing in it asks for nothing.
    const mark = logMark(api);
    await typeAtEnd(md, 'More');
    assert.equal(await api.inlineCompletion.provideInlineCompletionItems(md.document, md.selection.active, { triggerKind: 0, selectedCompletionInfo: undefined } as vscode.InlineCompletionContext, new vscode.CancellationTokenSource().token), undefined);
    assert.doesNotMatch(emberLog(api).slice(mark), /Sending request 'complete/);
    // The user turns it on for Markdown: now it is on there, and the warm-up follows.
    await setSetting('complete.enabled', true, 'markdown');
    assert.equal(config(md.document), true);
    await waitFor('the warm-up for the Markdown file', () => api.daemon.state === 'running');
  });

  it("accept word and accept line take part of our suggestion; the feedback says partial", async () => {
    await setSetting('complete.enabled', undefined);
    await setSetting('complete.enabled', undefined, 'markdown');
    await setSetting('complete.maxTokens', 24);
    const before = 'def describe(person):\n    """Say who the person is."""\n';
    const editor = await openFile('partial.py', before);
    const mark = logMark(api);
    await typeAtEnd(editor, '    return f"');
    await waitFor('ghost text in the editor', () => driver<string | null>('ghostText'));
    const answer = await lastAnswer(api, mark);
    const typed = `${before}    return f"`;
    assert.ok(answer.text.length > 0);
    await vscode.commands.executeCommand('editor.action.inlineSuggest.acceptNextWord');
    const afterWord = await waitFor('a word accepted', () => editor.document.getText() !== typed && editor.document.getText(), 10_000);
    const word = afterWord.slice(typed.length);
    assert.ok(word.length > 0 && answer.text.startsWith(word), `"${word}" is the start of "${answer.text}"`);
    const partial = await waitFor('the partial report', () =>
      feedbackSent(api, mark).find((f) => f.completion_id === answer.completion_id && f.event === 'partial'),
    10_000);
    assert.ok((partial.accepted_chars ?? 0) > 0);
    if (word.length < answer.text.length) {
      // The rest is still offered; accept-line takes the rest of its line.
      await waitFor('the rest still shown', () => driver<string | null>('ghostText'), 10_000);
      await vscode.commands.executeCommand('editor.action.inlineSuggest.acceptNextLine');
      const rest = answer.text.slice(word.length).split('\n')[0];
      await waitFor('the line accepted', () => editor.document.getText().startsWith(`${typed}${word}${rest}`), 10_000);
    }
  });

  it("VS Code's own keys work with our items: show next/previous keep it, Tab accepts; we bind no key", async () => {
    const keybindings = (vscode.extensions.getExtension('ember.ember-vscode')!.packageJSON.contributes.keybindings ?? []) as unknown[];
    assert.deepEqual(keybindings, []);
    const before = 'def add(a, b):\n';
    const editor = await openFile('keys.py', before);
    const mark = logMark(api);
    await typeAtEnd(editor, '    return');
    await waitFor('ghost text in the editor', () => driver<string | null>('ghostText'));
    await vscode.commands.executeCommand('editor.action.inlineSuggest.showNext');
    await vscode.commands.executeCommand('editor.action.inlineSuggest.showPrevious');
    const ghost = await waitFor('ghost text still shown', () => driver<string | null>('ghostText'), 10_000);
    assert.ok(ghost.trim().length > 0);
    const answer = await lastAnswer(api, mark);
    await driver('keys', { press: 'Tab' });
    await waitFor('Tab accepted it', () => editor.document.getText() === `${before}    return${answer.text}`, 10_000);
  });
});
