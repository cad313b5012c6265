/**
 * Runs the Ember daemon as a child process and talks JSON-RPC to it over its stdio.
 *
 * Spawns `command args` (`ember serve`, or `ember connect` for the shared daemon) when the first
 * request needs it, sends `initialize`, always drains its stderr into the log, and stops it with
 * `shutdown` then `exit`. After a crash nothing is respawned until the next request (a few times;
 * a daemon that keeps crashing stays down until `restart()`). No `vscode` import: the logger and
 * the options are injected, so the unit tests drive this module in plain Node.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as readline from 'node:readline';
import {
  CancellationReceiverStrategy,
  CancellationSenderStrategy,
  CancellationStrategy,
  CancellationToken,
  Disposable,
  Emitter,
  Event,
  MessageConnection,
  NotificationType,
  RequestParam,
  RequestType,
  RequestType0,
  StreamMessageReader,
  StreamMessageWriter,
  Trace,
  createMessageConnection,
} from 'vscode-jsonrpc/node';
import { DaemonUnavailableError, describeError } from './errors';
import {
  Exit,
  GenerationOptions,
  Initialize,
  InitializeResult,
  ProgressNotification,
  ProgressParams,
  Shutdown,
  StreamNotification,
  StreamParams,
} from './protocol';

/** What the daemon writes to; a VS Code `LogOutputChannel` is one. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  debug(message: string): void;
}

export interface RestartPolicy {
  /** Most crashes within `windowMs` after which the next request still starts a new daemon. */
  maxRestarts: number;
  windowMs: number;
}

export interface DaemonOptions {
  command: string;
  args: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  logger: Logger;
  clientInfo?: { name: string; version: string };
  restart?: Partial<RestartPolicy>;
  /** How long the daemon may take to answer `initialize` (default 60 s). */
  startTimeoutMs?: number;
  /** How long `shutdown` and then the child's exit may take before the child is killed. */
  stopTimeoutMs?: number;
  /** Log every JSON-RPC message (at info level: asking for it is the user's choice). */
  traceMessages?: boolean;
}

export type DaemonState = 'stopped' | 'starting' | 'running' | 'failed';

const DEFAULT_RESTART: RestartPolicy = {
  maxRestarts: 3,
  windowMs: 3 * 60_000,
};

type StreamHandler = (params: StreamParams) => void;

/** One spawned child and its connection; a restart makes a new one. */
interface Session {
  child: ChildProcess;
  connection: MessageConnection;
  info?: InitializeResult;
  /** Set when we asked it to stop, so its exit is not taken for a crash. */
  stopping: boolean;
  exited: Promise<void>;
  streams: Map<number | string, StreamHandler>;
  /** The id of the request that sendRequest is writing right now (see `createSession`). */
  lastRequestId?: number | string;
}

export class Daemon implements Disposable {
  private options: DaemonOptions;
  private readonly policy: RestartPolicy;
  private session: Session | undefined;
  /** A start in progress. */
  private pending: Promise<Session> | undefined;
  /** A stop in progress. */
  private stopping: Promise<void> | undefined;
  private failure: Error | undefined;
  private crashes: number[] = [];
  private currentState: DaemonState = 'stopped';
  private disposed = false;
  /** Bumped by stop(): a start that a stop overtook is not a failure. */
  private generation = 0;
  /** Config name -> the model's own name, from `initialize` and `ember/progress`. */
  private readonly labels = new Map<string, string>();

  private readonly stateEmitter = new Emitter<DaemonState>();
  private readonly progressEmitter = new Emitter<ProgressParams>();
  private readonly failEmitter = new Emitter<Error>();
  /** Fires on every state change. */
  readonly onDidChangeState: Event<DaemonState> = this.stateEmitter.event;
  /** Fires for each `ember/progress` notification. */
  readonly onProgress: Event<ProgressParams> = this.progressEmitter.event;
  /** Fires when the daemon could not be started, or crashed more often than the policy allows. */
  readonly onDidFail: Event<Error> = this.failEmitter.event;

  constructor(options: DaemonOptions) {
    this.options = options;
    this.policy = { ...DEFAULT_RESTART, ...options.restart };
  }

  get state(): DaemonState {
    return this.currentState;
  }

  /** What `initialize` returned from the running daemon. */
  get info(): InitializeResult | undefined {
    return this.session?.info;
  }

