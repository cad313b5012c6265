/** The inline completion's prefix window: it stays put while the user types. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WINDOW_STEP, prefixStart } from '../../src/completionWindow';

const text = Array.from({ length: 600 }, (_, i) => `line ${String(i).padStart(3, '0')} of the file\n`).join('');
function lineStartAtOrAfter(cursor: number) {
  return (at: number) => {
    if (at === 0 || text[at - 1] === '\n') return at;
    const next = text.indexOf('\n', at);
    return next < 0 ? at : Math.min(cursor, next + 1);
  };
}

describe('prefixStart', () => {
  it('sends the whole text while it fits', () => {
    assert.equal(prefixStart(2000, 3000, lineStartAtOrAfter(2000)), 0);
  });

  it('starts on a line start within maxChars, and stays put while the user types', () => {
    const starts = new Set<number>();
    for (let cursor = 8000; cursor < 8000 + 200; cursor++) {
      const start = prefixStart(cursor, 3000, lineStartAtOrAfter(cursor));
      assert.ok(cursor - start <= 3000, `window of ${cursor - start}`);
      assert.ok(cursor - start > 3000 - WINDOW_STEP - 30, `window of ${cursor - start}`);
      assert.ok(start === 0 || text[start - 1] === '\n', 'a line start');
      starts.add(start);
    }
    assert.ok(starts.size <= 2, `${starts.size} different starts over 200 keystrokes`);
  });

  it('never starts after the cursor', () => {
    assert.equal(prefixStart(5000, 0, () => 9999), 5000);
  });
});
