/**
 * A fake Ember daemon for the failure paths the real one cannot be made to take on demand.
 * Content-Length framed JSON-RPC on stdio, the same methods and notifications as `ember serve`.
 *
 *   --crash-after N     exit(3) on receiving request N+1 (after `initialize`), without answering
 *   --fail-start        exit(2) at once, before reading anything
 *   --slow MS           wait MS between streamed deltas (so a request can be cancelled mid-way)
 *   --error CODE        every task answers with this error code
 *   --stderr-flood KB   write KB kilobytes to stderr before answering `initialize`
 *   --progress          send `ember/progress` (load 0..100, ready) before the first task answers
 *
 * It keeps the `context/add` and `completion/feedback` notifications it receives and hands them
 * back to the request `test/notifications` (a test-only method).
 */
import {
  CancellationToken,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from 'vscode-jsonrpc/node';

const argv = process.argv.slice(2);
function option(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}
const crashAfter = option('--crash-after') !== undefined ? Number(option('--crash-after')) : undefined;
const slowMs = Number(option('--slow') ?? 0);
const errorCode = option('--error') !== undefined ? Number(option('--error')) : undefined;
const floodKb = Number(option('--stderr-flood') ?? 0);
let progressPending = argv.includes('--progress');

if (argv.includes('--fail-start')) {
  process.stderr.write('fake daemon: failing at start as asked\n');
  process.exit(2);
}

// vscode-jsonrpc does not hand handlers the request id, which ember/stream needs: the message
// strategy sees each message just before its handler is called.
let currentId: number | string | undefined;
const connection = createMessageConnection(
  new StreamMessageReader(process.stdin),
  new StreamMessageWriter(process.stdout),
  undefined,
  {
    messageStrategy: {
      handleMessage(message, next) {
        const id = (message as { id?: number | string | null }).id;
        if (id !== undefined && id !== null) currentId = id;
        return next(message);
      },
    },
  },
);
let served = 0;
let cancelled = 0;
let shutdown = false;

function count(): void {
  served += 1;
  if (crashAfter !== undefined && served > crashAfter) {
    process.stderr.write(`fake daemon: crashing on request ${served}\n`);
    process.exit(3);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function sendProgress(): Promise<void> {
  if (!progressPending) return;
  progressPending = false;
  for (const percent of [0, 50, 100]) {
    await connection.sendNotification('ember/progress', {
      model: 'fake-model', label: 'Fake-Model-1B', phase: 'load', percent, bytes: null, total_bytes: null, message: `loading ${percent}%`,
    });
  }
  await connection.sendNotification('ember/progress', {
    model: 'fake-model', label: 'Fake-Model-1B', phase: 'ready', percent: 100, bytes: null, total_bytes: null, message: 'ready',
  });
}

const words = (text: string): string[] => text.match(/\S+\s*/g) ?? [];

/** Streams `text` word by word when asked, honouring cancellation like the real daemon. */
async function generate(
  id: number | string | undefined,
  params: { stream?: boolean },
  text: string,
  token: CancellationToken,
): Promise<{ text: string; finish_reason: string; model: string; usage: object; timings: object }> {
  count();
  if (errorCode !== undefined) throw new ResponseError(errorCode, `fake error ${errorCode}`, { tokens: 9000, limit: 2048 });
  await sendProgress();
  const pieces = words(text);
  for (let index = 0; index < pieces.length; index++) {
    if (token.isCancellationRequested) {
      cancelled += 1;
      throw new ResponseError(-32800, 'Request cancelled');
    }
    if (params.stream) await connection.sendNotification('ember/stream', { id, delta: pieces[index], index });
    if (slowMs > 0) await sleep(slowMs);
  }
  if (token.isCancellationRequested) {
    cancelled += 1;
    throw new ResponseError(-32800, 'Request cancelled');
  }
  return {
    text,
    finish_reason: 'stop',
    model: 'fake-model',
    usage: { prompt_tokens: 1, completion_tokens: pieces.length },
    timings: { queue_ms: 0, load_ms: 0, run_ms: 0, total_ms: 0 },
  };
}

connection.onRequest('initialize', async () => {
  if (floodKb > 0) {
    const line = `${'x'.repeat(1023)}\n`;
    for (let i = 0; i < floodKb; i++) process.stderr.write(line);
    process.stderr.write('flood done\n');
  }
  return {
    server: { name: 'fake-ember', version: '0.0.0' },
    protocol_version: 1,
    methods: ['initialize', 'shutdown', 'tokenize', 'complete', 'summarize', 'translate', 'classify', 'daemon/status'],
    tasks: [],
    // As the real daemon says it: a config name, the model's own name, the tasks it is the default of.
    models: [{ name: 'coder', label: 'Coder-0.5B', source: 'fake', kind: 'causal-lm', loaded: false, tasks: ['complete'] }],
    device: 'cpu',
    pid: process.pid,
  };
});
connection.onRequest('shutdown', () => {
  shutdown = true;
  return null;
});
connection.onNotification('exit', () => process.exit(shutdown ? 0 : 1));
const notifications: { method: string; params: unknown }[] = [];
for (const method of ['context/add', 'completion/feedback']) {
  connection.onNotification(method, (params: unknown) => {
    notifications.push({ method, params });
  });
}
connection.onRequest('test/notifications', () => notifications);
connection.onRequest('tokenize', (params: { text?: string }) => {
  count();
  const pieces = words(params.text ?? '');
  return { model: 'fake-model', count: pieces.length, ids: pieces.map((_, i) => i), tokens: pieces, offsets: [] };
});
connection.onRequest('complete', (params: { prefix?: string; stream?: boolean }, token) =>
  generate(currentId, params, ' completed by the fake', token),
);
connection.onRequest('summarize', (params: { text: string; stream?: boolean }, token) =>
  generate(currentId, params, `Summary: ${words(params.text).slice(0, 3).join('').trim()}.`, token),
);
connection.onRequest('translate', (params: { text: string; target: string; stream?: boolean }, token) =>
  generate(currentId, params, `[${params.target}] ${params.text}`, token),
);
connection.onRequest('classify', (params: { labels?: string[] }) => {
  count();
  if (errorCode !== undefined) throw new ResponseError(errorCode, `fake error ${errorCode}`);
  const labels = params.labels ?? ['positive', 'negative', 'neutral'];
  const raw = labels.map((_, i) => labels.length - i);
  const sum = raw.reduce((a, b) => a + b, 0);
  return {
    label: labels[0],
    scores: labels.map((label, i) => ({ label, score: raw[i] / sum })),
    calibrated: true,
    model: 'fake-model',
    usage: { prompt_tokens: 1, completion_tokens: 0 },
    timings: { queue_ms: 0, load_ms: 0, run_ms: 0, total_ms: 0 },
  };
});
connection.onRequest('daemon/status', () => ({
  version: '0.0.0', pid: process.pid, uptime_s: process.uptime(), requests_served: served, queue_depth: 0,
  running: [], memory: { rss_bytes: process.memoryUsage().rss }, models: [{ name: 'fake-model', loaded: true }],
  workers: [], cancelled_requests: cancelled,
}));

connection.listen();
