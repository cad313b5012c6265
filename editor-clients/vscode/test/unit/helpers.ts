/** Shared by the unit tests: the fake daemon, and a logger that can be awaited. */
import * as path from 'node:path';
import { Emitter, Event } from 'vscode-jsonrpc/node';
import type { Logger } from '../../src/daemon';

/** The fake daemon (test/unit/fake-daemon.ts, built next to the tests) as command and arguments. */
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

/** Any event with vscode-jsonrpc's shape. */
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
