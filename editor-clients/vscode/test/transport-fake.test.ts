/**
 * The transport's failure paths, against the fake daemon (test/fake-daemon.ts): crashes, a
 * daemon that cannot start, a flood on stderr, errors with data, progress notifications.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { Daemon, DaemonOptions } from '../src/daemon';
import { DaemonUnavailableError, describeError, isTransportError } from '../src/errors';
import { Complete, DaemonStatus, ProgressParams, Tokenize, Translate } from '../src/protocol';
import { MemoryLogger, fakeDaemon, next } from './helpers';

const TIMEOUT = { timeout: 30_000 };

function makeDaemon(switches: string[], extra: Partial<DaemonOptions> = {}): { daemon: Daemon; logger: MemoryLogger } {
  const logger = new MemoryLogger();
  const daemon = new Daemon({
    ...fakeDaemon(...switches),
    logger,
    restart: { maxRestarts: 2, initialDelayMs: 1, maxDelayMs: 4 },
    ...extra,
  });
  return { daemon, logger };
}

describe('transport failure paths (fake daemon)', () => {
  it('restarts after crashes, then gives up after maxRestarts and says so', TIMEOUT, async () => {
    const { daemon, logger } = makeDaemon(['--crash-after', '0']);
    const failures: Error[] = [];
    daemon.onDidFail((e) => failures.push(e));
    for (let crash = 1; crash <= 3; crash++) {
      await daemon.start();
      const settled = crash <= 2 ? next(daemon.onDidChangeState, (s) => s === 'running') : next(daemon.onDidChangeState, (s) => s === 'failed');
      const error = await daemon.request(Tokenize, { text: 'boom' }).then(
        () => assert.fail('the fake answered'),
        (e: unknown) => e,
      );
      assert.ok(isTransportError(error), `a transport error, got ${String(error)}`);
      assert.match(describeError(error), /stopped before it answered/);
      await settled;
    }
    assert.equal(daemon.state, 'failed');
    assert.equal(failures.length, 1);
    assert.match(failures[0].message, /crashed 3 times/);
    await assert.rejects(daemon.request(Tokenize, { text: 'x' }), DaemonUnavailableError);
    assert.ok(logger.lines.some((l) => l.includes('restart 2 of 2')));

    // An explicit restart clears the failure.
    await daemon.restart();
    assert.equal(daemon.state, 'running');
    await daemon.dispose();
  });

  it('reports a daemon that exits during start-up, once, and does not respawn it on every request', TIMEOUT, async () => {
    const { daemon, logger } = makeDaemon(['--fail-start']);
    const failures: Error[] = [];
    daemon.onDidFail((e) => failures.push(e));
    await assert.rejects(daemon.start(), /exited during start-up/);
    assert.equal(daemon.state, 'failed');
    await assert.rejects(daemon.request(Tokenize, { text: 'x' }), /exited during start-up/);
    assert.equal(failures.length, 1);
    assert.equal(logger.lines.filter((l) => l.includes('Starting')).length, 1);
    assert.ok(logger.lines.some((l) => l.includes('[daemon] fake daemon: failing at start')), 'stderr reached the log');
    await daemon.dispose();
  });

  it('reports a command that does not exist', TIMEOUT, async () => {
    const logger = new MemoryLogger();
    const daemon = new Daemon({ command: '/nonexistent/ember', args: ['serve'], logger });
    await assert.rejects(daemon.start(), /Could not start the Ember daemon "\/nonexistent\/ember".*ember\.command/);
    assert.equal(daemon.state, 'failed');
    await daemon.dispose();
  });

  it('drains stderr: a daemon that writes megabytes to it still answers', TIMEOUT, async () => {
    const { daemon, logger } = makeDaemon(['--stderr-flood', '2048']);
    await daemon.start();
    assert.equal(daemon.state, 'running');
    await logger.waitFor('flood done');
    assert.ok(logger.lines.filter((l) => l.startsWith('[info] [daemon] xxx')).length >= 2048);
    await daemon.dispose();
  });

  it('passes the error message and data through', TIMEOUT, async () => {
    const { daemon } = makeDaemon(['--error', '-32002']);
    const error = await daemon.request(Translate, { text: 'hi', target: 'French' }).then(
      () => assert.fail('no error'),
      (e: unknown) => e,
    );
    assert.equal(describeError(error), 'fake error -32002 (9000 tokens, the model takes 2048)');
    await daemon.dispose();
  });

  it('delivers ember/progress notifications in order', TIMEOUT, async () => {
    const { daemon } = makeDaemon(['--progress']);
    const seen: ProgressParams[] = [];
    daemon.onProgress((p) => seen.push(p));
    await daemon.request(Complete, { prompt: 'a', max_tokens: 4 });
    assert.deepEqual(
      seen.map((p) => [p.phase, p.percent]),
      [['load', 0], ['load', 50], ['load', 100], ['ready', 100]],
    );
    await daemon.dispose();
  });

  it('sends $/cancelRequest for a cancelled token, and keeps streams of concurrent requests apart', TIMEOUT, async () => {
    const { daemon } = makeDaemon(['--slow', '5']);
    const a: string[] = [];
    const b: string[] = [];
    const cts = new CancellationTokenSource();
    const first = daemon.stream(Translate, { text: 'one two three four five six', target: 'A' }, (d) => a.push(d));
    const second = daemon.stream(Translate, { text: 'seven eight nine', target: 'B' }, (d) => b.push(d));
    const third = assert.rejects(
      daemon.stream(Translate, { text: 'w '.repeat(500), target: 'C' }, () => cts.cancel(), cts.token),
      /cancelled/i,
    );
    const [firstResult, secondResult] = await Promise.all([first, second]);
    assert.equal(a.join(''), firstResult.text);
    assert.equal(b.join(''), secondResult.text);
    await third;
    const status = (await daemon.request(DaemonStatus)) as unknown as { cancelled_requests: number };
    assert.equal(status.cancelled_requests, 1);
    await daemon.dispose();
  });

  it('rejects the requests in flight when the daemon dies, with a readable message', TIMEOUT, async () => {
    const { daemon } = makeDaemon(['--slow', '20']);
    await daemon.start();
    const pid = daemon.pid!;
    const pending = daemon.stream(Translate, { text: 'w '.repeat(500), target: 'X' }, () => process.kill(pid, 'SIGKILL'));
    const error = await pending.then(
      () => assert.fail('answered'),
      (e: unknown) => e,
    );
    assert.match(describeError(error), /stopped before it answered/);
    await daemon.dispose();
  });

  it('restarts with the new command line when reconfigured', TIMEOUT, async () => {
    const { daemon, logger } = makeDaemon([]);
    await daemon.start();
    const firstPid = daemon.pid;
    await daemon.reconfigure({ ...fakeDaemon('--slow', '1'), logger });
    await daemon.start();
    assert.notEqual(daemon.pid, firstPid);
    assert.ok(logger.lines.some((l) => l.includes('fake-daemon.js --slow 1')));
    // The same options again: no restart.
    const samePid = daemon.pid;
    await daemon.reconfigure({ ...fakeDaemon('--slow', '1'), logger });
    assert.equal(daemon.pid, samePid);
    await daemon.dispose();
  });
});
