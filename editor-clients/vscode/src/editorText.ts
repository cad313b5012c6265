/** The text a command works on, and writing a result back into the document. */
import * as vscode from 'vscode';
import { textBelow } from './insertion';

/** The text of the selection, or of the cursor's line when nothing is selected. */
export interface TextTarget {
  document: vscode.TextDocument;
  range: vscode.Range;
  text: string;
}

export function targetOf(editor: vscode.TextEditor): TextTarget {
  const { document, selection } = editor;
  const range = selection.isEmpty ? document.lineAt(selection.active.line).range : new vscode.Range(selection.start, selection.end);
  return { document, range, text: document.getText(range) };
}

/**
 * Replaces the target's text with `text` as one edit (one undo step). Refuses when the text
 * there changed while the daemon was working, rather than overwrite the user's edits.
 */
export async function replaceTarget(target: TextTarget, text: string): Promise<boolean> {
  if (target.document.getText(target.range) !== target.text) {
    void vscode.window.showWarningMessage('Ember: the text changed while Ember was working; nothing was replaced.');
    return false;
  }
  const edit = new vscode.WorkspaceEdit();
  edit.replace(target.document.uri, target.range, text);
  return vscode.workspace.applyEdit(edit);
}

/**
 * Inserts `text` as new lines below the target's last line, as one edit; in Markdown (and kin) as a
 * paragraph of its own (insertion.ts).
 */
export async function insertBelowTarget(target: TextTarget, text: string): Promise<boolean> {
  const { document, range } = target;
  // A selection that ends at column 0 of a line does not include that line.
  const lastLine = range.end.character === 0 && range.end.line > range.start.line ? range.end.line - 1 : range.end.line;
  const end = document.lineAt(lastLine).range.end;
  const edit = new vscode.WorkspaceEdit();
  const nextLine = lastLine + 1 < document.lineCount ? document.lineAt(lastLine + 1).text : undefined;
  const inserted = textBelow(text, { language: document.languageId, lastLine: document.lineAt(lastLine).text, nextLine, eol: eol(document) });
  edit.insert(document.uri, end, inserted);
  return vscode.workspace.applyEdit(edit);
}

function eol(document: vscode.TextDocument): string {
  return document.eol === vscode.EndOfLine.CRLF ? '\r\n' : '\n';
}
