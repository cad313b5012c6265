/** The entry point of the second window that the shared-daemon tests open (second-window.suite.ts). */
import { runSuites } from './index';

export function run(): Promise<void> {
  return runSuites('second', ['second-window.suite.js']);
}
