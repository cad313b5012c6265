/** package.json's declared settings against settings.ts, and the small pure helpers. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { formatStatus, formatValue } from '../src/daemonCommands';
import type { StatusResult } from '../src/protocol';
import { DEFAULTS, readSettings } from '../src/settings';
import { formatClassification, parseLabels } from '../src/textCommands';
import { EXTENSION_ROOT } from './helpers';
import { stub } from './stub/vscode';

const packageJson = JSON.parse(readFileSync(path.join(EXTENSION_ROOT, 'package.json'), 'utf8'));
const properties: Record<string, { default: unknown; description?: string; markdownDescription?: string; type: string }> =
  packageJson.contributes.configuration.properties;

function flatten(value: object, prefix = 'ember'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, flatten(v, `${prefix}.${k}`));
    else out[`${prefix}.${k}`] = v;
  }
  return out;
}

describe('settings', () => {
  it('package.json declares every setting, with the defaults settings.ts uses and a description', () => {
    const declared = Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, v.default]));
    assert.deepEqual(declared, flatten(DEFAULTS));
    for (const [key, schema] of Object.entries(properties)) {
      assert.ok(schema.description || schema.markdownDescription, `${key} has a description`);
      assert.ok(schema.type, `${key} has a type`);
    }
    assert.deepEqual((properties['ember.translate.mode'] as { enum?: string[] }).enum, ['replace', 'insertBelow']);
  });

  it('reads the declared defaults', () => {
    stub.loadDefaults(packageJson);
    const { settings, problems } = readSettings();
    assert.deepEqual(problems, []);
    assert.deepEqual(settings, DEFAULTS);
  });

  it('falls back to the default for a value of the wrong type and says why', () => {
    stub.loadDefaults(packageJson);
    stub.settings.set('ember.complete.debounceMs', '50');
    stub.settings.set('ember.args', ['connect']);
    try {
      const { settings, problems } = readSettings();
      assert.equal(settings.complete.debounceMs, DEFAULTS.complete.debounceMs);
      assert.deepEqual(settings.args, ['connect']);
      assert.deepEqual(problems, ['"ember.complete.debounceMs" has an invalid value "50"; using 300.']);
    } finally {
      stub.settings.clear();
    }
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
      model: 'm',
      usage: { prompt_tokens: 1, completion_tokens: 0 },
      timings: { queue_ms: 0, load_ms: 0, run_ms: 0, total_ms: 0 },
    });
    assert.equal(text, 'Ember: negative (negative 70.0%, neutral 20.0%, positive 10.0%)');
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
      message: 'Ember 0.1.0: 17 requests served, queue 0',
      detail: [
        'pid 15386, up 35 s',
        'Running: none',
        'Memory: rss_bytes: 990.9 MiB, models_bytes: 513.1 MiB',
        'Models: default: causal-lm, cpu float32, 513.1 MiB, idle 0 s',
        'Workers: device: auto, threads: 1, queue_depth: 0, jobs_done: 5',
      ].join('\n'),
    });
  });
});
