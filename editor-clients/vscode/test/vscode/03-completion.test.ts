/**
 * Inline completion, typed with real keystrokes in the browser: ghost text at the cursor, Tab to
 * accept it, no requests where it is off, and a completion superseded by more typing. What was
 * asked and answered is read from the message trace in the Ember log (`ember.trace`).
 */
import assert from 'node:assert/strict';
import type { EmberApi } from '../../src/extension';
import { driver, ember, emberLog, logMark, logged, openFile, setSetting, typeAtEnd, waitFor } from './driver';

interface Traced {
  id: number;
  params: { prefix?: string; supersede?: string; language?: string; path?: string };
}

/** The params of the notifications `method` sent to the daemon after `since` (from the trace). */
function notificationsSent<P>(api: EmberApi, method: string, since: number): P[] {
  const log = emberLog(api).slice(since);
  const re = new RegExp(`Sending notification '${method.replace('/', '\\/')}'\\.\nParams: (\\{[\\s\\S]*?\\n\\})`, 'g');
  return [...log.matchAll(re)].map((m) => JSON.parse(m[1]) as P);
}

/** The `complete` requests in the trace after `since`. */
function completeRequests(api: EmberApi, since: number): Traced[] {
  const log = emberLog(api).slice(since);
  return [...log.matchAll(/Sending request 'complete - \((\d+)\)'\.\nParams: (\{[\s\S]*?\n\})/g)].map((m) => ({
    id: Number(m[1]),
    params: JSON.parse(m[2]),
  }));
}

/** The traced answer to request `id`: its result, or the error's code. */
async function completeAnswer(api: EmberApi, id: number, since: number): Promise<{ text?: string; code?: number; completion_id?: string }> {
  const text = await logged(api, new RegExp(`Received response 'complete - \\(${id}\\)'`), since);
  const at = text.indexOf(`Received response 'complete - (${id})'`);
  const entry = text.slice(at, text.indexOf('\n\n', at) > 0 ? text.indexOf('\n\n', at) : undefined);
  const failed = /Request failed: .*\((-?\d+)\)/.exec(entry);
  if (failed) return { code: Number(failed[1]) };
  const result = /Result: (\{[\s\S]*?\n\})/.exec(entry);
  assert.ok(result, `a result in ${entry}`);
  const parsed = JSON.parse(result[1]) as { text: string; completion_id?: string };
  return { text: parsed.text, completion_id: parsed.completion_id };
}

