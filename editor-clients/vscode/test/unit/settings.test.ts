/** package.json's declared settings against settings.ts, and the pure helpers, in plain Node. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { describeProgress, formatClassification, formatStatus, formatTokenCount, formatValue, modelName, parseLabels, tail } from '../../src/format';
import { StatusResult, supersedeKey } from '../../src/protocol';
import { DEFAULTS, calibrateParam, readSettings, resolveCommand, sharedProbeArgs } from '../../src/settings';

const EXTENSION_ROOT = path.resolve(__dirname, '../..'); // the tests run from out/unit/
const packageJson = JSON.parse(readFileSync(path.join(EXTENSION_ROOT, 'package.json'), 'utf8'));
interface Schema {
  default: unknown;
  description?: string;
  markdownDescription?: string;
  type: string;
  enum?: unknown[];
  scope?: string;
}
const properties: Record<string, Schema> = packageJson.contributes.configuration.properties;

function flatten(value: object, prefix = 'ember'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, flatten(v, `${prefix}.${k}`));
    else out[`${prefix}.${k}`] = v;
  }
  return out;
}

/** A `get(key)` source over plain values, as VS Code's configuration for the `ember` section. */
function config(values: Record<string, unknown>): { get(key: string): unknown } {
  return { get: (key) => values[`ember.${key}`] };
}
const declaredDefaults = Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, v.default]));

describe('settings', () => {
  it('package.json declares every setting, with the defaults settings.ts uses and a description', () => {
    assert.deepEqual(declaredDefaults, flatten(DEFAULTS));
    for (const [key, schema] of Object.entries(properties)) {
      assert.ok(schema.description || schema.markdownDescription, `${key} has a description`);
      assert.ok(schema.type, `${key} has a type`);
      if (schema.enum) assert.ok(schema.enum.includes(schema.default), `${key}'s default is one of its values`);
    }
  });

  it('inline completion is off by default and can be turned on per language', () => {
    assert.equal(properties['ember.complete.enabled'].default, false);
    assert.equal(properties['ember.complete.enabled'].scope, 'language-overridable');
  });

  it('prose languages stay off even when inline completion is on for all files, unless turned on per language', () => {
    const defaults = packageJson.contributes.configurationDefaults as Record<string, Record<string, unknown>>;
    for (const language of ['markdown', 'plaintext', 'git-commit', 'git-rebase', 'scminput']) {
      assert.deepEqual(defaults[`[${language}]`], { 'ember.complete.enabled': false }, language);
    }
    // Language-specific defaults must be able to apply: the setting is language-overridable.
    assert.equal(properties['ember.complete.enabled'].scope, 'language-overridable');
    assert.equal(properties['ember.complete.warmOnOpen'].default, true);
  });

  it("binds no keys: VS Code's own inline-suggestion keys (Tab, accept word, accept line, next/previous) stay", () => {
    assert.equal(packageJson.contributes.keybindings, undefined);
  });

  it('the result commands are on the summary\'s title bar and in the palette only there', () => {
    const title = packageJson.contributes.menus['editor/title'] as { command: string; when: string }[];
    assert.deepEqual(title.map((m) => m.command), ['ember.insertResult', 'ember.replaceWithResult', 'ember.copyResult']);
    for (const m of title) assert.match(m.when, /resourceScheme == ember/);
  });

  it('reads the declared defaults', () => {
    const { settings, problems } = readSettings(config(declaredDefaults));
    assert.deepEqual(problems, []);
    assert.deepEqual(settings, DEFAULTS);
  });

  it('falls back to the default for a value of the wrong type and says why', () => {
    const { settings, problems } = readSettings(
      config({ ...declaredDefaults, 'ember.complete.debounceMs': '50', 'ember.args': ['connect'], 'ember.translate.mode': 'sideways' }),
    );
    assert.equal(settings.complete.debounceMs, DEFAULTS.complete.debounceMs);
    assert.deepEqual(settings.args, ['connect']);
    assert.equal(settings.translate.mode, 'replace');
    assert.deepEqual(problems, [
      '"ember.translate.mode" has an invalid value "sideways"; using "replace".',
      '"ember.complete.debounceMs" has an invalid value "50"; using 300.',
    ]);
  });

  it('sends calibrate only when the user chose', () => {
    assert.equal(calibrateParam('auto'), undefined);
    assert.equal(calibrateParam('on'), true);
    assert.equal(calibrateParam('off'), false);
  });

  it('resolves ~, ${workspaceFolder} and relative paths in ember.command', () => {
    assert.equal(resolveCommand('ember', '/ws'), 'ember');
    assert.equal(resolveCommand('~/bin/ember'), path.join(os.homedir(), 'bin/ember'));
    assert.equal(resolveCommand('${workspaceFolder}/.venv/bin/ember', '/ws'), '/ws/.venv/bin/ember');
    assert.equal(resolveCommand('.venv/bin/ember', '/ws'), '/ws/.venv/bin/ember');
  });

  it('finds the shared daemon with the same executable and config file', () => {
    assert.deepEqual(sharedProbeArgs(['serve']), ['connect', '--no-start']);
    assert.deepEqual(sharedProbeArgs(['connect', '--model', 'x']), ['connect', '--no-start']);
    assert.deepEqual(sharedProbeArgs(['-m', 'ember', 'serve', '--config', 'c.toml', '--threads', '2']), [
      '-m', 'ember', 'connect', '--no-start', '--config', 'c.toml',
    ]);
    assert.deepEqual(sharedProbeArgs(['serve', '--config=c.toml']), ['connect', '--no-start', '--config=c.toml']);
    assert.equal(sharedProbeArgs(['--some-wrapper']), undefined);
  });
});

