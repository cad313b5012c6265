/**
 * The transport (daemon.ts + protocol.ts) against the REAL daemon (`$EMBER_CMD serve`) and its
 * offline model, in plain Node: no `vscode` anywhere in this bundle.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CancellationTokenSource, ResponseError } from 'vscode-jsonrpc/node';
import { Daemon } from '../src/daemon';
import { describeError } from '../src/errors';
import { Complete, DaemonStatus, ErrorCode, Tokenize } from '../src/protocol';
import { MemoryLogger, emberCommand, next } from './helpers';

const TIMEOUT = { timeout: 90_000 };

describe('transport against the real daemon', () => {
  const logger = new MemoryLogger();
  const daemon = new Daemon({
    command: emberCommand(),
    args: ['serve'],
    logger,
    clientInfo: { name: 'ember-vscode-tests', version: '0' },
    restart: { initialDelayMs: 10 },
  });

  before(async () => {
    await daemon.start();
  });
  after(async () => {
    await daemon.dispose();
  });

  it('initializes and reports what it offers', TIMEOUT, () => {
    const info = daemon.info;
    assert.ok(info, 'initialize answered');
    assert.equal(typeof info.server.name, 'string');
    assert.equal(info.pid, daemon.pid);
    for (const method of ['tokenize', 'complete', 'summarize', 'translate', 'classify', 'daemon/status']) {
      assert.ok(info.methods.includes(method), `initialize lists ${method}`);
    }
    assert.equal(daemon.state, 'running');
  });

  it('tokenizes: count matches the ids', TIMEOUT, async () => {
    const result = await daemon.request(Tokenize, { text: 'Hello world, this is Ember.' });
    assert.ok(result.count > 0);
    assert.deepEqual(result.ids?.length, result.count);
    assert.equal(typeof result.model, 'string');
  });

  it('completes a prompt', TIMEOUT, async () => {
    const result = await daemon.request(Complete, { prompt: 'The capital of France is', max_tokens: 8 });
    assert.ok(result.text.length > 0, 'some text came back');
    assert.ok(['stop', 'length'].includes(result.finish_reason));
    assert.ok(result.usage.completion_tokens > 0);
  });

  it('streams deltas, in order, that concatenate to the final text', TIMEOUT, async () => {
    const deltas: string[] = [];
    const indexes: number[] = [];
    const result = await daemon.stream(
      Complete,
      { prompt: 'List three colours:', max_tokens: 16 },
      (delta, index) => {
        deltas.push(delta);
        indexes.push(index);
      },
    );
    assert.ok(deltas.length > 0, 'ember/stream notifications arrived');
    assert.deepEqual(indexes, deltas.map((_, i) => i));
    assert.equal(deltas.join(''), result.text);
  });

  it('cancels a running request through the CancellationToken (-32800), then serves the next', TIMEOUT, async () => {
    const cts = new CancellationTokenSource();
    let deltas = 0;
    const cancelled = daemon.stream(
      Complete,
      { messages: [{ role: 'user', content: 'Write a long story about a dragon and a knight.' }], max_tokens: 400 },
      () => {
        deltas += 1;
        cts.cancel(); // the first delta proves it is running; vscode-jsonrpc sends $/cancelRequest
      },
      cts.token,
    );
    await assert.rejects(cancelled, (error: unknown) => {
      assert.ok(error instanceof ResponseError, `a ResponseError, got ${String(error)}`);
      assert.equal(error.code, ErrorCode.RequestCancelled);
      return true;
    });
    assert.ok(deltas >= 1 && deltas < 400);
    const served = await daemon.request(Tokenize, { text: 'still here' });
    assert.ok(served.count > 0);
  });

  it('cancels a request whose token was cancelled before it was sent', TIMEOUT, async () => {
    const cts = new CancellationTokenSource();
    cts.cancel();
    await assert.rejects(
      daemon.request(Complete, { prompt: 'Once upon a time', max_tokens: 200 }, cts.token),
      (error: unknown) => error instanceof ResponseError && error.code === ErrorCode.RequestCancelled,
    );
  });

  it('turns a daemon error into its readable message', TIMEOUT, async () => {
    const error = await daemon.request(Complete, { prompt: 'x', max_tokens: 0 }).then(
      () => assert.fail('max_tokens 0 was accepted'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ResponseError);
    assert.equal(error.code, ErrorCode.InvalidParams);
    assert.match(describeError(error), /max_tokens/);
  });

  it('answers daemon/status', TIMEOUT, async () => {
    const status = await daemon.request(DaemonStatus);
    assert.equal(status.pid, daemon.pid);
    assert.ok(status.requests_served > 0);
  });

  it('restarts after the child is killed, and serves again', TIMEOUT, async () => {
    const oldPid = daemon.pid!;
    const running = next(daemon.onDidChangeState, (s) => s === 'running');
    process.kill(oldPid, 'SIGKILL');
    await running;
    assert.notEqual(daemon.pid, oldPid);
    const result = await daemon.request(Tokenize, { text: 'Hello again' });
    assert.ok(result.count > 0);
    assert.ok(logger.lines.some((l) => l.includes('exited unexpectedly (signal SIGKILL)')));
  });

  it('stops with shutdown and exit: the daemon exits with code 0', TIMEOUT, async () => {
    await daemon.stop();
    assert.equal(daemon.state, 'stopped');
    await logger.waitFor('Ember daemon stopped (exit code 0)');
    // and starts again on demand
    const result = await daemon.request(Tokenize, { text: 'back' });
    assert.ok(result.count > 0);
  });
});
