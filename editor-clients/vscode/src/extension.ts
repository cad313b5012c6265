/** Wires the extension together: the daemon, the commands, the providers and the status item. */
import * as vscode from 'vscode';
import { Daemon, DaemonOptions } from './daemon';
import { restartDaemon, showLog, showStatus } from './daemonCommands';
import { EmberInlineCompletionProvider } from './inlineCompletion';
import { OUTPUT_SCHEME, OutputDocuments } from './outputView';
import { ModelProgress } from './progress';
import { Settings, readSettings } from './settings';
import { TokenCountStatus } from './statusBar';
import { Services, classify, summarize, translate } from './textCommands';
import { showError } from './ui';

let daemon: Daemon | undefined;

/** What activate() returns: the extension's API for other extensions and for tests. */
export interface EmberApi {
  daemon: Daemon;
  tokenCount: TokenCountStatus;
  inlineCompletion: EmberInlineCompletionProvider;
}

export function activate(context: vscode.ExtensionContext): EmberApi {
  const log = vscode.window.createOutputChannel('Ember', { log: true });
  context.subscriptions.push(log);

  let settings = loadSettings(log);
  const version = String(context.extension?.packageJSON?.version ?? '0');
  const optionsFor = (s: Settings): DaemonOptions => ({
    command: s.command,
    args: s.args,
    cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath,
    logger: log,
    clientInfo: { name: 'ember-vscode', version },
    traceMessages: s.trace === 'messages',
  });
  const current = new Daemon(optionsFor(settings));
  daemon = current;
  context.subscriptions.push({ dispose: () => void current.dispose() });

  const outputs = new OutputDocuments();
  const services: Services = { daemon: current, log, settings: () => settings, outputs };
  const tokenCount = new TokenCountStatus(current, () => settings, log);
  const inlineCompletion = new EmberInlineCompletionProvider(current, () => settings, log);

  context.subscriptions.push(
    outputs,
    tokenCount,
    new ModelProgress(current, log),
    current.onDidFail((error) => void showError(error, log, () => restartDaemon(services))),
    vscode.workspace.registerTextDocumentContentProvider(OUTPUT_SCHEME, outputs),
    vscode.languages.registerInlineCompletionItemProvider({ pattern: '**' }, inlineCompletion),
    vscode.commands.registerCommand('ember.summarize', () => summarize(services)),
    vscode.commands.registerCommand('ember.translate', () => translate(services)),
    vscode.commands.registerCommand('ember.classify', () => classify(services)),
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
      tokenCount.schedule();
      try {
        await current.reconfigure(optionsFor(settings));
      } catch (error) {
        await showError(error, log);
      }
    }),
  );
  return { daemon: current, tokenCount, inlineCompletion };
}

/** VS Code waits for this promise: the daemon gets `shutdown` and `exit`. */
export async function deactivate(): Promise<void> {
  const stopping = daemon;
  daemon = undefined;
  await stopping?.dispose();
}

function loadSettings(log: vscode.LogOutputChannel): Settings {
  const { settings, problems } = readSettings();
  if (problems.length > 0) {
    for (const problem of problems) log.warn(problem);
    void vscode.window.showWarningMessage(`Ember: ${problems.join(' ')}`);
  }
  return settings;
}
