/**
 * Ask about selection: the pure parts (no `vscode`), so plain Node tests reach them.
 *
 * The daemon counts offsets in Unicode code points, as Python indexes strings (PROTOCOL.md, `ask`);
 * VS Code counts UTF-16 code units. Outside the Basic Multilingual Plane (emoji, some CJK) one
 * code point is two units, so the offsets are converted, never used as they are.
 */
import type { AskResult } from './wire';

/** UTF-16 units of `text` before code point `index` (clamped to the end of the text). */
export function utf16Offset(text: string, index: number): number {
  let units = 0;
  let seen = 0;
  for (const ch of text) {
    if (seen >= index) break;
    units += ch.length;
    seen += 1;
  }
  return units;
}

/** The supporting span of `result` in UTF-16 units of `context`, or undefined without support. */
export function supportSpan(context: string, result: AskResult): { start: number; end: number } | undefined {
  if (!result.supported || result.start === null || result.end === null) return undefined;
  return { start: utf16Offset(context, result.start), end: utf16Offset(context, result.end) };
}

/** The answer document's text: the answer, then the supporting passage or why there is none. */
export function formatAnswer(result: AskResult, label: string): string {
  const lines = [result.answer || '(no answer)', ''];
  if (result.supported && result.quote !== null) {
    const how = result.method === 'extractive' ? `a span of the text, score ${(result.score ?? 0).toFixed(2)}` : 'quoted from the text';
    lines.push(`Supporting passage (${how}; highlighted in the editor):`);
    lines.push(...result.quote.split('\n').map((l) => `> ${l}`));
  } else {
    lines.push('Not supported: the passage the model quoted is not in the text, so nothing is highlighted.');
  }
  if (result.windows_kept < result.windows) {
    lines.push('', `(The text was too long for the model: it read ${result.windows_kept} of ${result.windows} parts, those most relevant to the question.)`);
  }
  lines.push('', `${result.method} · ${label}`);
  return lines.join('\n');
}
