/**
 * A stub of the `vscode` module: just what the extension uses, with in-memory documents and
 * editors, and hooks (`stub`) through which a test answers pickers and watches what is shown.
 * The test build aliases `vscode` to this file (scripts/build.mjs).
 */
/* eslint-disable @typescript-eslint/no-explicit-any */
import * as path from 'node:path';

// -- events and cancellation ---------------------------------------------------------------------

export class Disposable {
  constructor(private readonly callOnDispose: () => unknown) {}
  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => items.forEach((i) => i.dispose()));
  }
  dispose(): void {
    this.callOnDispose();
  }
}

export type Event<T> = (listener: (e: T) => unknown, thisArgs?: unknown, disposables?: Disposable[]) => Disposable;

export class EventEmitter<T> {
  private listeners = new Set<(e: T) => unknown>();
  readonly event: Event<T> = (listener, thisArgs, disposables) => {
    const bound = (e: T) => listener.call(thisArgs, e);
    this.listeners.add(bound);
    const d = new Disposable(() => this.listeners.delete(bound));
    disposables?.push(d);
    return d;
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) l(e);
  }
  dispose(): void {
    this.listeners.clear();
  }
}

export interface CancellationToken {
  isCancellationRequested: boolean;
  onCancellationRequested: Event<void>;
}

export class CancellationTokenSource {
  private readonly emitter = new EventEmitter<void>();
  readonly token: CancellationToken;
  constructor() {
    const emitter = this.emitter;
    this.token = { isCancellationRequested: false, onCancellationRequested: emitter.event };
  }
  cancel(): void {
    if (this.token.isCancellationRequested) return;
    this.token.isCancellationRequested = true;
    this.emitter.fire();
  }
  dispose(): void {
    this.emitter.dispose();
  }
}

// -- positions and text --------------------------------------------------------------------------

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
  isBefore(other: Position): boolean {
    return this.line < other.line || (this.line === other.line && this.character < other.character);
  }
  isEqual(other: Position): boolean {
    return this.line === other.line && this.character === other.character;
  }
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(start: Position, end: Position) {
    [this.start, this.end] = end.isBefore(start) ? [end, start] : [start, end];
  }
  get isEmpty(): boolean {
    return this.start.isEqual(this.end);
  }
}

export class Selection extends Range {
  constructor(
    readonly anchor: Position,
    readonly active: Position,
  ) {
    super(anchor, active);
  }
}

export enum EndOfLine {
  LF = 1,
  CRLF = 2,
}
export enum ViewColumn {
  Active = -1,
  Beside = -2,
  One = 1,
}
export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}
export enum ProgressLocation {
  SourceControl = 1,
  Window = 10,
  Notification = 15,
}
export enum InlineCompletionTriggerKind {
  Invoke = 0,
  Automatic = 1,
}

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly path: string,
  ) {}
  static from(parts: { scheme: string; path?: string }): Uri {
    return new Uri(parts.scheme, parts.path ?? '');
  }
  static file(fsPath: string): Uri {
    return new Uri('file', fsPath);
  }
  get fsPath(): string {
    return this.path;
  }
  toString(): string {
    return `${this.scheme}:${encodeURI(this.path)}`;
  }
}

export class InlineCompletionItem {
  constructor(
    readonly insertText: string,
    readonly range?: Range,
  ) {}
}

type Edit = { uri: Uri; range: Range; text: string };

export class WorkspaceEdit {
  readonly edits: Edit[] = [];
  replace(uri: Uri, range: Range, text: string): void {
    this.edits.push({ uri, range, text });
  }
  insert(uri: Uri, position: Position, text: string): void {
    this.edits.push({ uri, range: new Range(position, position), text });
  }
}

