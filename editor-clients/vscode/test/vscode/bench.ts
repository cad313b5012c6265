/**
 * Time from opening a file to its first inline suggestion, in the real VS Code (code-server), with
 * the real daemon and its offline model. Run by scripts/bench-first-suggestion.sh (not by the
 * test suite); it prints a Markdown table.
 *
 * Each round opens a new Python file (with inline completion on for Python), types a few
 * characters with real keystrokes right away (as a user who starts typing at once) and waits for
 * the ghost text in the page. Workspace context is off, so every round sends the same prompt.
 * Scenarios:
 * - cold: no daemon, `ember.complete.warmOnOpen` off: the first completion starts everything;
 * - warm-on-open, typing at once: no daemon; opening the file starts the daemon and the load;
 * - warm-on-open, after a pause: as above, but the user starts typing once the warm-up is done
 *   (the time from the keystrokes to the suggestion is what they feel);
 * - warm: the daemon runs and the model is loaded.
 * The ghost text is polled through the browser driver (about 50-100 ms resolution).
 */
import * as vscode from 'vscode';
import { driver, ember, openFile, setSetting, setWindow, typeAtEnd, waitFor } from './driver';

interface Round {
  scenario: string;
  openToSuggestionMs: number;
  keysToSuggestionMs: number;
  /** Open to the end of the warm-up (warm-on-open after a pause only). */
  warmMs?: number;
}

const ROUNDS = Number(process.env.BENCH_ROUNDS_FOR_VSCODE || 3);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export async function run(): Promise<void> {
  setWindow('main');
  const api = await ember();
  await setSetting('complete.enabled', true, 'python');
  await setSetting('complete.maxTokens', 16);
  // No workspace context: the other rounds' files would change the prompt from round to round.
  await setSetting('completion.context', false);
  await setSetting('trace', 'messages');
  const rounds: Round[] = [];
  let n = 0;

  /**
   * One round. The same short file for the scenarios that start a fresh daemon (no cached prefix);
   * another one for the warm scenario, whose daemon has just completed the first.
   */
  async function once(scenario: string, options: { stop: boolean; warmOnOpen: boolean; pause: boolean }): Promise<void> {
    n += 1;
    // Close first: a shown Python file would start the warm-up as soon as the setting changes.
    await vscode.commands.executeCommand('workbench.action.files.saveAll');
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    if (options.stop) await api.daemon.stop();
    await setSetting('complete.warmOnOpen', options.warmOnOpen);
    const [before, typing] = options.stop ? ['# greet someone\ndef greet(name):\n', '    ret'] : ['def add(a, b):\n', '    return'];
    const opened = Date.now();
    const editor = await openFile(`bench_${n}.py`, before);
    let warmMs: number | undefined;
    if (options.pause) {
      await waitFor('the warm-up', () => api.daemon.state === 'running', 600_000);
      await api.warmer.check();
      warmMs = Date.now() - opened;
    }
    await typeAtEnd(editor, typing);
    const typed = Date.now();
    const ghost = await waitFor('ghost text', () => driver<string | null>('ghostText'), 120_000).catch(() => null);
    const shown = Date.now();
    if (!ghost) {
      console.log(`bench: ${scenario} round: no suggestion within 120 s (not counted)`);
      return;
    }
    rounds.push({ scenario, openToSuggestionMs: shown - opened, keysToSuggestionMs: shown - typed, warmMs });
    console.log(`bench: ${scenario} round: open->suggestion ${shown - opened} ms, keys->suggestion ${shown - typed} ms${warmMs !== undefined ? `, warm-up ${warmMs} ms` : ''}`);
  }

  try {
    for (let i = 0; i < ROUNDS; i++) {
      await once('cold (warmOnOpen off)', { stop: true, warmOnOpen: false, pause: false });
      await once('warm-on-open, typing at once', { stop: true, warmOnOpen: true, pause: false });
      await once('warm-on-open, typing after the warm-up', { stop: true, warmOnOpen: true, pause: true });
      await once('warm (daemon running, model loaded)', { stop: false, warmOnOpen: true, pause: false });
    }
  } finally {
    await setSetting('complete.warmOnOpen', undefined);
    await setSetting('complete.maxTokens', undefined);
    await setSetting('complete.enabled', undefined, 'python');
    await setSetting('completion.context', undefined);
    await setSetting('trace', undefined);
  }

  const scenarios = [...new Set(rounds.map((r) => r.scenario))];
  const lines = [
    `| scenario (${ROUNDS} rounds, median) | open -> first suggestion | last keystroke -> first suggestion | open -> warm-up done |`,
    '|---|---|---|---|',
  ];
  for (const s of scenarios) {
    const rs = rounds.filter((r) => r.scenario === s);
    const warm = rs.filter((r) => r.warmMs !== undefined).map((r) => r.warmMs!);
    lines.push(
      `| ${s} | ${median(rs.map((r) => r.openToSuggestionMs))} ms | ${median(rs.map((r) => r.keysToSuggestionMs))} ms | ${warm.length ? `${median(warm)} ms` : '-'} |`,
    );
  }
  console.log(`bench: results\n${lines.join('\n')}`);
}
