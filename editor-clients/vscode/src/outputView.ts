/**
 * Read-only virtual documents (`ember:` scheme) that show streamed output beside the editor.
 *
 * A document is named by its title alone ("Summary of notes.md"): the tab shows that, with no
 * counter and no extension of ours added. Opening the same title again reuses the document (a new
 * summary of the same file replaces the old one in its tab).
 */
import * as vscode from 'vscode';

export const OUTPUT_SCHEME = 'ember';

export class OutputDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly contents = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  /** What each document holds a result of (for the follow-up commands), by URI. */
  private readonly results = new Map<string, unknown>();
  private readonly closeListener = vscode.workspace.onDidCloseTextDocument((document) => {
    this.contents.delete(document.uri.toString());
    this.results.delete(document.uri.toString());
  });
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.contents.get(uri.toString()) ?? '';
  }

  /** A new, empty output document named `title`, shown beside the active editor. */
  async open(title: string): Promise<OutputDocument> {
    const uri = outputUri(title);
    this.contents.set(uri.toString(), '');
    this.results.delete(uri.toString());
    this.changed.fire(uri); // a reused document empties at once
    const document = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(document, {
      viewColumn: vscode.ViewColumn.Beside,
      preserveFocus: true,
      preview: false,
    });
    return new OutputDocument(uri, (text) => {
      this.contents.set(uri.toString(), text);
      this.changed.fire(uri);
    });
  }

  /** Remembers what the document `uri` is the result of (its follow-up commands use it). */
  setResult<T>(uri: vscode.Uri, result: T): void {
    this.results.delete(uri.toString()); // the newest last
    this.results.set(uri.toString(), result);
  }

  /** The result shown in `uri`, or without one, the newest result still shown. */
  resultOf<T>(uri?: vscode.Uri): T | undefined {
    if (uri) return this.results.get(uri.toString()) as T | undefined;
    return [...this.results.values()].at(-1) as T | undefined;
  }

  dispose(): void {
    this.closeListener.dispose();
    this.results.clear();
    this.changed.dispose();
    this.contents.clear();
  }
}

/** The document for `title`: its path is the title itself (slashes made dashes), so the tab reads as it. */
export function outputUri(title: string): vscode.Uri {
  return vscode.Uri.from({ scheme: OUTPUT_SCHEME, path: `/${title.replace(/[\\/]/g, '-')}` });
}

export class OutputDocument {
  private text = '';
  constructor(
    readonly uri: vscode.Uri,
    private readonly update: (text: string) => void,
  ) {}

  append(delta: string): void {
    this.set(this.text + delta);
  }

  set(text: string): void {
    this.text = text;
    this.update(text);
  }

  get value(): string {
    return this.text;
  }

  /**
   * Resolves once the editor's copy of the document shows the text set last (VS Code asks the
   * provider for it after the change event), so a command that resolves after this has its
   * result on screen. Gives up after `timeoutMs` (the document may have been closed).
   */
  shown(timeoutMs = 5_000): Promise<void> {
    const uri = this.uri.toString();
    const showing = () => vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri)?.getText() === this.text;
    if (showing()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        listener.dispose();
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      const listener = vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.document.uri.toString() === uri && showing()) done();
      });
    });
  }
}
