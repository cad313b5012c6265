/**
 * Wires the extension together: the daemon, the commands, the providers and the status item.
 *
 * Activation spawns nothing. The daemon starts with the first Ember command, or as soon as an
 * editor shows a document whose language has inline completion on (`ember.complete.enabled`;
 * warm.ts loads the model then); the token count waits for it, or uses a shared daemon that is
 * already running. Loads and restarts show in the status bar (modelStatus.ts), not as pop-ups.
 */
import * as vscode from 'vscode';
import { ContextEvents } from './contextEvents';
import { Daemon, DaemonOptions } from './daemon';
import { restartDaemon, showLog, showStatus } from './daemonCommands';
import { FeedbackTracker } from './feedback';
import { ACCEPTED_COMMAND, EmberInlineCompletionProvider, completionEnabled, registerInlineCompletions } from './inlineCompletion';
import { ModelStatus } from './modelStatus';
import { OUTPUT_SCHEME, OutputDocuments } from './outputView';
import * as protocol from './protocol';
import { Settings, readSettings, sharedProbeArgs } from './settings';
import { TokenCountStatus } from './statusBar';
import { ask, askHighlightListeners } from './ask';
import { Services, classify, copyResult, insertResult, replaceWithResult, summarize, translate } from './textCommands';
import { showError } from './ui';
import { Warmer } from './warm';
import { CONTEXT_DEFAULTS, ContextCollector } from './workspaceContext';

let stopAll: (() => Promise<void>) | undefined;

/** Where inline completions are offered: files, new files and notebook cells (not output views). */
const COMPLETION_DOCUMENTS: vscode.DocumentFilter[] = [{ scheme: 'file' }, { scheme: 'untitled' }, { scheme: 'vscode-notebook-cell' }];

/** What activate() returns: the extension's API for other extensions and for tests. */
export interface EmberApi {
  daemon: Daemon;
  tokenCount: TokenCountStatus;
  inlineCompletion: EmberInlineCompletionProvider;
  /** The status bar item for the daemon and its model (loads show there). */
  modelStatus: ModelStatus;
  /** Starts the daemon and loads the model when a document that wants completions is shown. */
  warmer: Warmer;
  /** Workspace context waiting to be sent (`context/add`). */
  context: ContextCollector;
  /** What became of the inline completions (`completion/feedback`). */
  feedback: FeedbackTracker;
  /** The folder of the extension's log files (the Ember output channel is `Ember.log` in it). */
  logUri: vscode.Uri;
  /** The request types to use with `daemon.request` (vscode-jsonrpc matches them by identity). */
  protocol: typeof protocol;
}

