/**
 * What became of each inline completion, for `completion/feedback` (the daemon counts it locally,
 * never sends it anywhere).
 *
 * VS Code's stable API tells an extension little: the item's `command` runs when the user accepts
 * it whole, and nothing is said when it is shown, partly accepted or hidden. So, with no `vscode`
 * import (the unit tests run it in plain Node):
 * - shown: when the provider hands the item to VS Code (it shows it unless the user typed on);
 * - accepted: the item's command; or the user typed (or accepted word by word) all of it;
 * - partial: VS Code's accept-word / accept-line (`handleDidPartiallyAcceptCompletionItem`, which
 *   VS Code calls only where the `inlineCompletionsAdditions` API proposal is enabled), or, seen
 *   from the document, text inserted at the suggestion that is its start (typed through, or
 *   accepted by word/line); reported when the suggestion ends, with the characters used;
 * - dismissed: the suggestion ended (another edit, the cursor moved away, another editor, a new
 *   suggestion) with none of it used.
 * A later answer with the same completion_id (the daemon answering from the suggestion being typed
 * through) continues it: no second "shown".
 */
import type { FeedbackEvent } from './protocol';

export type SendFeedback = (id: string, event: FeedbackEvent, acceptedChars?: number) => void;

interface Shown {
  id: string;
  doc: string;
  /** Where the suggestion starts in the document (offset), and its whole text. */
  origin: number;
  full: string;
  /** UTF-16 units of `full` now in the document (typed or partly accepted). */
  pos: number;
  /** Characters already reported as partial. */
  reported: number;
}

/** Code points, as the daemon counts characters. */
function chars(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

export class FeedbackTracker {
  private shown: Shown | undefined;
  /** Ids that got their outcome, so a late repeat (the accept command) is not sent twice. */
  private finished: string[] = [];

  constructor(private readonly send: SendFeedback) {}

  /** The id of the suggestion being tracked. */
  get current(): string | undefined {
    return this.shown?.id;
  }

  /** The provider returned `text` (completion `id`) for `doc` at `offset`. */
  didShow(id: string, doc: string, offset: number, text: string): void {
    const s = this.shown;
    // The same completion again, answered from what was typed through: it goes on (its rest may
    // have grown, if the daemon generated on).
    if (s && s.id === id && s.doc === doc && offset === s.origin + s.pos) {
      s.full = s.full.slice(0, s.pos) + text;
      return;
    }
    this.end();
    if (this.finished.includes(id)) return;
    this.shown = { id, doc, origin: offset, full: text, pos: 0, reported: 0 };
    this.send(id, 'shown');
  }

  /** The item's command ran: the whole suggestion was accepted. */
  didAccept(id: string): void {
    const s = this.shown;
    if (s && s.id === id) {
      this.shown = undefined;
      this.finish(id, 'accepted', chars(s.full));
    } else if (!this.finished.includes(id)) {
      this.finish(id, 'accepted');
    }
  }

  /** VS Code's accept-word/accept-line: `acceptedLength` characters of the item are in (in all). */
  didPartiallyAccept(id: string, acceptedLength: number): void {
    const s = this.shown;
    if (!s || s.id !== id) return;
    const delta = acceptedLength - s.reported;
    if (delta > 0) {
      s.reported += delta;
      this.send(id, 'partial', delta);
    }
  }

  /**
   * A change of `doc`: `removed` characters at `offset` replaced by `inserted`. When the suggestion's
   * start is then in the document where it is shown (the user typed it, or accepted a word or a
   * line; VS Code's full accept replaces what was typed with the whole text), it goes on; any other
   * change ends it.
   */
  didChange(doc: string, offset: number, removed: number, inserted: string): void {
    const s = this.shown;
    if (!s || s.doc !== doc) return;
    const at = offset - s.origin;
    if (at >= 0 && at + removed === s.pos && inserted !== '' && s.full.startsWith(inserted, at) && at + inserted.length > s.pos) {
      s.pos = at + inserted.length;
      if (s.pos === s.full.length) {
        this.shown = undefined;
        this.finish(s.id, 'accepted', chars(s.full));
      }
      return;
    }
    this.end();
  }

  /** The cursor of `doc` is at `offset` (a selection change, or another editor: `doc` undefined). */
  didMove(doc: string | undefined, offset: number | undefined): void {
    const s = this.shown;
    if (s && (doc !== s.doc || offset !== s.origin + s.pos)) this.end();
  }

  /** The suggestion is gone: report the characters used as partial, or a dismissal. */
  end(): void {
    const s = this.shown;
    if (!s) return;
    this.shown = undefined;
    const rest = chars(s.full.slice(0, s.pos)) - s.reported;
    if (rest > 0) this.finish(s.id, 'partial', rest);
    else if (s.reported > 0) this.remember(s.id);
    else this.finish(s.id, 'dismissed');
  }

  private finish(id: string, event: FeedbackEvent, acceptedChars?: number): void {
    this.remember(id);
    this.send(id, event, acceptedChars);
  }

  private remember(id: string): void {
    this.finished.push(id);
    if (this.finished.length > 32) this.finished.shift();
  }
}
