/**
 * Workspace context for inline completion, as llama.vim's ring buffer: chunks of text the user met
 * (lines around the cursor of a file opened, around the last edit of a file saved or left) go to
 * the daemon in `context/add` notifications; the daemon keeps a bounded ring per client and puts it
 * before the prefix of inline completions.
 *
 * No `vscode` import: this is the part with decisions in it, so the unit tests run it in plain
 * Node. extension.ts feeds it the editor's events (contextEvents.ts). VS Code has no event for a
 * copy to the clipboard, so no "copy" chunks are sent.
 */
import * as path from 'node:path';
import type { ContextChunk } from './protocol';

export type ChunkKind = NonNullable<ContextChunk['kind']>;

export interface ContextOptions {
  /** Lines per chunk: a window around the cursor or the last edit. */
  lines: number;
  /** Characters per chunk at most. */
  maxChars: number;
  /** Gather chunks this long, then send them together. */
  debounceMs: number;
  /** Chunks kept while none can be sent; the oldest is dropped (the daemon takes 64 at most). */
  maxPending: number;
}

export const CONTEXT_DEFAULTS: ContextOptions = { lines: 64, maxChars: 4096, debounceMs: 200, maxPending: 16 };

/** The longest path or URI the daemon takes. */
const MAX_PATH = 4096;

/**
 * The `path` of a document for the daemon: relative to the workspace folder that holds it, else
 * its file path, else its URI. Undefined when longer than the daemon takes.
 */
export function documentPath(uri: { scheme: string; fsPath: string; toString(): string }, folders: string[]): string | undefined {
  let result = uri.toString();
  if (uri.scheme === 'file') {
    result = uri.fsPath;
    for (const folder of folders) {
      const rel = path.relative(folder, uri.fsPath);
      if (rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel)) {
        result = rel.split(path.sep).join('/');
        break;
      }
    }
  }
  return result.length > 0 && result.length <= MAX_PATH ? result : undefined;
}

/** `text` cut to `max` characters, at a line end where there is one. */
export function bound(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max);
  const end = cut.lastIndexOf('\n');
  return end > 0 ? cut.slice(0, end) : cut;
}

/**
 * The 0-based line range [first, last) of the window around `line`: `lines` lines, starting half
 * of them above it (at a file's top, its first lines).
 */
export function windowAround(line: number, lineCount: number, lines: number): [number, number] {
  const first = Math.max(0, Math.min(line - Math.floor(lines / 2), lineCount - lines));
  return [first, Math.min(lineCount, first + lines)];
}

interface Pending {
  chunk: ContextChunk;
  /** The document it comes from (its URI), to hold it back while that document is active. */
  doc?: string;
}

/**
 * Gathers chunks and sends them in batches. `send` returns false when nothing could be sent (no
 * daemon running); the chunks then wait. `active()` says whether sending is wanted at all, and
 * `current()` names the active document, whose own chunks wait until the user is elsewhere: the
 * completion already sees that file.
 */
export class ContextCollector {
  private pending: Pending[] = [];
  private recent: string[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly send: (chunks: ContextChunk[]) => boolean,
    private readonly active: () => boolean,
    private readonly current: () => string | undefined,
    private readonly options: () => ContextOptions = () => CONTEXT_DEFAULTS,
  ) {}

  /** Queue a chunk; false when it is blank or the same text of the same file was queued lately. */
  add(text: string, kind: ChunkKind, filePath?: string, doc?: string): boolean {
    if (!/\S/.test(text)) return false;
    const chunk: ContextChunk = { text: bound(text, this.options().maxChars), kind };
    if (filePath) chunk.path = filePath;
    const key = `${filePath ?? ''}\0${chunk.text}`;
    if (this.recent.includes(key)) return false;
    this.recent.push(key);
    if (this.recent.length > 64) this.recent.shift();
    this.pending.push({ chunk, doc });
    while (this.pending.length > this.options().maxPending) this.pending.shift();
    this.schedule();
    return true;
  }

  /** Send what may go now; returns the number of chunks sent. */
  flush(): number {
    this.cancelTimer();
    if (this.pending.length === 0 || !this.active()) return 0;
    const here = this.current();
    const held = (p: Pending) => p.doc !== undefined && p.doc === here && p.chunk.kind !== 'copy' && p.chunk.kind !== 'yank';
    const ready = this.pending.filter((p) => !held(p));
    if (ready.length === 0 || !this.send(ready.map((p) => p.chunk))) return 0;
    this.pending = this.pending.filter(held);
    return ready.length;
  }

  /** Flush soon (after the debounce): something was added, or the active document changed. */
  schedule(): void {
    this.cancelTimer();
    if (this.pending.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.options().debounceMs);
  }

  /** Chunks waiting (for tests and the log). */
  get waiting(): number {
    return this.pending.length;
  }

  dispose(): void {
    this.cancelTimer();
    this.pending = [];
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