export function activate(context: vscode.ExtensionContext): EmberApi {
  const log = vscode.window.createOutputChannel('Ember', { log: true });
  context.subscriptions.push(log);

  let settings = loadSettings(log);
  const version = String(context.extension?.packageJSON?.version ?? '0');
  const optionsFor = (s: Settings): DaemonOptions => ({
    command: s.command,
    args: s.args,
    cwd: workspaceFolder(),
    logger: log,
    clientInfo: { name: 'ember-vscode', version },
    traceMessages: s.trace === 'messages',
  });
  const sharedOptions = (): DaemonOptions | undefined => {
    const args = sharedProbeArgs(settings.args);
    return args && { ...optionsFor(settings), args, traceMessages: false };
  };
  const daemon = new Daemon(optionsFor(settings));

  const outputs = new OutputDocuments();
  const services: Services = { daemon, log, settings: () => settings, outputs };
  const tokenCount = new TokenCountStatus(daemon, sharedOptions, () => settings, log);
  const feedback = new FeedbackTracker((id, event, chars) => {
    daemon.notify(protocol.CompletionFeedback, { completion_id: id, event, ...(chars !== undefined && { accepted_chars: chars }) });
  });
  // Workspace context goes out once inline completion is in use (a daemon that only counts tokens
  // or summarizes never gets it), and only to a daemon already running.
  let completionUsed = false;
  const contextChunks = new ContextCollector(
    (chunks) => daemon.notify(protocol.ContextAdd, { chunks }),
    () => settings.completion.context && completionUsed,
    () => vscode.window.activeTextEditor?.document.uri.toString(),
  );
  const inlineCompletion = new EmberInlineCompletionProvider(daemon, () => settings, log, feedback, () => {
    completionUsed = true;
    contextChunks.flush();
  });
  stopAll = async () => {
    await Promise.all([tokenCount.close(), daemon.dispose()]);
  };

  const modelStatus = new ModelStatus(daemon, log);
  const warmer = new Warmer(daemon, completionEnabled, () => settings.complete.warmOnOpen, log);

  context.subscriptions.push(
    outputs,
    tokenCount,
    modelStatus,
    warmer,
    new ContextEvents(contextChunks, () => settings.completion.context, () => CONTEXT_DEFAULTS, feedback),
    contextChunks,
    daemon.onDidChangeState((state) => {
      if (state === 'running') contextChunks.flush();
    }),
    vscode.commands.registerCommand(ACCEPTED_COMMAND, (id: unknown) => {
      if (typeof id === 'string') feedback.didAccept(id);
    }),
    daemon.onDidFail((error) => void showError(error, log, () => restartDaemon(services))),
    vscode.workspace.registerTextDocumentContentProvider(OUTPUT_SCHEME, outputs),
    registerInlineCompletions(COMPLETION_DOCUMENTS, inlineCompletion, log),
    vscode.commands.registerCommand('ember.summarize', () => summarize(services)),
    vscode.commands.registerCommand('ember.translate', () => translate(services)),
    vscode.commands.registerCommand('ember.classify', () => classify(services)),
    vscode.commands.registerCommand('ember.ask', (question?: unknown) => ask(services, typeof question === 'string' ? question : undefined)),
    ...askHighlightListeners(),
    vscode.commands.registerCommand('ember.insertResult', (uri?: unknown) => insertResult(services, uri)),
    vscode.commands.registerCommand('ember.replaceWithResult', (uri?: unknown) => replaceWithResult(services, uri)),
    vscode.commands.registerCommand('ember.copyResult', (uri?: unknown) => copyResult(services, uri)),
    vscode.commands.registerCommand('ember.tokenCount', async () => {
      const count = await tokenCount.refresh(true);
      if (count) void vscode.window.showInformationMessage(`Ember: ${count.count} tokens in the ${count.scope} (${count.model}).`);
      return count;
    }),
    vscode.commands.registerCommand('ember.status', () => showStatus(services)),
    vscode.commands.registerCommand('ember.restartDaemon', () => restartDaemon(services)),
    vscode.commands.registerCommand('ember.showLog', () => showLog(services)),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (!e.affectsConfiguration('ember')) return;
      settings = loadSettings(log);
      try {
        // Restarts a running daemon when its command line changed; starts none.
        await daemon.reconfigure(optionsFor(settings));
        await tokenCount.reconfigure();
      } catch (error) {
        await showError(error, log);
      }
    }),
  );
  return { daemon, tokenCount, inlineCompletion, modelStatus, warmer, context: contextChunks, feedback, logUri: context.logUri, protocol };
}

/** VS Code waits for this promise: the daemon gets `shutdown` and `exit`. */
export async function deactivate(): Promise<void> {
  const stopping = stopAll;
  stopAll = undefined;
  await stopping?.();
}

function workspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

function loadSettings(log: vscode.LogOutputChannel): Settings {
  const { settings, problems } = readSettings(vscode.workspace.getConfiguration('ember'), workspaceFolder());
  if (problems.length > 0) {
    for (const problem of problems) log.warn(problem);
    void vscode.window.showWarningMessage(`Ember: ${problems.join(' ')}`);
  }
  return settings;
}