export class TextDocument {
  version = 1;
  readonly eol = EndOfLine.LF;
  isClosed = false;
  constructor(
    readonly uri: Uri,
    private text: string,
    readonly languageId = 'plaintext',
  ) {}
  get lineCount(): number {
    return this.lines().length;
  }
  private lines(): string[] {
    return this.text.split('\n');
  }
  getText(range?: Range): string {
    if (!range) return this.text;
    return this.text.slice(this.offsetAt(range.start), this.offsetAt(range.end));
  }
  offsetAt(position: Position): number {
    const lines = this.lines();
    const line = Math.min(Math.max(position.line, 0), lines.length - 1);
    let offset = 0;
    for (let i = 0; i < line; i++) offset += lines[i].length + 1;
    return offset + Math.min(Math.max(position.character, 0), lines[line].length);
  }
  positionAt(offset: number): Position {
    const clamped = Math.min(Math.max(offset, 0), this.text.length);
    const before = this.text.slice(0, clamped).split('\n');
    return new Position(before.length - 1, before[before.length - 1].length);
  }
  lineAt(line: number): { lineNumber: number; text: string; range: Range } {
    const text = this.lines()[line];
    return { lineNumber: line, text, range: new Range(new Position(line, 0), new Position(line, text.length)) };
  }
  /** Replaces the whole text (a test typing, or a content provider's update). */
  setText(text: string): void {
    this.text = text;
    this.version += 1;
  }
  apply(range: Range, text: string): void {
    const start = this.offsetAt(range.start);
    const end = this.offsetAt(range.end);
    this.setText(this.text.slice(0, start) + text + this.text.slice(end));
  }
}

export class TextEditor {
  selections: Selection[];
  constructor(
    readonly document: TextDocument,
    selection: Selection,
  ) {
    this.selections = [selection];
  }
  get selection(): Selection {
    return this.selections[0];
  }
  set selection(selection: Selection) {
    this.selections = [selection];
    onDidChangeTextEditorSelectionEmitter.fire({ textEditor: this, selections: this.selections });
  }
}

// -- the test's controls -------------------------------------------------------------------------

export interface ShownMessage {
  severity: 'info' | 'warning' | 'error';
  message: string;
  items: unknown[];
  detail?: string;
}

export interface ProgressRecord {
  title?: string;
  location: ProgressLocation;
  cancellable: boolean;
  reports: { message?: string; increment?: number }[];
  cancel(): void;
  done: boolean;
  /** Test only: called with each report. */
  onReport?: (value: { message?: string; increment?: number }) => void;
}

export class StatusBarItem {
  text = '';
  tooltip: string | undefined;
  name: string | undefined;
  command: string | undefined;
  visible = false;
  private readonly changed = new EventEmitter<StatusBarItem>();
  /** Test only: fires after each show(). */
  readonly onDidShow = this.changed.event;
  constructor(readonly id: string) {}
  show(): void {
    this.visible = true;
    this.changed.fire(this);
  }
  hide(): void {
    this.visible = false;
  }
  dispose(): void {
    this.visible = false;
  }
}

export class LogChannel {
  readonly lines: string[] = [];
  shown = false;
  private readonly added = new EventEmitter<string>();
  /** Test only: fires for each line written. */
  readonly onLine = this.added.event;
  constructor(readonly name: string) {}
  private add(level: string, message: string): void {
    const line = `[${level}] ${message}`;
    this.lines.push(line);
    if (process.env.EMBER_TEST_LOG) process.stderr.write(`[${this.name}] ${line}\n`);
    this.added.fire(line);
  }
  trace(m: string): void {
    this.add('trace', m);
  }
  debug(m: string): void {
    this.add('debug', m);
  }
  info(m: string): void {
    this.add('info', m);
  }
  warn(m: string): void {
    this.add('warn', m);
  }
  error(m: string | Error): void {
    this.add('error', String(m));
  }
  appendLine(m: string): void {
    this.add('info', m);
  }
  show(): void {
    this.shown = true;
  }
  dispose(): void {}
}

type Answer<A extends unknown[], R> = (...args: A) => R | Promise<R>;