  /**
   * The model's own name (SmolLM2-135M-Instruct) for a configured `name` ("default"), as the
   * daemon reported it; the config name where it reported none.
   */
  labelOf(name: string): string {
    return this.labels.get(name) || name;
  }

  /** The configured model that `task` uses by default, from `initialize`. */
  modelFor(task: string): string | undefined {
    return this.session?.info?.models.find((m) => m.tasks.includes(task))?.name;
  }

  /** The running child's process id (for the log, and for tests that kill it). */
  get pid(): number | undefined {
    return this.session?.child.pid;
  }

  /** Starts the daemon if it is not running; resolves once `initialize` has been answered. */
  async start(): Promise<InitializeResult | undefined> {
    const session = await this.ensureSession();
    return session.info;
  }

  /** Sends a request, starting the daemon first where needed. */
  request<R>(type: RequestType0<R, void>, token?: CancellationToken): Promise<R>;
  request<P, R>(type: RequestType<P, R, void>, params: P, token?: CancellationToken): Promise<R>;
  async request(
    type: RequestType0<unknown, void> | RequestType<unknown, unknown, void>,
    paramsOrToken?: unknown,
    token?: CancellationToken,
  ): Promise<unknown> {
    const session = await this.ensureSession();
    if (type instanceof RequestType0) {
      const t = paramsOrToken as CancellationToken | undefined;
      return session.connection.sendRequest(type, t);
    }
    return session.connection.sendRequest(type, paramsOrToken, token);
  }

  /**
   * Sends a notification to the daemon if one is running and initialized; starts none (what it
   * carries is only worth sending to a daemon already in use). Returns whether it was sent.
   */
  notify<P>(type: NotificationType<P>, params: P): boolean {
    const session = this.session;
    if (!session || this.currentState !== 'running') return false;
    session.connection.sendNotification(type, params as RequestParam<P>).catch((error: unknown) => {
      this.options.logger.debug(`${type.method}: ${describeError(error)}`);
    });
    return true;
  }

  /**
   * Sends a generative request with `stream: true`; `onDelta` gets each `ember/stream` delta, in
   * order, before the promise resolves with the final result.
   */
  async stream<P extends GenerationOptions, R>(
    type: RequestType<P, R, void>,
    params: P,
    onDelta: (delta: string, index: number) => void,
    token?: CancellationToken,
  ): Promise<R> {
    const session = await this.ensureSession();
    let expected = 0;
    const handler: StreamHandler = ({ delta, index }) => {
      if (index !== expected) {
        this.options.logger.warn(`ember/stream: expected index ${expected}, got ${index}`);
      }
      expected = index + 1;
      onDelta(delta, index);
    };
    session.lastRequestId = undefined;
    const streamed = { ...params, stream: true } as RequestParam<P>; // generic P: TS cannot resolve RequestParam<P>
    const reply = session.connection.sendRequest(type, streamed, token);
    // sendRequest hands the request to the cancellation strategy synchronously, before it writes
    // it, so its id is known here, before any notification for it can arrive.
    const id = session.lastRequestId;
    if (id === undefined) throw new Error('could not learn the request id for streaming');
    session.streams.set(id, handler);
    try {
      return await reply;
    } finally {
      session.streams.delete(id);
    }
  }

  /**
   * New settings: a running (or failed) daemon is restarted when its command line changed; the
   * message trace is switched on the live connection. Nothing is started otherwise.
   */
  async reconfigure(options: DaemonOptions): Promise<void> {
    const changed =
      options.command !== this.options.command ||
      JSON.stringify(options.args) !== JSON.stringify(this.options.args) ||
      options.cwd !== this.options.cwd ||
      JSON.stringify(options.env) !== JSON.stringify(this.options.env);
    const traceChanged = Boolean(options.traceMessages) !== Boolean(this.options.traceMessages);
    this.options = options;
    if (changed && (this.session || this.pending || this.currentState === 'failed')) {
      await this.restart();
    } else if (traceChanged && this.session) {
      await this.applyTrace(this.session.connection);
    }
  }

  /** Stops the daemon and starts a fresh one; clears the crash count and any failure. */
  async restart(): Promise<InitializeResult | undefined> {
    await this.stop();
    this.crashes = [];
    return this.start();
  }

