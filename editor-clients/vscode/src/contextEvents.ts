/**
 * Feeds the workspace context collector (workspaceContext.ts) and the feedback tracker
 * (feedback.ts) from VS Code's events:
 * - "open": the lines around the cursor of a text editor that becomes active (the top of a file
 *   freshly opened);
 * - "edit": the lines around the last edit of a document whose editor the user leaves;
 * - "save": the lines around the last edit (or the cursor) of a document saved.
 * Only documents on disk or untitled ones count (not output panes or Ember's own result
 * documents), and, when a folder is open, only files inside it (not the user's settings.json).
 * VS Code has no event for a copy to the clipboard, so no "copy" chunks.
 */
import * as vscode from 'vscode';
import type { FeedbackTracker } from './feedback';
import { pathOf } from './inlineCompletion';
import { ContextCollector, ContextOptions, windowAround } from './workspaceContext';

const SCHEMES = new Set(['file', 'untitled', 'vscode-notebook-cell']);

function counts(document: vscode.TextDocument): boolean {
  if (!SCHEMES.has(document.uri.scheme)) return false;
  if (document.uri.scheme !== 'file' || !vscode.workspace.workspaceFolders?.length) return true;
  return vscode.workspace.getWorkspaceFolder(document.uri) !== undefined;
}

/** The window of lines of `document` around `line`, as one string (bounded by the collector). */
function windowText(document: vscode.TextDocument, line: number, options: ContextOptions): string {
  const [first, last] = windowAround(line, document.lineCount, options.lines);
  const lines: string[] = [];
  let size = 0;
  for (let i = first; i < last && size <= 4 * options.maxChars; i++) {
    const text = document.lineAt(i).text;
    lines.push(text);
    size += text.length + 1;
  }
  return lines.join('\n');
}

export class ContextEvents implements vscode.Disposable {
  private readonly subscriptions: vscode.Disposable[] = [];
  /** Document URI -> the line of its last edit not yet sent. */
  private readonly edits = new Map<string, number>();
  private activeDoc: vscode.TextDocument | undefined;

  constructor(
    private readonly collector: ContextCollector,
    private readonly enabled: () => boolean,
    private readonly options: () => ContextOptions,
    private readonly feedback?: FeedbackTracker,
  ) {
    this.subscriptions.push(
      vscode.window.onDidChangeActiveTextEditor((editor) => this.onActive(editor)),
      vscode.workspace.onDidChangeTextDocument((e) => this.onChange(e)),
      vscode.workspace.onDidSaveTextDocument((document) => this.onSave(document)),
      vscode.window.onDidChangeTextEditorSelection((e) => {
        const d = e.textEditor.document;
        this.feedback?.didMove(d.uri.toString(), d.offsetAt(e.selections[0].active));
      }),
      vscode.workspace.onDidCloseTextDocument((document) => this.edits.delete(document.uri.toString())),
    );
    this.onActive(vscode.window.activeTextEditor);
  }

  private add(document: vscode.TextDocument, line: number, kind: 'open' | 'edit' | 'save'): void {
    if (!this.enabled() || !counts(document)) return;
    this.collector.add(windowText(document, line, this.options()), kind, pathOf(document), document.uri.toString());
  }

  private onActive(editor: vscode.TextEditor | undefined): void {
    const previous = this.activeDoc;
    this.activeDoc = editor?.document;
    if (previous && previous !== this.activeDoc) {
      const key = previous.uri.toString();
      const line = this.edits.get(key);
      this.edits.delete(key);
      if (line !== undefined && !previous.isClosed) this.add(previous, line, 'edit');
      this.feedback?.didMove(this.activeDoc?.uri.toString(), undefined);
    }
    if (editor) this.add(editor.document, editor.selection.active.line, 'open');
    // Chunks held while their document was active can go now.
    this.collector.schedule();
  }

  private onChange(e: vscode.TextDocumentChangeEvent): void {
    if (e.contentChanges.length === 0) return;
    const key = e.document.uri.toString();
    if (e.contentChanges.length === 1) {
      const c = e.contentChanges[0];
      this.feedback?.didChange(key, c.rangeOffset, c.rangeLength, c.text);
    } else {
      this.feedback?.didChange(key, -1, 0, '');
    }
    if (counts(e.document)) this.edits.set(key, e.contentChanges[0].range.start.line);
  }

  private onSave(document: vscode.TextDocument): void {
    const key = document.uri.toString();
    let line = this.edits.get(key);
    this.edits.delete(key);
    if (line === undefined) {
      const editor = vscode.window.visibleTextEditors.find((e) => e.document === document);
      line = editor?.selection.active.line ?? 0;
    }
    this.add(document, line, 'save');
  }

  dispose(): void {
    for (const d of this.subscriptions) d.dispose();
    this.subscriptions.length = 0;
  }
}
