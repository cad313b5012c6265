/**
 * Read-only virtual documents (`ember:` scheme) that show streamed output beside the editor.
 */
import * as vscode from 'vscode';

export const OUTPUT_SCHEME = 'ember';

export class OutputDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly contents = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  private count = 0;
  private readonly closeListener = vscode.workspace.onDidCloseTextDocument((document) => {
    this.contents.delete(document.uri.toString());
  });
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.contents.get(uri.toString()) ?? '';
  }

  /** A new, empty output document named `title`, shown beside the active editor. */
  async open(title: string): Promise<OutputDocument> {
    this.count += 1;
    const uri = vscode.Uri.from({ scheme: OUTPUT_SCHEME, path: `/${this.count} ${title.replace(/[\\/]/g, '-')}.md` });
    this.contents.set(uri.toString(), '');
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

  dispose(): void {
    this.closeListener.dispose();
    this.changed.dispose();
    this.contents.clear();
  }
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
}
