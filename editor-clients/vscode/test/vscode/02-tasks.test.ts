/**
 * The commands against the real daemon and its offline model (SmolLM2-135M). The model is small:
 * the tests check that each command does its job in the editor (text streams in, the selection is
 * replaced, the scores are shown, counts match the daemon's), never what the text says.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { EmberApi } from '../../src/extension';
import type { ClassifyResult } from '../../src/protocol';
import {
  driver,
  ember,
  logMark,
  logged,
  notificationMark,
  notified,
  openFile,
  select,
  setSetting,
  waitFor,
  watchNotifications,
} from './driver';

/** The last `method` request in the trace, with its params (ember.trace = messages). */
function tracedParams(log: string, method: string): Record<string, unknown> {
  const sent = [...log.matchAll(new RegExp(`Sending request '${method} - \\((\\d+)\\)'\\.\\nParams: (\\{[\\s\\S]*?\\n\\})`, 'g'))];
  assert.ok(sent.length > 0, `a traced ${method} request`);
  return JSON.parse(sent.at(-1)![2]) as Record<string, unknown>;
}

describe('tasks against the real daemon', () => {
  let api: EmberApi;

  before(async () => {
    api = await ember();
    await watchNotifications();
    await setSetting('summarize.maxTokens', 48);
    await setSetting('translate.maxTokens', 32);
  });
  after(async () => {
    await setSetting('summarize.maxTokens', undefined);
    await setSetting('translate.maxTokens', undefined);
  });

  it('Summarize starts the daemon, streams the summary into "Summary of notes.txt" beside the editor, and finishes when it is shown', async () => {
    assert.equal(api.daemon.state, 'stopped', 'no daemon before the first command');
    const source =
      'The meeting covered the budget for next year. Costs for servers will rise by ten percent. ' +
      'The team agreed to move the nightly builds to a cheaper machine and to review the plan in March.';
    const editor = await openFile('notes.txt', `${source}\nKeep this line.`);
    select(editor, 0, source.length);
    const versions: string[] = [];
    const listener = vscode.workspace.onDidChangeTextDocument((e) => {
      if (e.document.uri.scheme === 'ember') versions.push(e.document.getText());
    });
    try {
      const since = await notificationMark();
      // Nothing is clicked: the command resolves once the summary is shown (a chained macro goes on).
      const text = await vscode.commands.executeCommand<string | undefined>('ember.summarize');
      assert.ok(text && text.trim().length > 0, 'a summary came back');
      const view = vscode.window.visibleTextEditors.find((e) => e.document.uri.scheme === 'ember');
      assert.ok(view, 'the summary is shown in an ember: document');
      assert.equal(view.document.uri.path, '/Summary of notes.txt', 'named after the file and the task: no counter, no extension added');
      assert.equal(view.viewColumn, vscode.ViewColumn.Two, 'beside the editor');
      assert.equal(view.document.getText(), text);
      const partial = versions.filter((v) => v.length > 0 && v.length < text.length && text.startsWith(v));
      assert.ok(partial.length >= 2, `streamed: ${partial.length} partial versions before the whole`);
      assert.equal(editor.document.getText(), `${source}\nKeep this line.`, 'nothing inserted unasked');
      // The follow-ups stay on the notification, which nobody had to answer; Insert still works.
      const note = await notified(/^Ember: summary of notes\.txt ready \(SmolLM2-135M-Instruct\)\. \[Insert\|Replace Selection\|Copy\]$/, since);
      assert.doesNotMatch(note, /default/);
      await driver('click', { notification: 'summary of notes.txt ready', button: 'Insert' });
      await waitFor('the summary inserted below', () => editor.document.getText() === `${source}\n${text}\nKeep this line.`, 30_000);
    } finally {
      listener.dispose();
    }
  });

  it('showed the model load in the status bar only, by its own name, never as a notification', async () => {
    const { seen } = await driver<{ seen: string[] }>('notifications');
    const loads = seen.filter((t) => /loading|converting|quantiz|^Ember: default\b/i.test(t));
    assert.deepEqual(loads, [], 'no load notification');
    assert.ok(
      api.modelStatus.history.some((t) => /^\$\(loading~spin\) SmolLM2-135M-Instruct( \d+%)?$/.test(t)),
      `the load in the status bar item: ${JSON.stringify(api.modelStatus.history)}`,
    );
    await logged(api, /default \(SmolLM2-135M-Instruct\): ready 100%/);
    const item = await waitFor('the model in the status bar', async () => {
      const s = await driver<{ text: string } | null>('statusBar', { entry: 'ember.model' });
      return s?.text.includes('SmolLM2-135M-Instruct') && s;
    });
    assert.doesNotMatch(item.text, /default/);
  });

  it('Summarize in a chain: the next command runs at once, and Insert from the title bar makes a Markdown paragraph of its own', async () => {
    const paragraph = 'Ember runs models locally. It answers editors over JSON-RPC.\nIt loads the model once and keeps it warm.';
    const editor = await openFile('notes.md', `# Notes\n\n${paragraph}\nNext paragraph line.\n`);
    select(editor, 9, 9 + paragraph.length);
    // A macro: summarize, then insert; neither waits for the user.
    const text = await vscode.commands.executeCommand<string | undefined>('ember.summarize');
    assert.ok(text && text.trim().length > 0);
    const view = vscode.window.visibleTextEditors.find((e) => e.document.uri.scheme === 'ember');
    assert.equal(view?.document.uri.path, '/Summary of notes.md', 'not "1 Summary of notes.md.md"');
    // Its title bar carries the follow-ups (they block nothing). VS Code shows a group's title
    // actions while the group is active (workbench.editor.alwaysShowEditorActions): look there.
    await vscode.window.showTextDocument(view!.document, { viewColumn: view!.viewColumn, preserveFocus: false });
    const actions = await waitFor('the result actions on the summary\'s title bar', async () => {
      const labels = await driver<string[]>('eval', {
        js: "[...document.querySelectorAll('.editor-group-container.active .editor-actions .action-label')].map((a) => a.getAttribute('aria-label') || '')",
      });
      return ['Insert Below the Source', 'Replace the Source', 'Copy Result'].every((t) => labels.some((l) => l.startsWith(t))) && labels;
    }, 30_000);
    assert.ok(actions);
    assert.equal(await vscode.commands.executeCommand('ember.insertResult', view!.document.uri), true);
    assert.equal(editor.document.getText(), `# Notes\n\n${paragraph}\n\n${text.trimEnd()}\n\nNext paragraph line.\n`);
    // Summarizing the same file again reuses its document: still one "Summary of notes.md".
    await vscode.window.showTextDocument(editor.document, { viewColumn: editor.viewColumn, preserveFocus: false });
    await vscode.commands.executeCommand<string | undefined>('ember.summarize');
    const summaries = vscode.workspace.textDocuments.filter((d) => d.uri.scheme === 'ember' && /Summary of notes\.md/.test(d.uri.path));
    assert.deepEqual(summaries.map((d) => d.uri.path), ['/Summary of notes.md']);
  });

  it('Translate replaces the selection with the translation, in one edit that Undo takes back', async () => {
    const original = 'Good morning, my friend.\nKeep this line.';
    const editor = await openFile('greeting.txt', original);
    select(editor, 0, 24);
    const translating = vscode.commands.executeCommand<string | undefined>('ember.translate');
    await driver('quickInput', { text: 'French' });
    const text = await translating;
    assert.ok(text && text.length > 0, 'a translation came back');
    assert.equal(editor.document.getText(), `${text}\nKeep this line.`);
    await vscode.window.showTextDocument(editor.document);
    await vscode.commands.executeCommand('undo');
    assert.equal(editor.document.getText(), original);
  });

  it('Translate inserts below the line with ember.translate.mode "insertBelow", in a language typed in', async () => {
    await setSetting('translate.mode', 'insertBelow');
    try {
      const editor = await openFile('thanks.txt', 'Thank you very much.\nNext line.');
      select(editor, 3); // no selection: the cursor's line
      const translating = vscode.commands.executeCommand<string | undefined>('ember.translate');
      await driver('quickInput', { text: 'Other' });
      await driver('quickInput', { text: 'Spanish' });
      const text = await translating;
      assert.ok(text && text.length > 0);
      assert.equal(editor.document.getText(), `Thank you very much.\n${text}\nNext line.`);
    } finally {
      await setSetting('translate.mode', undefined);
    }
  });

  it('Cancel on the progress notification stops the translation and edits nothing', async () => {
    await setSetting('translate.maxTokens', 400);
    try {
      const original = 'Write a very long story about a dragon and a knight who became friends in a small village.';
      const editor = await openFile('cancel.txt', original);
      select(editor, 0, original.length);
      const mark = logMark(api);
      const translating = vscode.commands.executeCommand<string | undefined>('ember.translate');
      await driver('quickInput', { text: 'German' });
      await driver('click', { notification: 'translating into German', button: 'Cancel' });
      assert.equal(await translating, undefined);
      assert.equal(editor.document.getText(), original);
      await logged(api, /Cancelling request \d+ \(translate\)/, mark);
      const { seen } = await driver<{ seen: string[] }>('notifications');
      assert.ok(!seen.some((t) => /Cancelled/.test(t)), 'a cancel is not reported as an error');
    } finally {
      await setSetting('translate.maxTokens', 32);
    }
  });

  it('Translate does not overwrite text that was edited while it worked', async () => {
    const original = 'The weather is nice today.';
    const editor = await openFile('edited.txt', original);
    select(editor, 0, original.length);
    const since = await notificationMark();
    const translating = vscode.commands.executeCommand<string | undefined>('ember.translate');
    await driver('quickInput', { text: 'Italian' });
    await notified(/translating into Italian/, since);
    const edit = new vscode.WorkspaceEdit();
    edit.insert(editor.document.uri, new vscode.Position(0, 0), '1. ');
    await vscode.workspace.applyEdit(edit);
    await translating;
    assert.equal(editor.document.getText(), `1. ${original}`);
    await notified(/the text changed while Ember was working; nothing was replaced/, since);
  });

  it('a daemon error reaches the user as its message, with Show Log, and nothing is edited', async () => {
    const long = `${'word '.repeat(9000).trim()}.`;
    const editor = await openFile('long.txt', long);
    select(editor, 0, long.length);
    const since = await notificationMark();
    const translating = vscode.commands.executeCommand('ember.translate');
    await driver('quickInput', { text: 'French' });
    await translating;
    const message = await notified(/^Ember: .*\d+ tokens; the model takes at most \d+/, since);
    assert.match(message, /Show Log/);
    assert.doesNotMatch(message, /\{|\[object|Traceback/, 'readable');
    assert.equal(editor.document.getText(), long);
  });

  it('Classify shows the top label with every score, and sends calibrate only when it is set', async () => {
    await setSetting('trace', 'messages');
    try {
      const text = 'I love this editor, it is wonderful and fast!';
      const editor = await openFile('review.txt', text);
      select(editor, 0, text.length);
      const since = await notificationMark();
      let mark = logMark(api);
      const result = await vscode.commands.executeCommand<ClassifyResult>('ember.classify');
      const message = await notified(new RegExp(`^Ember: ${result.label} \\(`), since);
      for (const { label, score } of result.scores) assert.ok(message.includes(`${label} ${(score * 100).toFixed(1)}%`), `${label} in "${message}"`);
      assert.deepEqual(result.scores.map((s) => s.label).sort(), ['negative', 'neutral', 'positive']);
      const sent = tracedParams(await logged(api, /Sending request 'classify/, mark), 'classify');
      assert.ok(!('calibrate' in sent), `no calibrate in ${JSON.stringify(sent)}: the daemon decides`);

      await setSetting('classify.calibrate', 'on');
      mark = logMark(api);
      const calibrated = await vscode.commands.executeCommand<ClassifyResult>('ember.classify');
      assert.equal(tracedParams(await logged(api, /Sending request 'classify/, mark), 'classify').calibrate, true);
      assert.equal(calibrated.calibrated, true);
    } finally {
      await setSetting('classify.calibrate', undefined);
      await setSetting('trace', undefined);
    }
  });

  it('the status bar shows the token count of the selection and follows it', async () => {
    const editor = await openFile('count.txt', 'Hello world, how are you today?');
    select(editor, 0, 11);
    const part = await api.daemon.request(api.protocol.Tokenize, { text: 'Hello world' });
    const item = await waitFor('the count of the selection', async () => {
      const s = await driver<{ text: string } | null>('statusBar', { entry: 'ember.tokenCount' });
      return s?.text.includes(`${part.count} tokens · SmolLM2-135M-Instruct`) && s;
    });
    assert.ok(item);
    const whole = await api.daemon.request(api.protocol.Tokenize, { text: editor.document.getText() });
    assert.notEqual(whole.count, part.count);
    select(editor, 5); // no selection: the whole document
    await waitFor('the count of the document', async () => {
      const s = await driver<{ text: string } | null>('statusBar', { entry: 'ember.tokenCount' });
      return s?.text.includes(`${whole.count} tokens · SmolLM2-135M-Instruct`);
    });
  });

  it('Status shows the daemon and its models; Show Details opens the rest beside the editor', async () => {
    const since = await notificationMark();
    const status = await vscode.commands.executeCommand<{ pid: number }>('ember.status');
    assert.equal(status.pid, (await api.daemon.request(api.protocol.DaemonStatus)).pid);
    await notified(/^Ember \S+: \d+ requests served, queue \d+; loaded: SmolLM2-135M-Instruct \[Show Details\]$/, since);
    await driver('click', { notification: 'requests served', button: 'Show Details' });
    const view = await waitFor('the status document', () => vscode.window.visibleTextEditors.find((e) => /Ember status/.test(e.document.uri.path)));
    await waitFor('its text', () => /Memory: rss_bytes: [\d.]+ MiB/.test(view.document.getText()));
    assert.match(view.document.getText(), /Models: SmolLM2-135M-Instruct \(default\): causal-lm/);
  });
});
