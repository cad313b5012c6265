/** Shared by the tests: where the daemons are, and a logger that can be awaited. */
import * as path from 'node:path';
import { Emitter, Event } from 'vscode-jsonrpc/node';
import type { Logger } from '../src/daemon';

/** The extension folder (the tests run from out/). */
export const EXTENSION_ROOT = path.resolve(__dirname, '..');

/**
 * The real `ember` executable: $EMBER_CMD, or the repository's venv. A path is made absolute
 * (relative to the extension folder); a bare name is looked up on PATH.
 */
export function emberCommand(): string {
  const configured = process.env.EMBER_CMD || '../../.venv/bin/ember';
  return configured.includes('/') ? path.resolve(EXTENSION_ROOT, configured) : configured;
}

/** The fake daemon (test/fake-daemon.ts, built next to the tests) as command and arguments. */
export function fakeDaemon(...switches: string[]): { command: string; args: string[] } {
  return { command: process.execPath, args: [path.join(__dirname, 'fake-daemon.js'), ...switches] };
}

/** A Logger that keeps its lines and tells when one is added. */
export class MemoryLogger implements Logger {
  readonly lines: string[] = [];
  private readonly added = new Emitter<string>();
  readonly onLine: Event<string> = this.added.event;

  private add(level: string, message: string): void {
    const line = `[${level}] ${message}`;
    this.lines.push(line);
    if (process.env.EMBER_TEST_LOG) process.stderr.write(`${line}\n`);
    this.added.fire(line);
  }
  info(m: string): void {
    this.add('info', m);
  }
  warn(m: string): void {
    this.add('warn', m);
  }
  error(m: string): void {
    this.add('error', m);
  }
  debug(m: string): void {
    this.add('debug', m);
  }

  /** Resolves with the first line (already logged, or still to come) that contains `text`. */
  waitFor(text: string): Promise<string> {
    const seen = this.lines.find((l) => l.includes(text));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const d = this.onLine((line) => {
        if (line.includes(text)) {
          d.dispose();
          resolve(line);
        }
      });
    });
  }
}

/** Any event: vscode-jsonrpc's, or the stub vscode module's. */
type AnyEvent<T> = (listener: (e: T) => unknown) => { dispose(): unknown };

/** Resolves with the next event that satisfies `predicate`. */
export function next<T>(event: AnyEvent<T>, predicate: (e: T) => boolean = () => true): Promise<T> {
  return new Promise((resolve) => {
    const d = event((e) => {
      if (predicate(e)) {
        d.dispose();
        resolve(e);
      }
    });
  });
}