describe('inline completion', () => {
  let api: EmberApi;

  before(async () => {
    api = await ember();
    await setSetting('trace', 'messages');
    await setSetting('complete.maxTokens', 12);
    await setSetting('complete.enabled', true, 'python');
  });
  after(async () => {
    await setSetting('complete.enabled', undefined, 'python');
    await setSetting('complete.maxTokens', undefined);
    await setSetting('trace', undefined);
  });

  it('shows ghost text at the cursor in a language where it is on, and Tab accepts it', async () => {
    const mark = logMark(api);
    // Off for plain text (the default): typing there asks for nothing.
    const plain = await openFile('story.txt', 'Once upon a time');
    await typeAtEnd(plain, ' there');

    const before = '# greet someone\ndef greet(name):\n';
    const editor = await openFile('greet.py', before);
    await typeAtEnd(editor, '    ret');
    const ghost = await waitFor('ghost text in the editor', () => driver<string | null>('ghostText'));
    const requests = completeRequests(api, mark);
    assert.ok(requests.length > 0);
    const last = requests.at(-1)!;
    assert.equal(last.params.prefix, `${before}    ret`);
    assert.equal(last.params.supersede, editor.document.uri.toString(), 'the document URI is the supersede key');
    const answer = await completeAnswer(api, last.id, mark);
    assert.ok(answer.text, 'the newest request answered with text');
    assert.ok(ghost.trim().length > 0);

    await driver('keys', { press: 'Tab' });
    await waitFor('the accepted completion', () => editor.document.getText() !== `${before}    ret`, 10_000);
    assert.equal(editor.document.getText(), `${before}    ret${answer.text}`);
    assert.ok(
      requests.every((r) => r.params.supersede !== plain.document.uri.toString()),
      'no completion was asked for in the plain text file',
    );
  });

  it('a completion superseded by typing never appears: the older request ends with -32800', async () => {
    await setSetting('complete.maxTokens', 200); // long enough to be still running at the next keystroke
    try {
      const before = 'def count(items):\n';
      const editor = await openFile('count.py', before);
      const mark = logMark(api);
      await typeAtEnd(editor, '    total');
      const first = await waitFor('a completion request', () => completeRequests(api, mark).at(-1), 60_000);
      await typeAtEnd(editor, ' =');
      // The older request is cancelled, and a newer one (for the same document) is made.
      const older = await completeAnswer(api, first.id, mark);
      assert.equal(older.code, -32800, 'the older request was cancelled');
      const newest = await waitFor('a newer request', () => completeRequests(api, mark).find((r) => r.id > first.id && r.params.prefix?.endsWith(' =')));
      assert.equal(newest.params.supersede, editor.document.uri.toString());
      const log = emberLog(api).slice(mark);
      const how = new RegExp(`Request ${newest.id} supersedes ${first.id}|Sending notification '\\$/cancelRequest'`).exec(log)?.[0];
      console.log(`      (the older request was ended by: ${how})`);
      await waitFor('ghost text for the newer request', () => driver<string | null>('ghostText'));
      await driver('keys', { press: 'Tab' });
      await waitFor('the accepted completion', () => editor.document.getText() !== `${before}    total =`, 10_000);
      // The text accepted is the newest request's; the older one had none to show.
      const answer = await completeAnswer(api, completeRequests(api, mark).at(-1)!.id, mark);
      assert.equal(editor.document.getText(), `${before}    total =${answer.text}`);
    } finally {
      await setSetting('complete.maxTokens', 12);
    }
  });

  it('requests carry language and path; workspace context and feedback (shown, accepted) reach the daemon', async () => {
    const mark = logMark(api);
    await openFile('helper.py', 'def scale_vector(values, factor):\n    return [v * factor for v in values]\n');
    const before = 'from helper import scale_vector\n';
    const editor = await openFile('main.py', before);
    await typeAtEnd(editor, 'result = ');
    await waitFor('ghost text in the editor', () => driver<string | null>('ghostText'));
    const last = completeRequests(api, mark).at(-1)!;
    assert.equal(last.params.language, 'python');
    assert.equal(last.params.path, 'main.py', 'relative to the workspace folder');
    type Chunks = { chunks: { text: string; path?: string; kind?: string }[] };
    const chunks = notificationsSent<Chunks>(api, 'context/add', mark).flatMap((p) => p.chunks);
    const helper = chunks.find((c) => c.path === 'helper.py');
    assert.ok(helper, `helper.py's chunk was sent: ${JSON.stringify(chunks)}`);
    assert.equal(helper.kind, 'open');
    assert.ok(helper.text.includes('def scale_vector'));
    assert.ok(!chunks.some((c) => c.path === 'main.py' && c.kind === 'open'), "the active file's own chunk waits");
    assert.ok(chunks.every((c) => c.path && !c.path.startsWith('/')), `only files of the workspace folder: ${chunks.map((c) => c.path)}`);
    const id = (await completeAnswer(api, last.id, mark)).completion_id;
    assert.ok(id, 'the result has a completion_id');
    type Feedback = { completion_id: string; event: string; accepted_chars?: number };
    await waitFor('the shown report', () => notificationsSent<Feedback>(api, 'completion/feedback', mark).some((f) => f.completion_id === id && f.event === 'shown'));
    await driver('keys', { press: 'Tab' });
    await waitFor('the accepted report', () =>
      notificationsSent<Feedback>(api, 'completion/feedback', mark).find((f) => f.completion_id === id && f.event === 'accepted'),
    10_000);
  });
});
