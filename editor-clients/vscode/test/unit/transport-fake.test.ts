/**
 * The transport (daemon.ts) on paths the real daemon cannot be made to take on demand, against
 * the fake daemon (test/unit/fake-daemon.ts): crashes, a daemon that cannot start, a flood on
 * stderr, errors with data, progress notifications, concurrent streams.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { Daemon, DaemonOptions } from '../../src/daemon';
import { DaemonUnavailableError, describeError, isTransportError } from '../../src/errors';
import { Complete, DaemonStatus, ProgressParams, Tokenize, Translate } from '../../src/protocol';
import { MemoryLogger, fakeDaemon, next } from './helpers';

const TIMEOUT = { timeout: 30_000 };

function makeDaemon(switches: string[], extra: Partial<DaemonOptions> = {}): { daemon: Daemon; logger: MemoryLogger } {
  const logger = new MemoryLogger();
  const daemon = new Daemon({
    ...fakeDaemon(...switches),
    logger,
    restart: { maxRestarts: 2 },
    ...extra,
  });
  return { daemon, logger };
}

describe('transport failure paths (fake daemon)', () => {
  it('after a crash, the next request starts a new daemon; after too many it stays down and says so', TIMEOUT, async () => {
    const { daemon, logger } = makeDaemon(['--crash-after', '0']);
    const failures: Error[] = [];
    daemon.onDidFail((e) => failures.push(e));
    const pids = new Set<number>();
    for (let crash = 1; crash <= 3; crash++) {
      await daemon.start();
      pids.add(daemon.pid!);
      const settled = next(daemon.onDidChangeState, (s) => s === 'stopped' || s === 'failed');
      const error = await daemon.request(Tokenize, { text: 'boom' }).then(
        () => assert.fail('the fake answered'),
        (e: unknown) => e,
      );
      assert.ok(isTransportError(error), `a transport error, got ${String(error)}`);
      assert.match(describeError(error), /stopped before it answered/);
      // Nothing is respawned until a request needs it; the third crash exceeds maxRestarts (2).
      assert.equal(await settled, crash <= 2 ? 'stopped' : 'failed');
      assert.equal(daemon.pid, undefined);
    }
    assert.equal(pids.size, 3, 'each start was a new process');
    assert.equal(logger.lines.filter((l) => l.includes('Starting')).length, 3);
    assert.equal(failures.length, 1);
    assert.match(failures[0].message, /crashed 3 times/);
    await assert.rejects(daemon.request(Tokenize, { text: 'x' }), DaemonUnavailableError);
    assert.equal(logger.lines.filter((l) => l.includes('Starting')).length, 3, 'a failed daemon is not respawned by a request');

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

  it('stops with shutdown and exit, and the daemon exits with code 0', TIMEOUT, async () => {
    const { daemon, logger } = makeDaemon([]);
    await daemon.start();
    await daemon.dispose();
    assert.ok(logger.lines.some((l) => l.includes('Ember daemon stopped (exit code 0)')), logger.lines.join('\n'));
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

  it("knows each model's own name, from initialize and from ember/progress, and the completion model", TIMEOUT, async () => {
    const { daemon } = makeDaemon(['--progress']);
    assert.equal(daemon.labelOf('coder'), 'coder', 'nothing known before the daemon runs');
    assert.equal(daemon.modelFor('complete'), undefined);
    await daemon.start();
    assert.equal(daemon.labelOf('coder'), 'Coder-0.5B');
    assert.equal(daemon.modelFor('complete'), 'coder');
    assert.equal(daemon.modelFor('summarize'), undefined);
    await daemon.request(Complete, { prompt: 'a', max_tokens: 4 });
    assert.equal(daemon.labelOf('fake-model'), 'Fake-Model-1B');
    assert.equal(daemon.labelOf('unknown'), 'unknown');
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
    // The message trace is switched on the live connection, without a restart.
    await daemon.reconfigure({ ...fakeDaemon('--slow', '1'), logger, traceMessages: true });
    assert.equal(daemon.pid, samePid);
    await daemon.request(Tokenize, { text: 'traced' });
    assert.ok(logger.lines.some((l) => l.includes("Sending request 'tokenize")), 'the request was traced');
    await daemon.dispose();
  });

  it('a request made while the daemon stops waits for it, then starts a new one', TIMEOUT, async () => {
    const { daemon, logger } = makeDaemon([]);
    await daemon.start();
    const oldPid = daemon.pid;
    const stopping = daemon.stop();
    assert.equal(daemon.state, 'stopped', 'a stopping daemon takes no new work');
    const result = await daemon.request(Tokenize, { text: 'after the stop' });
    await stopping;
    assert.equal(result.count, 3);
    assert.notEqual(daemon.pid, oldPid);
    const order = logger.lines.filter((l) => /Starting|daemon stopped/.test(l)).map((l) => (l.includes('Starting') ? 'start' : 'stop'));
    assert.deepEqual(order, ['start', 'stop', 'start'], 'the old daemon was gone before the new one started');
    await daemon.dispose();
  });

  it('starts nothing when reconfigured while stopped', TIMEOUT, async () => {
    const { daemon, logger } = makeDaemon([]);
    await daemon.reconfigure({ ...fakeDaemon('--slow', '1'), logger });
    assert.equal(daemon.state, 'stopped');
    assert.equal(logger.lines.filter((l) => l.includes('Starting')).length, 0);
    await daemon.start();
    assert.ok(logger.lines.some((l) => l.includes('fake-daemon.js --slow 1')), 'the next start uses the new command line');
    await daemon.dispose();
  });
});
