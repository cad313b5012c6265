/** Ask about Selection's pure parts (askText.ts), in plain Node: offsets and the answer's text. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatAnswer, supportSpan, utf16Offset } from '../../src/askText';
import type { AskResult } from '../../src/wire';

function result(over: Partial<AskResult>): AskResult {
  return {
    answer: 'Paris', method: 'generative', supported: true, start: 0, end: 5, quote: 'Paris', windows: 1,
    windows_kept: 1, model: 'default', usage: { prompt_tokens: 1, completion_tokens: 1 },
    timings: { queue_ms: 0, load_ms: 0, run_ms: 1, total_ms: 1 }, ...over,
  };
}

describe('ask: offsets and the answer document', () => {
  it('code points become UTF-16 units: an emoji before the span counts two units', () => {
    const text = 'Hi 👋 café: The tower is in Paris.';
    const start = [...text].indexOf('T'); // code points, as the daemon counts
    const end = start + 'The tower'.length;
    assert.notEqual(start, text.indexOf('T'), 'the emoji shifts UTF-16 offsets');
    const span = supportSpan(text, result({ start, end, quote: 'The tower' }))!;
    assert.equal(text.slice(span.start, span.end), 'The tower');
    assert.equal(utf16Offset(text, 0), 0);
    assert.equal(utf16Offset(text, 10_000), text.length, 'clamped to the end');
  });

  it('an unsupported answer has no span and says so; a narrowed context is mentioned', () => {
    const unsupported = result({ supported: false, start: null, end: null, quote: null, windows: 9, windows_kept: 3 });
    assert.equal(supportSpan('whatever', unsupported), undefined);
    const text = formatAnswer(unsupported, 'SmolLM2');
    assert.ok(text.startsWith('Paris\n'), text);
    assert.match(text, /Not supported/);
    assert.match(text, /read 3 of 9 parts/);
    const supported = formatAnswer(result({ method: 'extractive', score: 0.91, quote: 'Paris\nFrance' }), 'qa');
    assert.match(supported, /score 0\.91/);
    assert.match(supported, /> Paris\n> France/);
  });
});