/** What the test sets and reads. */
export const stub = {
  messages: [] as ShownMessage[],
  progress: [] as ProgressRecord[],
  statusItems: [] as StatusBarItem[],
  logs: [] as LogChannel[],
  commands: new Map<string, (...args: any[]) => unknown>(),
  contentProviders: new Map<string, any>(),
  inlineProviders: [] as any[],
  shownDocuments: [] as TextDocument[],
  settings: new Map<string, unknown>(),
  defaults: new Map<string, unknown>(),
  /** Answer for showQuickPick; default: the first item. */
  quickPick: ((items: any[]) => items[0]) as Answer<[any[], any], any>,
  /** Answer for showInputBox; default: the prefilled value. */
  inputBox: ((options: any) => options?.value) as Answer<[any], string | undefined>,
  /** Answer for the buttons of a message; default: none pressed. */
  messageChoice: ((_m: ShownMessage) => undefined) as Answer<[ShownMessage], string | undefined>,
  /** Called when a progress notification starts (a test may cancel it). */
  onProgress: ((_p: ProgressRecord) => undefined) as (p: ProgressRecord) => void,
  messageShown: new EventEmitter<ShownMessage>(),

  /** Declared defaults from package.json's contributes.configuration. */
  loadDefaults(packageJson: { contributes: { configuration: { properties: Record<string, { default?: unknown }> } } }): void {
    for (const [key, schema] of Object.entries(packageJson.contributes.configuration.properties)) {
      this.defaults.set(key, schema.default);
    }
  },
  /** Changes settings (full keys, `ember.x`) and fires onDidChangeConfiguration. */
  configure(values: Record<string, unknown>): void {
    for (const [k, v] of Object.entries(values)) this.settings.set(k, v);
    const keys = Object.keys(values);
    onDidChangeConfigurationEmitter.fire({
      affectsConfiguration: (section: string) => keys.some((k) => k === section || k.startsWith(`${section}.`)),
    });
  },
  /** Opens `text` in a new active editor with the selection [from, to] (offsets). */
  openEditor(text: string, from = 0, to = from, name = `file${documents.length + 1}.txt`): TextEditor {
    if (documents.some((d) => d.uri.path === path.join('/workspace', name))) throw new Error(`stub: ${name} is open`);
    const document = new TextDocument(Uri.file(path.join('/workspace', name)), text);
    documents.push(document);
    const editor = new TextEditor(document, new Selection(document.positionAt(from), document.positionAt(to)));
    window.activeTextEditor = editor;
    onDidChangeActiveTextEditorEmitter.fire(editor);
    return editor;
  },
  /** Types `text` into the editor's document at `offset` (default: the end). */
  type(editor: TextEditor, text: string, offset = editor.document.getText().length): void {
    const at = editor.document.positionAt(offset);
    editor.document.apply(new Range(at, at), text);
    onDidChangeTextDocumentEmitter.fire({ document: editor.document, contentChanges: [] });
  },
  reset(): void {
    this.messages.length = 0;
    this.progress.length = 0;
    this.quickPick = (items) => items[0];
    this.inputBox = (options) => options?.value;
    this.messageChoice = () => undefined;
    this.onProgress = () => undefined;
  },
};

function record(severity: ShownMessage['severity'], message: string, rest: unknown[]): Promise<string | undefined> {
  let detail: string | undefined;
  if (rest.length > 0 && typeof rest[0] === 'object' && rest[0] !== null) {
    detail = (rest[0] as { detail?: string }).detail;
    rest = rest.slice(1);
  }
  const shown: ShownMessage = { severity, message, items: rest, detail };
  stub.messages.push(shown);
  stub.messageShown.fire(shown);
  return Promise.resolve(stub.messageChoice(shown));
}

// -- window, workspace, commands, languages ------------------------------------------------------

const onDidChangeActiveTextEditorEmitter = new EventEmitter<TextEditor | undefined>();
const onDidChangeTextEditorSelectionEmitter = new EventEmitter<{ textEditor: TextEditor; selections: Selection[] }>();
const onDidChangeConfigurationEmitter = new EventEmitter<{ affectsConfiguration(section: string): boolean }>();
const onDidChangeTextDocumentEmitter = new EventEmitter<{ document: TextDocument; contentChanges: unknown[] }>();
const onDidCloseTextDocumentEmitter = new EventEmitter<TextDocument>();
const documents: TextDocument[] = [];

