/**
 * The `ember.*` settings, read into one typed object.
 *
 * package.json declares them (types, defaults, enums, descriptions) for VS Code's settings UI;
 * DEFAULTS below must match it (a test checks). A value of the wrong type falls back to its
 * default, and the problem is reported so the user can fix it. No `vscode` import: the reader
 * gets any `get(key)` source, so the unit tests run this module in plain Node.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import type { SummaryForm, SummaryLength } from './protocol';

export type TranslateMode = 'replace' | 'insertBelow';
export type TraceSetting = 'off' | 'messages';
export type CalibrateSetting = 'auto' | 'on' | 'off';

export interface Settings {
  command: string;
  args: string[];
  trace: TraceSetting;
  summarize: { form: SummaryForm; length: SummaryLength; maxTokens: number };
  translate: { targetLanguage: string; mode: TranslateMode; maxTokens: number };
  classify: { labels: string[]; promptForLabels: boolean; calibrate: CalibrateSetting };
  complete: {
    /** The window-wide value; the provider reads it per document (it can differ per language). */
    enabled: boolean;
    /** Start the daemon and load the model when a document that wants completions is shown. */
    warmOnOpen: boolean;
    debounceMs: number;
    maxTokens: number;
    maxPrefixChars: number;
    maxSuffixChars: number;
  };
  completion: {
    /** Send workspace context (`context/add`) for inline completions. */
    context: boolean;
  };
  tokenCount: { enabled: boolean; debounceMs: number; maxChars: number };
}

export const DEFAULTS: Settings = {
  command: 'ember',
  args: ['serve'],
  trace: 'off',
  summarize: { form: 'paragraph', length: 'medium', maxTokens: 256 },
  translate: { targetLanguage: 'English', mode: 'replace', maxTokens: 1024 },
  classify: { labels: ['positive', 'negative', 'neutral'], promptForLabels: false, calibrate: 'auto' },
  complete: { enabled: false, warmOnOpen: true, debounceMs: 300, maxTokens: 32, maxPrefixChars: 3000, maxSuffixChars: 1000 },
  completion: { context: true },
  tokenCount: { enabled: true, debounceMs: 300, maxChars: 500_000 },
};

/** Where settings come from: a `vscode.WorkspaceConfiguration` for the `ember` section is one. */
export interface ConfigSource {
  get(key: string): unknown;
}

/** A readable view of the settings, and what was wrong with them. */
export interface ReadSettings {
  settings: Settings;
  problems: string[];
}

type Check<T> = (value: unknown) => value is T;

const isString: Check<string> = (v): v is string => typeof v === 'string';
const isNonEmptyString: Check<string> = (v): v is string => typeof v === 'string' && v.trim() !== '';
export const isBoolean: Check<boolean> = (v): v is boolean => typeof v === 'boolean';
const isStringArray: Check<string[]> = (v): v is string[] => Array.isArray(v) && v.every(isString);
const oneOf =
  <T extends string>(...values: T[]): Check<T> =>
  (v): v is T =>
    typeof v === 'string' && (values as string[]).includes(v);
const intIn =
  (min: number, max: number): Check<number> =>
  (v): v is number =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** Reads every setting from `config`; `workspaceFolder` resolves a relative `ember.command`. */
