/** Where an inserted result goes (insertion.ts), in plain Node. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { textBelow } from '../../src/insertion';

/** The document after inserting `text` below line `at` of `lines`, as insertBelowTarget does. */
function insertBelow(language: string, lines: string[], at: number, text: string): string {
  const inserted = textBelow(text, { language, lastLine: lines[at], nextLine: lines[at + 1], eol: '\n' });
  const head = lines.slice(0, at + 1).join('\n');
  const rest = lines.slice(at + 1);
  return head + inserted + (rest.length ? `\n${rest.join('\n')}` : '');
}

describe('inserting a result below its source', () => {
  it('Markdown: a paragraph of its own, with a blank line before it and after it when text follows', () => {
    assert.equal(insertBelow('markdown', ['# Notes', 'A paragraph.', 'More of it.'], 2, 'The summary.'), '# Notes\nA paragraph.\nMore of it.\n\nThe summary.');
    assert.equal(insertBelow('markdown', ['A paragraph.', 'Next line.'], 0, 'The summary.'), 'A paragraph.\n\nThe summary.\n\nNext line.');
    assert.equal(insertBelow('markdown', ['A paragraph.', '', 'Next.'], 0, 'The summary.\n'), 'A paragraph.\n\nThe summary.\n\nNext.');
  });

  it('Markdown: below a blank line, no second blank line', () => {
    assert.equal(insertBelow('markdown', ['A paragraph.', ''], 1, 'The summary.'), 'A paragraph.\n\nThe summary.');
  });

  it('other languages: on the next line, as before', () => {
    assert.equal(insertBelow('plaintext', ['Some text.', 'Keep this line.'], 0, 'The summary.'), 'Some text.\nThe summary.\nKeep this line.');
    assert.equal(insertBelow('python', ['# a comment'], 0, 'x = 1'), '# a comment\nx = 1');
  });

  it('CRLF documents get CRLF line ends', () => {
    assert.equal(textBelow('Summary.', { language: 'markdown', lastLine: 'Text.', nextLine: 'After.', eol: '\r\n' }), '\r\n\r\nSummary.\r\n');
  });
});