export const window = {
  activeTextEditor: undefined as TextEditor | undefined,
  onDidChangeActiveTextEditor: onDidChangeActiveTextEditorEmitter.event,
  onDidChangeTextEditorSelection: onDidChangeTextEditorSelectionEmitter.event,
  showInformationMessage: (message: string, ...rest: unknown[]) => record('info', message, rest),
  showWarningMessage: (message: string, ...rest: unknown[]) => record('warning', message, rest),
  showErrorMessage: (message: string, ...rest: unknown[]) => record('error', message, rest),
  showQuickPick: async (items: any[] | Promise<any[]>, options?: unknown) => stub.quickPick(await items, options),
  showInputBox: async (options?: { value?: string; validateInput?: (v: string) => unknown }) => {
    const value = await stub.inputBox(options);
    if (value !== undefined && options?.validateInput && (await options.validateInput(value))) return undefined;
    return value;
  },
  withProgress: async <R>(
    options: { location: ProgressLocation; title?: string; cancellable?: boolean },
    task: (progress: { report(v: { message?: string; increment?: number }): void }, token: CancellationToken) => Thenable<R>,
  ): Promise<R> => {
    const cts = new CancellationTokenSource();
    const p: ProgressRecord = {
      title: options.title,
      location: options.location,
      cancellable: options.cancellable ?? false,
      reports: [],
      cancel: () => cts.cancel(),
      done: false,
    };
    stub.progress.push(p);
    stub.onProgress(p);
    try {
      return await task(
        {
          report: (v) => {
            p.reports.push(v);
            p.onReport?.(v);
          },
        },
        cts.token,
      );
    } finally {
      p.done = true;
    }
  },
  createStatusBarItem: (id: string) => {
    const item = new StatusBarItem(id);
    stub.statusItems.push(item);
    return item;
  },
  createOutputChannel: (name: string) => {
    const channel = new LogChannel(name);
    stub.logs.push(channel);
    return channel;
  },
  showTextDocument: async (document: TextDocument) => {
    stub.shownDocuments.push(document);
    return new TextEditor(document, new Selection(new Position(0, 0), new Position(0, 0)));
  },
};

export const workspace = {
  workspaceFolders: undefined as { uri: Uri }[] | undefined,
  get textDocuments(): TextDocument[] {
    return documents;
  },
  onDidChangeConfiguration: onDidChangeConfigurationEmitter.event,
  onDidChangeTextDocument: onDidChangeTextDocumentEmitter.event,
  onDidCloseTextDocument: onDidCloseTextDocumentEmitter.event,
  getConfiguration: (section: string) => ({
    get: <T>(key: string, fallback?: T): T | undefined => {
      const full = `${section}.${key}`;
      if (stub.settings.has(full)) return stub.settings.get(full) as T;
      if (stub.defaults.has(full)) return stub.defaults.get(full) as T;
      return fallback;
    },
  }),
  registerTextDocumentContentProvider: (scheme: string, provider: any) => {
    stub.contentProviders.set(scheme, provider);
    return new Disposable(() => stub.contentProviders.delete(scheme));
  },
  openTextDocument: async (uri: Uri) => {
    const existing = documents.find((d) => d.uri.toString() === uri.toString());
    if (existing) return existing;
    const provider = stub.contentProviders.get(uri.scheme);
    if (!provider) throw new Error(`stub: no document ${uri.toString()}`);
    const document = new TextDocument(uri, await provider.provideTextDocumentContent(uri));
    provider.onDidChange?.(async (changed: Uri) => {
      if (changed.toString() === uri.toString()) {
        document.setText(await provider.provideTextDocumentContent(uri));
        onDidChangeTextDocumentEmitter.fire({ document, contentChanges: [] });
      }
    });
    documents.push(document);
    return document;
  },
  applyEdit: async (edit: WorkspaceEdit) => {
    for (const { uri, range, text } of edit.edits) {
      const document = documents.find((d) => d.uri.toString() === uri.toString());
      if (!document) return false;
      document.apply(range, text);
      onDidChangeTextDocumentEmitter.fire({ document, contentChanges: [] });
    }
    return true;
  },
};

export const commands = {
  registerCommand: (id: string, handler: (...args: any[]) => unknown) => {
    stub.commands.set(id, handler);
    return new Disposable(() => stub.commands.delete(id));
  },
  executeCommand: async (id: string, ...args: unknown[]) => {
    const handler = stub.commands.get(id);
    if (!handler) throw new Error(`stub: command ${id} not registered`);
    return handler(...args);
  },
};

export const languages = {
  registerInlineCompletionItemProvider: (selector: unknown, provider: any) => {
    stub.inlineProviders.push(provider);
    return new Disposable(() => stub.inlineProviders.splice(stub.inlineProviders.indexOf(provider), 1));
  },
};

/** An ExtensionContext with what activate() reads. */
export function extensionContext(packageJSON: unknown): { subscriptions: { dispose(): unknown }[]; extension: { packageJSON: unknown } } {
  return { subscriptions: [], extension: { packageJSON } };
}
