/**
 * The extension (activate, the commands, the inline completion provider, the status item)
 * against the stub `vscode` module and the REAL daemon with its offline model.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type * as vscodeTypes from 'vscode';
import { EmberApi, activate, deactivate } from '../src/extension';
import { OUTPUT_SCHEME } from '../src/outputView';
import { Complete, Tokenize } from '../src/protocol';
import { EXTENSION_ROOT, emberCommand, next } from './helpers';
import {
  CancellationTokenSource,
  InlineCompletionItem,
  InlineCompletionTriggerKind,
  LogChannel,
  Position,
  Selection,
  TextDocument,
  extensionContext,
  stub,
} from './stub/vscode';

const TIMEOUT = { timeout: 120_000 };
const packageJson = JSON.parse(readFileSync(path.join(EXTENSION_ROOT, 'package.json'), 'utf8'));

/** Resolves when a line containing `text` is next written to the log. */
function logged(log: LogChannel, text: string): Promise<string> {
  return next(log.onLine, (line) => line.includes(text));
}

describe('extension against the real daemon', () => {
  let api: EmberApi;
  let log: LogChannel;

  before(async () => {
    stub.loadDefaults(packageJson);
    stub.configure({
      'ember.command': emberCommand(),
      'ember.args': ['serve'],
      'ember.trace': 'messages',
      'ember.summarize.maxTokens': 24,
      'ember.translate.maxTokens': 24,
      'ember.complete.debounceMs': 0,
      'ember.complete.maxTokens': 8,
      'ember.tokenCount.debounceMs': 0,
    });
    api = activate(extensionContext(packageJson) as unknown as vscodeTypes.ExtensionContext);
    log = stub.logs[0];
    await api.daemon.start();
  });
  after(async () => {
    await deactivate();
    assert.ok(log.lines.some((l) => l.includes('Ember daemon stopped (exit code 0)')), 'shutdown + exit');
  });
  beforeEach(() => stub.reset());

  it('registers every command that package.json declares', () => {
    const declared = packageJson.contributes.commands.map((c: { command: string }) => c.command).sort();
    assert.deepEqual([...stub.commands.keys()].sort(), declared);
  });

  it("shows the model's load progress as a notification until it is ready", TIMEOUT, async () => {
    // A fresh daemon loads its model on the first generative request.
    const model = api.daemon.info!.models[0].name;
    const result = await api.daemon.request(Complete, { prompt: 'Hello', max_tokens: 2 });
    assert.equal(result.model, model);
    const loading = stub.progress.find((p) => p.title === `Ember: ${model}`);
    assert.ok(loading, `a progress notification for ${model}: ${JSON.stringify(stub.progress.map((p) => p.title))}`);
    assert.equal(loading.location, 15 /* Notification */);
    assert.ok(loading.reports.length > 0);
    assert.ok(loading.done, 'closed once the model is ready');
  });

  it('Translate replaces the selection with the translation, as one edit', TIMEOUT, async () => {
    const editor = stub.openEditor('Good morning, my friend.\nKeep this line.', 0, 24);
    const offered: string[] = [];
    stub.quickPick = (items) => {
      offered.push(...items.map((i: { label: string }) => i.label));
      return items.find((i: { label: string }) => i.label === 'French');
    };
    const text = (await stub.commands.get('ember.translate')!()) as string;
    assert.equal(offered[0], 'English', 'the configured default comes first');
    assert.ok(text && text.length > 0, 'a translation came back');
    assert.equal(editor.document.getText(), `${text}\nKeep this line.`);
    const translating = stub.progress.find((p) => p.title?.includes('translating into French'));
    assert.ok(translating?.cancellable);
    assert.ok(translating.reports.length > 0, 'streamed deltas reached the progress message');
    assert.ok(!stub.messages.some((m) => m.severity === 'error'), JSON.stringify(stub.messages));
  });

  it('Translate inserts below the current line when ember.translate.mode is insertBelow', TIMEOUT, async () => {
    stub.configure({ 'ember.translate.mode': 'insertBelow' });
    try {
      const editor = stub.openEditor('Thank you very much.\nNext line.', 3); // no selection: the line
      stub.quickPick = (items) => items.find((i: { label: string }) => i.label === 'Other…');
      stub.inputBox = () => 'Spanish';
      const text = (await stub.commands.get('ember.translate')!()) as string;
      assert.ok(text.length > 0);
      assert.equal(editor.document.getText(), `Thank you very much.\n${text}\nNext line.`);
      assert.ok(stub.progress.some((p) => p.title?.includes('into Spanish')));
    } finally {
      stub.configure({ 'ember.translate.mode': 'replace' });
    }
  });

  it('Summarize streams the summary into a read-only document beside the editor', TIMEOUT, async () => {
    const source =
      'The meeting covered the budget for next year. Costs for servers will rise by ten percent. ' +
      'The team agreed to move the nightly builds to a cheaper machine and to review the plan in March.';
    const editor = stub.openEditor(source, 0, source.length, 'notes.txt');
    const choices: string[][] = [];
    stub.messageChoice = (m) => {
      if (m.message.includes('summary ready')) {
        choices.push(m.items as string[]);
        return 'Insert';
      }
      return undefined;
    };
    let updates = 0;
    const text = (await stub.commands.get('ember.summarize')!()) as string;
    const view = stub.shownDocuments.at(-1)!;
    assert.equal(view.uri.scheme, OUTPUT_SCHEME);
    assert.match(view.uri.path, /Summary of notes\.txt/);
    updates = view.version;
    assert.ok(text.trim().length > 0, 'a summary came back');
    assert.equal(view.getText(), text, 'the side view shows the summary');
    assert.ok(updates > 2, 'the view was updated as deltas streamed in');
    assert.deepEqual(choices, [['Insert', 'Replace Selection']]);
    assert.equal(editor.document.getText(), `${source}\n${text}`, 'Insert put it below the selection');
  });

  it('Classify shows the top label and every score', TIMEOUT, async () => {
    stub.openEditor('I love this editor, it is wonderful and fast!', 0, 45);
    const shown = next(stub.messageShown.event, (m) => m.severity === 'info');
    const result = (await stub.commands.get('ember.classify')!()) as { label: string; scores: { label: string; score: number }[] };
    assert.ok(['positive', 'negative', 'neutral'].includes(result.label));
    const sum = result.scores.reduce((a, s) => a + s.score, 0);
    assert.ok(Math.abs(sum - 1) < 1e-3, `scores sum to 1 (${sum})`);
    const message = await shown;
    assert.ok(message.message.startsWith(`Ember: ${result.label} (`), message.message);
    for (const label of ['positive', 'negative', 'neutral']) assert.match(message.message, new RegExp(`${label} \\d+\\.\\d%`));
  });

  it('Classify asks for labels when ember.classify.promptForLabels is on', TIMEOUT, async () => {
    stub.configure({ 'ember.classify.promptForLabels': true });
    try {
      stub.openEditor('def parse(tokens): return tokens[0]', 0, 36);
      stub.inputBox = () => 'code, prose';
      const result = (await stub.commands.get('ember.classify')!()) as { label: string; scores: { label: string }[] };
      assert.deepEqual(result.scores.map((s) => s.label).sort(), ['code', 'prose']);
    } finally {
      stub.configure({ 'ember.classify.promptForLabels': false });
    }
  });

  it('Token Count shows the count of the selection and the model in the status bar', TIMEOUT, async () => {
    const editor = stub.openEditor('Hello world, how are you today?', 0, 11);
    const expected = await api.daemon.request(Tokenize, { text: 'Hello world' });
    const count = (await stub.commands.get('ember.tokenCount')!()) as { count: number; model: string; scope: string };
    assert.deepEqual(count, { count: expected.count, model: expected.model, scope: 'selection' });
    const item = stub.statusItems.find((i) => i.id === 'ember.tokenCount')!;
    assert.ok(item.visible);
    assert.equal(item.text, `$(symbol-number) ${expected.count} tokens · ${expected.model}`);

    // Live: a new selection is counted after the debounce, without the command.
    const whole = await api.daemon.request(Tokenize, { text: editor.document.getText() });
    const updated = next(item.onDidShow, (i) => i.text.includes(`${whole.count} tokens`));
    editor.selection = new Selection(new Position(0, 0), new Position(0, 0));
    await updated;
    assert.match(item.tooltip ?? '', /in the document/);
  });

  it('Status shows the loaded models, memory and queue', TIMEOUT, async () => {
    const status = (await stub.commands.get('ember.status')!()) as { pid: number };
    assert.equal(status.pid, api.daemon.pid);
    const message = stub.messages.find((m) => m.message.includes('requests served'));
    assert.ok(message, JSON.stringify(stub.messages));
    assert.match(message.detail ?? '', /Models: /);
    assert.match(message.detail ?? '', /Memory: /);
  });

  it('the inline completion provider returns an item at the cursor', TIMEOUT, async () => {
    const document = new TextDocument(stub.openEditor('').document.uri, 'The capital of France is');
    const position = new Position(0, 24);
    const cts = new CancellationTokenSource();
    const items = (await api.inlineCompletion.provideInlineCompletionItems(
      document as unknown as vscodeTypes.TextDocument,
      position as unknown as vscodeTypes.Position,
      { triggerKind: InlineCompletionTriggerKind.Automatic, selectedCompletionInfo: undefined } as unknown as vscodeTypes.InlineCompletionContext,
      cts.token as unknown as vscodeTypes.CancellationToken,
    )) as unknown as InlineCompletionItem[];
    assert.equal(items.length, 1);
    assert.ok(items[0].insertText.length > 0);
    assert.deepEqual(items[0].range?.start, position);
  });

  it('the provider cancels the request ($/cancelRequest) and returns nothing for a cancelled token', TIMEOUT, async () => {
    stub.configure({ 'ember.complete.maxTokens': 200 });
    try {
      const document = new TextDocument(stub.openEditor('').document.uri, 'Once upon a time, in a land far away,');
      const cts = new CancellationTokenSource();
      const sent = logged(log, "Sending request 'complete");
      const result = api.inlineCompletion.provideInlineCompletionItems(
        document as unknown as vscodeTypes.TextDocument,
        new Position(0, 37) as unknown as vscodeTypes.Position,
        {} as vscodeTypes.InlineCompletionContext,
        cts.token as unknown as vscodeTypes.CancellationToken,
      );
      await sent;
      const cancelSent = logged(log, "Sending notification '$/cancelRequest'");
      cts.cancel();
      await cancelSent;
      assert.equal(await result, undefined);
    } finally {
      stub.configure({ 'ember.complete.maxTokens': 8 });
    }
  });

  it('the provider never returns a stale answer: a newer call supersedes an older one', TIMEOUT, async () => {
    const document = new TextDocument(stub.openEditor('').document.uri, 'def add(a, b):\n    return');
    const position = new Position(1, 10);
    const call = () =>
      api.inlineCompletion.provideInlineCompletionItems(
        document as unknown as vscodeTypes.TextDocument,
        position as unknown as vscodeTypes.Position,
        {} as vscodeTypes.InlineCompletionContext,
        new CancellationTokenSource().token as unknown as vscodeTypes.CancellationToken,
      );
    const sent = logged(log, "Sending request 'complete");
    const older = call(); // its token is never cancelled
    await sent;
    const newer = call();
    assert.equal(await older, undefined, 'the older answer is dropped');
    const items = (await newer) as unknown as InlineCompletionItem[];
    assert.equal(items.length, 1);
  });

  it('the provider drops the answer when the document changed meanwhile', TIMEOUT, async () => {
    const document = new TextDocument(stub.openEditor('').document.uri, 'Roses are red,');
    const sent = logged(log, "Sending request 'complete");
    const result = api.inlineCompletion.provideInlineCompletionItems(
      document as unknown as vscodeTypes.TextDocument,
      new Position(0, 14) as unknown as vscodeTypes.Position,
      {} as vscodeTypes.InlineCompletionContext,
      new CancellationTokenSource().token as unknown as vscodeTypes.CancellationToken,
    );
    await sent;
    document.setText('Roses are red, violets');
    assert.equal(await result, undefined);
  });
});