  /** `shutdown`, then `exit`; kills the child when it does not go in time. */
  stop(): Promise<void> {
    // Requests made meanwhile wait for it (ensureSession), so none reaches a daemon on its way out
    // or starts a new one before the old one is gone.
    const stopping = this.stopping ? this.stopping.then(() => this.stopNow()) : this.stopNow();
    this.stopping = stopping;
    void stopping.finally(() => {
      if (this.stopping === stopping) this.stopping = undefined;
    });
    return stopping;
  }

  private async stopNow(): Promise<void> {
    this.generation++;
    this.failure = undefined;
    if (!this.disposed) this.setState('stopped'); // from now on: no longer there for new work
    const pending = this.pending;
    if (pending) await pending.catch(() => undefined);
    const session = this.session;
    if (session) await this.stopSession(session);
    if (!this.disposed) this.setState('stopped');
  }

  async dispose(): Promise<void> {
    await this.stop();
    this.disposed = true;
    this.stateEmitter.dispose();
    this.progressEmitter.dispose();
    this.failEmitter.dispose();
  }

  // -- internals ---------------------------------------------------------------------------------

  private ensureSession(): Promise<Session> {
    if (this.disposed) return Promise.reject(new DaemonUnavailableError('The Ember extension is shutting down.'));
    if (this.stopping) return this.stopping.then(() => this.ensureSession());
    if (this.session) return Promise.resolve(this.session);
    if (this.pending) return this.pending;
    // A new error each time: the first one was already reported through onDidFail.
    if (this.failure) return Promise.reject(new DaemonUnavailableError(this.failure.message));
    return this.launch();
  }

  /** Starts a session; `pending` covers the start. */
  private launch(): Promise<Session> {
    const generation = this.generation;
    this.setState('starting');
    const promise = this.createSession().then(
      (session) => {
        this.pending = undefined;
        this.session = session;
        this.setState('running');
        return session;
      },
      (error: unknown) => {
        this.pending = undefined;
        const failure =
          error instanceof DaemonUnavailableError ? error : new DaemonUnavailableError(describeError(error));
        if (generation === this.generation) this.fail(failure);
        throw failure;
      },
    );
    this.pending = promise;
    return promise;
  }

