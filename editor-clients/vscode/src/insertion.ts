/**
 * What a result inserted below the text it came from looks like. Pure: no `vscode` import, so the
 * unit tests run it in plain Node.
 *
 * In languages where paragraphs are separated by blank lines (Markdown and its kin), a result put
 * right under a paragraph would render as part of it, so it gets a blank line before it, and one
 * after it when text follows at once: it is a paragraph of its own.
 */

/** Languages (VS Code language ids) whose paragraphs are separated by blank lines. */
export const PARAGRAPH_LANGUAGES = new Set(['markdown', 'restructuredtext', 'asciidoc', 'latex']);

export interface Below {
  /** The document's language id. */
  language: string;
  /** The text of the line the result goes below (the target's last line). */
  lastLine: string;
  /** The line after it, or undefined at the end of the document. */
  nextLine: string | undefined;
  eol: string;
}

/** The text to insert at the end of `lastLine` so that `text` follows on lines of its own. */
export function textBelow(text: string, where: Below): string {
  const { language, lastLine, nextLine, eol } = where;
  if (!PARAGRAPH_LANGUAGES.has(language)) return `${eol}${text}`;
  const body = text.replace(/\s+$/, '');
  const before = lastLine.trim() === '' ? eol : `${eol}${eol}`;
  const after = nextLine !== undefined && nextLine.trim() !== '' ? eol : '';
  return `${before}${body}${after}`;
}
