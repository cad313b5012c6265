/**
 * Summarize, Translate and Classify: the commands that work on the selection (or current line).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Daemon } from './daemon';
import { TextTarget, insertBelowTarget, replaceTarget, targetOf } from './editorText';
import { describeError } from './errors';
import { OUTPUT_SCHEME, OutputDocument, OutputDocuments } from './outputView';
import { formatClassification, parseLabels, tail } from './format';
import { Classify, ClassifyResult, Summarize, Translate } from './protocol';
import { Settings, calibrateParam } from './settings';
import { showError, withCancellableProgress } from './ui';

/** What the command handlers need from the extension. */
export interface Services {
  daemon: Daemon;
  log: vscode.LogOutputChannel;
  settings(): Settings;
  outputs: OutputDocuments;
}

/** Languages offered first by Translate, after the configured default. */
export const COMMON_LANGUAGES = [
  'English', 'French', 'German', 'Spanish', 'Italian', 'Portuguese', 'Dutch', 'Polish', 'Russian',
  'Ukrainian', 'Chinese', 'Japanese', 'Korean', 'Arabic', 'Hindi', 'Turkish',
];
const OTHER_LANGUAGE = 'Other…';

function currentTarget(verb: string): TextTarget | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showWarningMessage(`Ember: open a file to ${verb}.`);
    return undefined;
  }
  const target = targetOf(editor);
  if (target.text.trim() === '') {
    void vscode.window.showWarningMessage(`Ember: nothing to ${verb}; select some text first.`);
    return undefined;
  }
  return target;
}

function warnIfCut(finishReason: string, setting: string): void {
  if (finishReason === 'length') {
    void vscode.window.showWarningMessage(`Ember: the output was cut at the token limit ("${setting}").`);
  }
}

/** A result shown in a side document, and the text it came from (for Insert, Replace, Copy). */
export interface ShownResult {
  target: TextTarget;
  text: string;
}

/** "notes.md" for a file, "Untitled-1" for a new one: what the side document is named after. */
export function sourceName(document: vscode.TextDocument): string {
  return path.basename(document.uri.path) || 'selection';
}

/**
 * Streams a summary into a read-only document beside the editor ("Summary of notes.md") and
 * resolves as soon as it is there: a keybinding or a macro that chains commands goes on at once.
 * Insert, Replace Selection and Copy stay available without blocking: on the notification (not
 * awaited), and as buttons on the summary's title bar (ember.insertResult and the others).
 */
export async function summarize(services: Services): Promise<string | undefined> {
  const target = currentTarget('summarize');
  if (!target) return undefined;
  const { form, length, maxTokens } = services.settings().summarize;
  let output: OutputDocument | undefined;
  try {
    output = await services.outputs.open(`Summary of ${sourceName(target.document)}`);
    const result = await withCancellableProgress('Ember: summarizing…', (token) =>
      services.daemon.stream(
        Summarize,
        { text: target.text, form, length, max_tokens: maxTokens },
        (delta) => output?.append(delta),
        token,
      ),
    );
    output.set(result.text); // the reply is authoritative; the deltas were a preview
    await output.shown();
    const shown: ShownResult = { target, text: result.text };
    services.outputs.setResult(output.uri, shown);
    warnIfCut(result.finish_reason, 'ember.summarize.maxTokens');
    const uri = output.uri;
    void vscode.window
      .showInformationMessage(`Ember: summary of ${sourceName(target.document)} ready (${services.daemon.labelOf(result.model)}).`, 'Insert', 'Replace Selection', 'Copy')
      .then((choice) => {
        const command = choice === 'Insert' ? 'ember.insertResult' : choice === 'Replace Selection' ? 'ember.replaceWithResult' : choice === 'Copy' ? 'ember.copyResult' : undefined;
        if (command) return vscode.commands.executeCommand(command, uri);
        return undefined;
      });
    return result.text;
  } catch (error) {
    output?.append(`\n\n(${describeError(error)})`);
    void showError(error, services.log);
    return undefined;
  }
}

/** The result the follow-up commands act on: the one in `uri` (the title bar passes it), or the active side document's, or the newest. */
function resultFor(services: Services, uri: unknown): ShownResult | undefined {
  const active = vscode.window.activeTextEditor?.document.uri;
  const at = uri instanceof vscode.Uri ? uri : active?.scheme === OUTPUT_SCHEME ? active : undefined;
  const result = services.outputs.resultOf<ShownResult>(at);
  if (!result) void vscode.window.showWarningMessage('Ember: no result to use; run Ember: Summarize first.');
  return result;
}

