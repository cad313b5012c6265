/**
 * Turning daemon results into the short texts the extension shows. Pure: no `vscode` import, so
 * the unit tests run it in plain Node.
 */
import type { ClassifyResult, ProgressParams, StatusResult } from './protocol';

/** Parses "a, b, c" into labels. */
export function parseLabels(value: string): string[] {
  return value
    .split(',')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/** One line: the top label, then every label's score, highest first. */
export function formatClassification(result: ClassifyResult): string {
  const scores = [...result.scores]
    .sort((a, b) => b.score - a.score)
    .map((s) => `${s.label} ${(s.score * 100).toFixed(1)}%`)
    .join(', ');
  return `Ember: ${result.label} (${scores})`;
}

/** The token count in the status bar: "$(symbol-number) 12 tokens · model". */
export function formatTokenCount(count: number, model: string): string {
  return `$(symbol-number) ${count} ${count === 1 ? 'token' : 'tokens'} · ${model}`;
}

/** A compact one-line rendering of whatever shape the daemon sends for a status field. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (Array.isArray(value)) return value.length === 0 ? 'none' : value.map(formatValue).join('; ');
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    const name = (value as Record<string, unknown>).name;
    const rest = entries
      .filter(([k]) => k !== 'name')
      .map(([k, v]) => `${k}: ${typeof v === 'object' && v !== null ? `{${formatValue(v)}}` : formatScalar(k, v)}`)
      .join(', ');
    return typeof name === 'string' ? `${name} (${rest})` : rest;
  }
  return String(value);
}

function formatScalar(key: string, value: unknown): string {
  if (typeof value === 'number' && /bytes$/.test(key)) return `${(value / 2 ** 20).toFixed(1)} MiB`;
  return String(value);
}

/** "default: causal-lm, cpu float32, 513.1 MiB, idle 3 s" from what the daemon says of a model. */
export function formatModel(model: Record<string, unknown>): string {
  const parts = [model.kind, [model.device, model.dtype].filter(Boolean).join(' ')].filter(Boolean).map(String);
  if (typeof model.quantization === 'string' && model.quantization !== 'none') parts.push(model.quantization);
  if (typeof model.memory_bytes === 'number') parts.push(formatScalar('memory_bytes', model.memory_bytes));
  if (typeof model.idle_s === 'number') parts.push(`idle ${Math.round(model.idle_s)} s`);
  if (typeof model.loaded === 'boolean') parts.push(model.loaded ? 'loaded' : 'not loaded');
  return `${modelName(model)}: ${parts.join(', ')}`;
}

/** "SmolLM2-135M-Instruct (default)": the model's own name, then its config name where they differ. */
export function modelName(model: Record<string, unknown>): string {
  const name = String(model.name);
  const label = typeof model.label === 'string' && model.label !== '' ? model.label : name;
  return label === name ? name : `${label} (${name})`;
}

function formatModels(models: unknown): string {
  if (Array.isArray(models) && models.length > 0 && models.every((m) => typeof m === 'object' && m && 'name' in m)) {
    return models.map((m) => formatModel(m as Record<string, unknown>)).join('; ');
  }
  return Array.isArray(models) && models.length === 0 ? 'none loaded' : formatValue(models);
}

function loadedModels(models: unknown): string {
  const names = Array.isArray(models)
    ? models.map((m) => (m && typeof m === 'object' ? ((m as { label?: unknown }).label || (m as { name?: unknown }).name) : undefined))
    : [];
  return names.length === 0 ? 'no model loaded' : `loaded: ${names.map(String).join(', ')}`;
}

/** `daemon/status` as a notification's message and its detail lines. */
export function formatStatus(status: StatusResult): { message: string; detail: string } {
  const uptime = typeof status.uptime_s === 'number' ? `${Math.round(status.uptime_s)} s` : '-';
  return {
    message: `Ember ${status.version}: ${status.requests_served} requests served, queue ${status.queue_depth}; ${loadedModels(status.models)}`,
    detail: [
      `pid ${status.pid}, up ${uptime}`,
      `Running: ${formatValue(status.running)}`,
      `Memory: ${formatValue(status.memory)}`,
      `Models: ${formatModels(status.models)}`,
      `Workers: ${formatValue(status.workers)}`,
    ].join('\n'),
  };
}

/** "loading: 12.0 of 270.0 MiB" from an `ember/progress` notification. */
export function describeProgress(p: ProgressParams): string {
  const parts = [p.message || p.phase];
  if (p.bytes !== null && p.total_bytes) {
    parts.push(`${(p.bytes / 2 ** 20).toFixed(1)} of ${(p.total_bytes / 2 ** 20).toFixed(1)} MiB`);
  }
  return parts.join(': ');
}

/** The last `max` characters of `text` on one line, for a progress message. */
export function tail(text: string, max = 80): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length <= max ? flat : `…${flat.slice(flat.length - max + 1)}`;
}