export function readSettings(config: ConfigSource, workspaceFolder?: string): ReadSettings {
  const problems: string[] = [];
  function get<T>(key: string, check: Check<T>, fallback: T): T {
    const value = config.get(key);
    if (value === undefined || value === null) return fallback;
    if (check(value)) return value;
    problems.push(`"ember.${key}" has an invalid value ${JSON.stringify(value)}; using ${JSON.stringify(fallback)}.`);
    return fallback;
  }
  const d = DEFAULTS;
  const settings: Settings = {
    command: resolveCommand(get('command', isNonEmptyString, d.command), workspaceFolder),
    args: get('args', isStringArray, d.args),
    trace: get('trace', oneOf<TraceSetting>('off', 'messages'), d.trace),
    summarize: {
      form: get('summarize.form', oneOf<SummaryForm>('sentence', 'paragraph', 'bullets'), d.summarize.form),
      length: get('summarize.length', oneOf<SummaryLength>('short', 'medium', 'long'), d.summarize.length),
      maxTokens: get('summarize.maxTokens', intIn(1, 32768), d.summarize.maxTokens),
    },
    translate: {
      targetLanguage: get('translate.targetLanguage', isNonEmptyString, d.translate.targetLanguage),
      mode: get('translate.mode', oneOf<TranslateMode>('replace', 'insertBelow'), d.translate.mode),
      maxTokens: get('translate.maxTokens', intIn(1, 32768), d.translate.maxTokens),
    },
    classify: {
      labels: get('classify.labels', isStringArray, d.classify.labels).map((l) => l.trim()).filter((l) => l !== ''),
      promptForLabels: get('classify.promptForLabels', isBoolean, d.classify.promptForLabels),
      calibrate: get('classify.calibrate', oneOf<CalibrateSetting>('auto', 'on', 'off'), d.classify.calibrate),
    },
    complete: {
      enabled: get('complete.enabled', isBoolean, d.complete.enabled),
      warmOnOpen: get('complete.warmOnOpen', isBoolean, d.complete.warmOnOpen),
      debounceMs: get('complete.debounceMs', intIn(0, 10_000), d.complete.debounceMs),
      maxTokens: get('complete.maxTokens', intIn(1, 1024), d.complete.maxTokens),
      maxPrefixChars: get('complete.maxPrefixChars', intIn(0, 100_000), d.complete.maxPrefixChars),
      maxSuffixChars: get('complete.maxSuffixChars', intIn(0, 100_000), d.complete.maxSuffixChars),
    },
    completion: {
      context: get('completion.context', isBoolean, d.completion.context),
    },
    tokenCount: {
      enabled: get('tokenCount.enabled', isBoolean, d.tokenCount.enabled),
      debounceMs: get('tokenCount.debounceMs', intIn(0, 10_000), d.tokenCount.debounceMs),
      maxChars: get('tokenCount.maxChars', intIn(1, 50_000_000), d.tokenCount.maxChars),
    },
  };
  return { settings, problems };
}

/** The `calibrate` param for classify: sent only when the user chose; the daemon decides otherwise. */
export function calibrateParam(setting: CalibrateSetting): boolean | undefined {
  return setting === 'auto' ? undefined : setting === 'on';
}

/**
 * `~` and `${workspaceFolder}` are expanded; a relative path with a directory part is taken
 * relative to the workspace folder. A bare name (`ember`) is looked up on PATH.
 */
export function resolveCommand(command: string, workspaceFolder?: string): string {
  let resolved = command.trim();
  if (resolved === '~' || resolved.startsWith('~/')) resolved = path.join(os.homedir(), resolved.slice(1));
  if (workspaceFolder) resolved = resolved.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  if (!path.isAbsolute(resolved) && resolved.includes('/') && workspaceFolder) resolved = path.resolve(workspaceFolder, resolved);
  return resolved;
}

/**
 * The arguments that run `ember connect --no-start` with the same executable and config file as
 * `args`: it joins a shared daemon that is already running, and fails (exit 3) when none is.
 * Undefined when `args` has no `serve` or `connect` subcommand to swap (a wrapper we don't know).
 */
export function sharedProbeArgs(args: string[]): string[] | undefined {
  const at = args.findIndex((a) => a === 'serve' || a === 'connect');
  if (at < 0) return undefined;
  const probe = [...args.slice(0, at), 'connect', '--no-start'];
  const rest = args.slice(at + 1);
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--config' && i + 1 < rest.length) probe.push('--config', rest[++i]);
    else if (rest[i].startsWith('--config=')) probe.push(rest[i]);
  }
  return probe;
}