/** Insert: the result below the text it came from (Markdown-aware). */
export async function insertResult(services: Services, uri?: unknown): Promise<boolean> {
  const result = resultFor(services, uri);
  return result ? insertBelowTarget(result.target, result.text) : false;
}

/** Replace Selection: the text the result came from is replaced by it, if it was not edited since. */
export async function replaceWithResult(services: Services, uri?: unknown): Promise<boolean> {
  const result = resultFor(services, uri);
  return result ? replaceTarget(result.target, result.text) : false;
}

/** Copy: the result to the clipboard. */
export async function copyResult(services: Services, uri?: unknown): Promise<boolean> {
  const result = resultFor(services, uri);
  if (!result) return false;
  await vscode.env.clipboard.writeText(result.text);
  vscode.window.setStatusBarMessage('Ember: copied.', 3000);
  return true;
}

/** Asks for the target language: the configured one first, common ones, or any typed in. */
export async function pickLanguage(defaultLanguage: string): Promise<string | undefined> {
  const names = [defaultLanguage, ...COMMON_LANGUAGES.filter((l) => l.toLowerCase() !== defaultLanguage.toLowerCase())];
  const items: vscode.QuickPickItem[] = [
    ...names.map((label, i) => (i === 0 ? { label, description: 'default (ember.translate.targetLanguage)' } : { label })),
    { label: OTHER_LANGUAGE, description: 'type a language' },
  ];
  const picked = await vscode.window.showQuickPick(items, { title: 'Ember: translate into', placeHolder: defaultLanguage });
  if (!picked) return undefined;
  if (picked.label !== OTHER_LANGUAGE) return picked.label;
  const typed = await vscode.window.showInputBox({
    title: 'Ember: translate into',
    prompt: 'Target language (for example "Brazilian Portuguese")',
    validateInput: (value) => (value.trim() === '' ? 'Enter a language' : undefined),
  });
  return typed?.trim() || undefined;
}

/** Translates the target, streaming a preview into the notification; then one undoable edit. */
export async function translate(services: Services): Promise<string | undefined> {
  const target = currentTarget('translate');
  if (!target) return undefined;
  const { targetLanguage, mode, maxTokens } = services.settings().translate;
  const language = await pickLanguage(targetLanguage);
  if (!language) return undefined;
  try {
    const result = await withCancellableProgress(`Ember: translating into ${language}…`, (token, progress) => {
      let text = '';
      return services.daemon.stream(
        Translate,
        { text: target.text, target: language, max_tokens: maxTokens },
        (delta) => {
          text += delta;
          progress.report({ message: tail(text) });
        },
        token,
      );
    });
    warnIfCut(result.finish_reason, 'ember.translate.maxTokens');
    if (mode === 'insertBelow') await insertBelowTarget(target, result.text);
    else await replaceTarget(target, result.text);
    return result.text;
  } catch (error) {
    void showError(error, services.log);
    return undefined;
  }
}

async function askLabels(initial: string[]): Promise<string[] | undefined> {
  const value = await vscode.window.showInputBox({
    title: 'Ember: classify',
    prompt: 'Labels, separated by commas (at least two)',
    value: initial.join(', '),
    validateInput: (v) => (new Set(parseLabels(v)).size < 2 ? 'Enter at least two different labels' : undefined),
  });
  if (value === undefined) return undefined;
  const labels = [...new Set(parseLabels(value))];
  return labels.length >= 2 ? labels : undefined;
}

/** Classifies the target against the configured labels (or ones typed in). */
export async function classify(services: Services): Promise<ClassifyResult | undefined> {
  const target = currentTarget('classify');
  if (!target) return undefined;
  const configured = services.settings().classify;
  let labels: string[] | undefined = [...new Set(configured.labels)];
  if (configured.promptForLabels || labels.length < 2) labels = await askLabels(labels);
  if (!labels) return undefined;
  try {
    const result = await withCancellableProgress('Ember: classifying…', (token) =>
      services.daemon.request(Classify, { text: target.text, labels, calibrate: calibrateParam(configured.calibrate) }, token),
    );
    services.log.info(`classify: ${JSON.stringify(result.scores)} (${result.model})`);
    void vscode.window.showInformationMessage(`${formatClassification(result)} · ${services.daemon.labelOf(result.model)}`);
    return result;
  } catch (error) {
    void showError(error, services.log);
    return undefined;
  }
}
