/** The workspace context ring's client side (workspaceContext.ts) and Daemon.notify, in plain Node. */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { RequestType0 } from 'vscode-jsonrpc/node';
import { Daemon } from '../../src/daemon';
import { CompletionFeedback, ContextAdd, ContextChunk } from '../../src/protocol';
import { CONTEXT_DEFAULTS, ContextCollector, bound, documentPath, windowAround } from '../../src/workspaceContext';
import { MemoryLogger, fakeDaemon } from './helpers';

const fileUri = (fsPath: string) => ({ scheme: 'file', fsPath, toString: () => `file://${fsPath}` });

function collector(opts: { active?: () => boolean; current?: () => string | undefined; send?: () => boolean } = {}) {
  const batches: ContextChunk[][] = [];
  const c = new ContextCollector(
    (chunks) => {
      if (opts.send && !opts.send()) return false;
      batches.push(chunks);
      return true;
    },
    opts.active ?? (() => true),
    opts.current ?? (() => undefined),
    () => ({ ...CONTEXT_DEFAULTS, debounceMs: 0, maxPending: 3 }),
  );
  return { c, batches };
}

describe('workspace context', () => {
  it('documentPath: relative inside a workspace folder, else the file path, else the URI', () => {
    const root = path.resolve('/work/project');
    assert.equal(documentPath(fileUri(path.join(root, 'src', 'a.py')), [root]), 'src/a.py');
    assert.equal(documentPath(fileUri('/elsewhere/b.py'), [root]), '/elsewhere/b.py');
    assert.equal(documentPath(fileUri('/work/project-two/c.py'), [root]), '/work/project-two/c.py', 'a sibling folder is outside');
    assert.equal(documentPath({ scheme: 'untitled', fsPath: 'Untitled-1', toString: () => 'untitled:Untitled-1' }, [root]), 'untitled:Untitled-1');
    assert.equal(documentPath(fileUri(`/${'x'.repeat(5000)}`), []), undefined, 'longer than the daemon takes');
  });

  it('windowAround: the lines around the cursor, the top of a file, and short files whole', () => {
    assert.deepEqual(windowAround(0, 1000, 64), [0, 64]);
    assert.deepEqual(windowAround(500, 1000, 64), [468, 532]);
    assert.deepEqual(windowAround(999, 1000, 64), [936, 1000]);
    assert.deepEqual(windowAround(3, 10, 64), [0, 10]);
  });

  it('bound: at most maxChars, cut at a line end where there is one', () => {
    assert.equal(bound('a\nbb\nccc', 100), 'a\nbb\nccc');
    assert.equal(bound('a\nbb\nccc', 6), 'a\nbb');
    assert.equal(bound('x'.repeat(10_000), 4096).length, 4096);
  });

  it('sends chunks in one batch, drops blank and repeated ones, keeps the newest when too many wait', () => {
    const { c, batches } = collector();
    assert.equal(c.add('   \n', 'open', 'a.py'), false);
    assert.equal(c.add('one', 'open', 'a.py'), true);
    assert.equal(c.add('one', 'save', 'a.py'), false, 'the same text of the same file');
    assert.equal(c.add('one', 'open', 'b.py'), true, 'the same text of another file');
    c.add('two', 'edit', 'a.py');
    c.add('three', 'save', 'a.py');
    assert.equal(c.waiting, 3, 'the oldest is dropped past maxPending');
    assert.equal(c.flush(), 3);
    assert.deepEqual(batches, [[
      { text: 'one', kind: 'open', path: 'b.py' },
      { text: 'two', kind: 'edit', path: 'a.py' },
      { text: 'three', kind: 'save', path: 'a.py' },
    ]]);
  });

  it('nothing goes while inactive or without a daemon; it waits and goes later', () => {
    let active = false;
    let running = false;
    const { c, batches } = collector({ active: () => active, send: () => running });
    c.add('text', 'open', 'a.py');
    assert.equal(c.flush(), 0);
    active = true;
    assert.equal(c.flush(), 0, 'no daemon running');
    running = true;
    assert.equal(c.flush(), 1);
    assert.equal(batches.length, 1);
    assert.equal(c.waiting, 0);
  });

  it("the active document's own chunks wait until the user is elsewhere", () => {
    let here: string | undefined = 'file:///a.py';
    const { c, batches } = collector({ current: () => here });
    c.add('a text', 'open', 'a.py', 'file:///a.py');
    c.add('b text', 'open', 'b.py', 'file:///b.py');
    assert.equal(c.flush(), 1);
    assert.deepEqual(batches[0].map((x) => x.path), ['b.py']);
    here = 'file:///b.py';
    assert.equal(c.flush(), 1);
    assert.deepEqual(batches[1].map((x) => x.path), ['a.py']);
  });

  it('the debounce sends what was added after debounceMs', async () => {
    const { c, batches } = collector();
    c.add('later', 'save', 'x.py');
    assert.equal(batches.length, 0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(batches, [[{ text: 'later', kind: 'save', path: 'x.py' }]]);
  });

  it('Daemon.notify starts no daemon, and reaches a running one', { timeout: 30_000 }, async () => {
    const daemon = new Daemon({ ...fakeDaemon(), logger: new MemoryLogger() });
    assert.equal(daemon.notify(ContextAdd, { chunks: [{ text: 'x', kind: 'open' }] }), false);
    assert.equal(daemon.state, 'stopped');
    await daemon.start();
    assert.equal(daemon.notify(ContextAdd, { chunks: [{ text: 'def f(): pass', path: 'a.py', kind: 'open' }] }), true);
    assert.equal(daemon.notify(CompletionFeedback, { completion_id: 'c1', event: 'accepted', accepted_chars: 3 }), true);
    const received = await daemon.request(new RequestType0<{ method: string; params: unknown }[], void>('test/notifications'));
    assert.deepEqual(received, [
      { method: 'context/add', params: { chunks: [{ text: 'def f(): pass', path: 'a.py', kind: 'open' }] } },
      { method: 'completion/feedback', params: { completion_id: 'c1', event: 'accepted', accepted_chars: 3 } },
    ]);
    await daemon.dispose();
  });
});