  private async createSession(): Promise<Session> {
    const { command, args, cwd, env, logger } = this.options;
    logger.info(`Starting ${[command, ...args].join(' ')}`);
    const child = spawn(command, args, {
      cwd,
      env: env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });

    // Always drain stderr: a full pipe would block the daemon.
    readline.createInterface({ input: child.stderr! }).on('line', (line) => logger.info(`[daemon] ${line}`));
    // Writing to a child that died raises EPIPE on stdin; without a listener it would throw.
    child.stdin!.on('error', (error) => logger.debug(`daemon stdin: ${error.message}`));

    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (error) =>
        reject(
          new DaemonUnavailableError(
            `Could not start the Ember daemon "${command}": ${error.message}. Check the "ember.command" setting.`,
          ),
        ),
      );
    });
    // After 'exit', wait for 'close' (stdout drained, so a last reply is not lost), but not for
    // long: a grandchild that inherited the pipes could hold them open.
    const exited = new Promise<void>((resolve) =>
      child.once('exit', () => {
        const timer = setTimeout(resolve, 1_000);
        child.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      }),
    );

    const session: Session = {
      child,
      connection: undefined as unknown as MessageConnection,
      stopping: false,
      exited,
      streams: new Map(),
    };
    const cancellationStrategy: CancellationStrategy = {
      receiver: CancellationReceiverStrategy.Message,
      sender: {
        // Called synchronously by sendRequest with the message it is about to write: the only
        // place vscode-jsonrpc tells us a request's id, which `ember/stream` notifications carry.
        enableCancellation: (request) => {
          session.lastRequestId = request.id ?? undefined;
        },
        sendCancellation: (conn, id) => CancellationSenderStrategy.Message.sendCancellation(conn, id),
        cleanup: () => undefined,
      },
    };
    const connection = createMessageConnection(
      new StreamMessageReader(child.stdout!),
      new StreamMessageWriter(child.stdin!),
      { error: logger.error.bind(logger), warn: logger.warn.bind(logger), info: logger.info.bind(logger), log: logger.debug.bind(logger) },
      { cancellationStrategy },
    );
    session.connection = connection;
    connection.onNotification(StreamNotification, (params) => session.streams.get(params.id)?.(params));
    connection.onNotification(ProgressNotification, (params) => {
      if (params.label) this.labels.set(params.model, params.label);
      this.progressEmitter.fire(params);
    });
    if (this.options.traceMessages) await this.applyTrace(connection);
    connection.listen();

    void exited.then(() => this.onExit(session, child.exitCode, child.signalCode));

    let started = false;
    try {
      await spawned;
      started = true;
      const exitedEarly = exited.then(() => {
        throw new Error('exited');
      });
      exitedEarly.catch(() => undefined); // only the race below needs it
      session.info = await withTimeout(
        Promise.race([
          connection.sendRequest(Initialize, {
            process_id: process.pid,
            client_info: this.options.clientInfo ?? { name: 'ember-vscode', version: '0' },
          }),
          exitedEarly,
        ]),
        this.options.startTimeoutMs ?? 60_000,
      );
      for (const model of session.info.models ?? []) if (model.label) this.labels.set(model.name, model.label);
      logger.info(`Ember daemon running (pid ${child.pid}, ${session.info.server.name} ${session.info.server.version})`);
      return session;
    } catch (error) {
      session.stopping = true;
      // Writing `initialize` to a child that already died fails too: report the exit, not the EPIPE.
      const gone = started && (await withTimeout(exited, 1_000).then(() => true, () => false));
      connection.dispose();
      if (!gone) child.kill('SIGKILL');
      if (gone) {
        const how = child.signalCode ? `signal ${child.signalCode}` : `exit code ${child.exitCode}`;
        throw new DaemonUnavailableError(`The Ember daemon exited during start-up (${how}); see "Ember: Show Log".`);
      }
      throw error instanceof DaemonUnavailableError
        ? error
        : new DaemonUnavailableError(`The Ember daemon did not start: ${describeError(error)}`);
    }
  }

  /** Logs every JSON-RPC message when `traceMessages` is on (and stops when it is off). */
  private async applyTrace(connection: MessageConnection): Promise<void> {
    const { logger } = this.options;
    await connection.trace(this.options.traceMessages ? Trace.Verbose : Trace.Off, {
      log: (message: unknown, data?: string) => {
        const text = typeof message === 'string' ? message : JSON.stringify(message);
        logger.info(data ? `${text}\n${data}` : text);
      },
    });
  }

  private onExit(session: Session, code: number | null, signal: NodeJS.Signals | null): void {
    const { logger } = this.options;
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    session.connection.dispose(); // rejects the requests still waiting for an answer
    if (session.stopping) {
      logger.info(`Ember daemon stopped (${how})`);
      return;
    }
    if (this.session !== session) return; // died during start-up: createSession reports it
    this.session = undefined;
    logger.error(`Ember daemon exited unexpectedly (${how})`);

    const now = Date.now();
    this.crashes = this.crashes.filter((t) => now - t < this.policy.windowMs);
    this.crashes.push(now);
    if (this.crashes.length > this.policy.maxRestarts) {
      this.fail(
        new DaemonUnavailableError(
          `The Ember daemon crashed ${this.crashes.length} times; run "Ember: Restart Daemon" after checking "Ember: Show Log".`,
        ),
      );
      return;
    }
    // Not respawned at once: nothing may need it again, and the next request starts it.
    logger.info(
      `The next request starts it again (crash ${this.crashes.length} of ${this.policy.maxRestarts} allowed within ${Math.round(this.policy.windowMs / 1000)} s)`,
    );
    this.setState('stopped');
  }

  private fail(error: Error): void {
    this.failure = error;
    this.options.logger.error(error.message);
    this.setState('failed');
    this.failEmitter.fire(error);
  }

  private async stopSession(session: Session): Promise<void> {
    const { logger } = this.options;
    const timeoutMs = this.options.stopTimeoutMs ?? 3_000;
    session.stopping = true;
    this.session = undefined;
    const alive = () => session.child.exitCode === null && session.child.signalCode === null;
    if (alive()) {
      try {
        await withTimeout(session.connection.sendRequest(Shutdown), timeoutMs);
        await session.connection.sendNotification(Exit);
      } catch (error) {
        logger.warn(`Ember daemon did not shut down cleanly: ${describeError(error)}`);
      }
    }
    session.child.stdin?.end();
    if (alive() && !(await withTimeout(session.exited, timeoutMs).then(() => true, () => false))) {
      logger.warn('Ember daemon did not exit; killing it');
      session.child.kill('SIGKILL');
    }
    await session.exited;
  }

  private setState(state: DaemonState): void {
    if (state === this.currentState) return;
    this.currentState = state;
    this.stateEmitter.fire(state);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
