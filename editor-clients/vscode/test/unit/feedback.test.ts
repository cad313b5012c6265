/** What becomes of an inline completion (feedback.ts), as the events VS Code gives us would say. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FeedbackTracker } from '../../src/feedback';

function tracker(): { t: FeedbackTracker; sent: string[] } {
  const sent: string[] = [];
  const t = new FeedbackTracker((id, event, chars) => sent.push(chars === undefined ? `${id}:${event}` : `${id}:${event}:${chars}`));
  return { t, sent };
}

describe('feedback', () => {
  it('shown, then accepted by its command: once each, with its characters', () => {
    const { t, sent } = tracker();
    t.didShow('c1', 'file:///a.py', 10, 'foo(bar)');
    // VS Code inserts the text, then runs the item's command.
    t.didChange('file:///a.py', 10, 0, 'foo(bar)');
    t.didAccept('c1');
    assert.deepEqual(sent, ['c1:shown', 'c1:accepted:8']);
  });

  it('the accept command alone (no change seen) reports accepted', () => {
    const { t, sent } = tracker();
    t.didShow('c1', 'file:///a.py', 10, 'é + 1');
    t.didAccept('c1');
    assert.deepEqual(sent, ['c1:shown', 'c1:accepted:5'], 'characters are code points');
  });

  it('typed through: the rest goes on; a new answer with the same id is not shown again', () => {
    const { t, sent } = tracker();
    t.didShow('c1', 'doc', 0, 'hello()');
    t.didChange('doc', 0, 0, 'h');
    t.didMove('doc', 1);
    t.didChange('doc', 1, 0, 'e');
    t.didMove('doc', 2);
    t.didShow('c1', 'doc', 2, 'llo()'); // the daemon answered from the same completion
    assert.equal(t.current, 'c1');
    // VS Code's full accept replaces what was typed with the whole text.
    t.didChange('doc', 0, 2, 'hello()');
    t.didAccept('c1');
    assert.deepEqual(sent, ['c1:shown', 'c1:accepted:7']);
  });

  it('typing something else after some of it: partial with the characters typed', () => {
    const { t, sent } = tracker();
    t.didShow('c1', 'doc', 0, 'hello()');
    t.didChange('doc', 0, 0, 'he');
    t.didChange('doc', 2, 0, 'X');
    assert.deepEqual(sent, ['c1:shown', 'c1:partial:2']);
    assert.equal(t.current, undefined);
  });

  it('dismissed: another edit, the cursor moved away, another editor, or a new suggestion', () => {
    const { t, sent } = tracker();
    t.didShow('a', 'doc', 5, 'x');
    t.didChange('doc', 3, 1, '');
    t.didShow('b', 'doc', 5, 'y');
    t.didMove('doc', 9);
    t.didShow('c', 'doc', 5, 'z');
    t.didMove(undefined, undefined);
    t.didShow('d', 'doc', 5, 'w');
    t.didShow('e', 'doc', 5, 'v');
    assert.deepEqual(sent, ['a:shown', 'a:dismissed', 'b:shown', 'b:dismissed', 'c:shown', 'c:dismissed', 'd:shown', 'd:dismissed', 'e:shown']);
  });

  it("VS Code's accept-word: partial at once, its characters not counted twice at the end", () => {
    const { t, sent } = tracker();
    t.didShow('c1', 'doc', 0, 'total = sum(x)');
    t.didChange('doc', 0, 0, 'total');
    t.didPartiallyAccept('c1', 5);
    t.didChange('doc', 5, 0, ' =');
    t.didPartiallyAccept('c1', 7);
    t.didChange('doc', 7, 0, 'Q');
    assert.deepEqual(sent, ['c1:shown', 'c1:partial:5', 'c1:partial:2']);
  });

  it('changes in other documents and a late accept command change nothing', () => {
    const { t, sent } = tracker();
    t.didShow('c1', 'doc', 0, 'abc');
    t.didChange('other', 0, 0, 'zzz');
    t.didChange('doc', 0, 0, 'abc');
    t.didAccept('c1');
    t.didAccept('c1');
    assert.deepEqual(sent, ['c1:shown', 'c1:accepted:3']);
  });
});