describe('formatting', () => {
  it('parses comma-separated labels', () => {
    assert.deepEqual(parseLabels(' bug, feature ,, question '), ['bug', 'feature', 'question']);
  });

  it('formats a classification: top label, then all scores, highest first', () => {
    const text = formatClassification({
      label: 'negative',
      scores: [
        { label: 'positive', score: 0.1 },
        { label: 'negative', score: 0.7 },
        { label: 'neutral', score: 0.2 },
      ],
      calibrated: true,
      method: 'loglikelihood',
      model: 'm',
      usage: { prompt_tokens: 1, completion_tokens: 0 },
      timings: { queue_ms: 0, load_ms: 0, run_ms: 0, total_ms: 0 },
    });
    assert.equal(text, 'Ember: negative (negative 70.0%, neutral 20.0%, positive 10.0%)');
  });

  it('formats the token count', () => {
    assert.equal(formatTokenCount(1, 'm'), '$(symbol-number) 1 token · m');
    assert.equal(formatTokenCount(12, 'm'), '$(symbol-number) 12 tokens · m');
  });

  it('formats status fields of any shape', () => {
    assert.equal(formatValue([{ name: 'smol', loaded: true, rss_bytes: 2 ** 21 }]), 'smol (loaded: true, rss_bytes: 2.0 MiB)');
    assert.equal(formatValue([]), 'none');
    assert.equal(formatValue(null), '-');
  });

  it('formats daemon/status as the real daemon sends it', () => {
    // Recorded from `ember serve` 0.1.0 with SmolLM2 loaded.
    const status = {
      version: '0.1.0', pid: 15386, uptime_s: 35.2, requests_served: 17, queue_depth: 0, running: [], connections: 1,
      memory: { rss_bytes: 1039020032, models_bytes: 538060288 },
      models: [{
        name: 'default', kind: 'causal-lm', source: 'smollm2', path: '/root/.cache/x', device: 'cpu', dtype: 'float32',
        quantization: 'none', quantization_note: null, context_length: 8192, memory_bytes: 538060288,
        load_seconds: 1.942, loaded_at: 1795941030.4, idle_s: 0.1,
      }],
      model_loads: 1,
      workers: [{ device: 'auto', threads: 1, queue_depth: 0, jobs_done: 5 }],
    } as unknown as StatusResult;
    assert.deepEqual(formatStatus(status), {
      message: 'Ember 0.1.0: 17 requests served, queue 0; loaded: default',
      detail: [
        'pid 15386, up 35 s',
        'Running: none',
        'Memory: rss_bytes: 990.9 MiB, models_bytes: 513.1 MiB',
        'Models: default: causal-lm, cpu float32, 513.1 MiB, idle 0 s',
        'Workers: device: auto, threads: 1, queue_depth: 0, jobs_done: 5',
      ].join('\n'),
    });
  });

  it('describes model progress, with sizes when the daemon knows them', () => {
    const base = { model: 'default', label: 'SmolLM2-135M-Instruct', phase: 'download' as const, percent: 5, message: 'downloading' };
    assert.equal(describeProgress({ ...base, bytes: 2 ** 20, total_bytes: 20 * 2 ** 20 }), 'downloading: 1.0 of 20.0 MiB');
    assert.equal(describeProgress({ ...base, message: '', bytes: null, total_bytes: null }), 'download');
  });

  it("names models by their own name (label), with the config name beside it", () => {
    const status = {
      version: '0.2.0', pid: 1, uptime_s: 3, requests_served: 2, queue_depth: 0, running: [],
      memory: { rss_bytes: 2 ** 20, models_bytes: 2 ** 20 },
      models: [{ name: 'default', label: 'SmolLM2-135M-Instruct', kind: 'causal-lm', device: 'cpu', dtype: 'float32', idle_s: 1 }],
      workers: [],
    } as unknown as StatusResult;
    const { message, detail } = formatStatus(status);
    assert.equal(message, 'Ember 0.2.0: 2 requests served, queue 0; loaded: SmolLM2-135M-Instruct');
    assert.match(detail, /Models: SmolLM2-135M-Instruct \(default\): causal-lm, cpu float32, idle 1 s/);
    assert.equal(modelName({ name: 'default', label: 'default' }), 'default');
    assert.equal(modelName({ name: 'coder' }), 'coder');
  });

  it('keeps the end of a streamed text for a progress message, on one line', () => {
    assert.equal(tail('a\n b  c'), 'a b c');
    assert.equal(tail('x'.repeat(100), 10), `…${'x'.repeat(9)}`);
  });

  it('uses the document URI as the supersede key, hashed when too long for the daemon', () => {
    assert.equal(supersedeKey('file:///a.py'), 'file:///a.py');
    const long = supersedeKey(`file:///${'a'.repeat(5000)}`);
    assert.match(long, /^sha256:[0-9a-f]{64}$/);
    assert.equal(long, supersedeKey(`file:///${'a'.repeat(5000)}`));
  });
});
