/** A stale inline completion request is cancelled only when no newer one for the document follows. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { SupersedingRequests } from '../../src/supersede';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('superseding requests', () => {
  it('a newer request for the document sent in time: the older is not cancelled (the daemon replaces it)', async () => {
    const r = new SupersedingRequests();
    const editor = new CancellationTokenSource();
    const older = r.begin('file:///a.py', editor.token, 30);
    editor.cancel(); // the keystroke
    const newer = r.begin('file:///a.py', new CancellationTokenSource().token, 30);
    await sleep(80);
    assert.equal(older.token.isCancellationRequested, false);
    assert.equal(newer.token.isCancellationRequested, false);
    older.done();
    newer.done();
  });

  it('no newer request follows (Escape, the cursor moved): the older is cancelled after the wait', async () => {
    const r = new SupersedingRequests();
    const editor = new CancellationTokenSource();
    const older = r.begin('file:///a.py', editor.token, 30);
    r.begin('file:///other.py', undefined, 30).done(); // another document's request does not count
    editor.cancel();
    assert.equal(older.token.isCancellationRequested, false, 'not at once');
    await sleep(80);
    assert.equal(older.token.isCancellationRequested, true);
    older.done();
  });

  it('answered before the wait is over: nothing is cancelled; an editor token already cancelled cancels at once', async () => {
    const r = new SupersedingRequests();
    const editor = new CancellationTokenSource();
    const req = r.begin('k', editor.token, 30);
    editor.cancel();
    req.done();
    await sleep(60);
    assert.equal(req.token.isCancellationRequested, false);
    const gone = new CancellationTokenSource();
    gone.cancel();
    assert.equal(r.begin('k', gone.token, 30).token.isCancellationRequested, true);
  });
});
