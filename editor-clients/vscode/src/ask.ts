/**
 * Ember: Ask about Selection. The question comes from an input box; the answer streams into a
 * side document ("Answer about notes.md"), and the passage of the text that supports it is
 * highlighted in the editor with a decoration, until the next question or an edit of the document.
 */
import * as vscode from 'vscode';
import { supportSpan, formatAnswer } from './askText';
import { describeError } from './errors';
import { Ask, AskResult } from './protocol';
import type { Services } from './textCommands';
import { sourceName } from './textCommands';
import { showError, withCancellableProgress } from './ui';

/** What the command resolves with (tests and chained commands read it). */
export interface AskOutcome {
  result: AskResult;
  /** The highlighted span in the source document, when the answer is supported. */
  highlighted?: vscode.Range;
  /** The side document that shows the answer. */
  output: vscode.Uri;
}

let decoration: vscode.TextEditorDecorationType | undefined;
let highlight: { document: vscode.TextDocument; range: vscode.Range } | undefined;

function decorationType(): vscode.TextEditorDecorationType {
  decoration ??= vscode.window.createTextEditorDecorationType({
    backgroundColor: new vscode.ThemeColor('editor.findMatchHighlightBackground'),
    border: '1px solid',
    borderColor: new vscode.ThemeColor('editor.findMatchBorder'),
    overviewRulerColor: new vscode.ThemeColor('editorOverviewRuler.findMatchForeground'),
    overviewRulerLane: vscode.OverviewRulerLane.Center,
  });
  return decoration;
}

function paint(): void {
  if (!decoration) return;
  for (const editor of vscode.window.visibleTextEditors) {
    const on = highlight && editor.document === highlight.document ? [highlight.range] : [];
    editor.setDecorations(decoration, on);
  }
}

/** Drops the highlight (a new question, or the text was edited). */
export function clearAskHighlight(): void {
  highlight = undefined;
  paint();
}

/** Listeners that keep the highlight right: repainted in editors that open, dropped on an edit. */
export function askHighlightListeners(): vscode.Disposable[] {
  return [
    vscode.window.onDidChangeVisibleTextEditors(() => paint()),
    vscode.workspace.onDidChangeTextDocument((e) => {
      if (highlight && e.document === highlight.document && e.contentChanges.length > 0) clearAskHighlight();
    }),
    { dispose: () => { decoration?.dispose(); decoration = undefined; highlight = undefined; } },
  ];
}

/** The selection, or the whole document when nothing is selected. */
function askTarget(): { document: vscode.TextDocument; range: vscode.Range; text: string } | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showWarningMessage('Ember: open a file to ask about.');
    return undefined;
  }
  const { document, selection } = editor;
  const range = selection.isEmpty ? new vscode.Range(document.positionAt(0), document.positionAt(document.getText().length)) : new vscode.Range(selection.start, selection.end);
  const text = document.getText(range);
  if (text.trim() === '') {
    void vscode.window.showWarningMessage('Ember: nothing to ask about; the selection is empty.');
    return undefined;
  }
  return { document, range, text };
}

export async function ask(services: Services, question?: string): Promise<AskOutcome | undefined> {
  const target = askTarget();
  if (!target) return undefined;
  question ??= await vscode.window.showInputBox({
    title: `Ember: ask about ${target.range.isEqual(new vscode.Range(target.document.positionAt(0), target.document.positionAt(target.document.getText().length))) ? sourceName(target.document) : 'the selection'}`,
    prompt: 'Your question about the text',
    validateInput: (v) => (v.trim() === '' ? 'Enter a question' : undefined),
  });
  question = question?.trim();
  if (!question) return undefined;
  clearAskHighlight();
  const output = await services.outputs.open(`Answer about ${sourceName(target.document)}`);
  try {
    const result = await withCancellableProgress('Ember: answering…', (token) =>
      services.daemon.stream(
        Ask,
        { question: question!, context: target.text },
        (delta) => output.append(delta),
        token,
      ),
    );
    output.set(formatAnswer(result, services.daemon.labelOf(result.model)));
    await output.shown();
    let highlighted: vscode.Range | undefined;
    const span = supportSpan(target.text, result);
    if (span && target.document.getText(target.range) === target.text) {
      const base = target.document.offsetAt(target.range.start);
      highlighted = new vscode.Range(target.document.positionAt(base + span.start), target.document.positionAt(base + span.end));
      highlight = { document: target.document, range: highlighted };
      decorationType();
      paint();
      const editor = vscode.window.visibleTextEditors.find((e) => e.document === target.document);
      editor?.revealRange(highlighted, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
    }
    return { result, highlighted, output: output.uri };
  } catch (error) {
    output.append(`\n\n(${describeError(error)})`);
    void showError(error, services.log);
    return undefined;
  }
}
