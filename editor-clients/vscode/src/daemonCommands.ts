/** Status, Restart Daemon and Show Log. */
import * as vscode from 'vscode';
import { DaemonStatus, StatusResult } from './protocol';
import type { Services } from './textCommands';
import { showError } from './ui';

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
  return `${String(model.name)}: ${parts.join(', ')}`;
}

function formatModels(models: unknown): string {
  if (Array.isArray(models) && models.length > 0 && models.every((m) => typeof m === 'object' && m && 'name' in m)) {
    return models.map((m) => formatModel(m as Record<string, unknown>)).join('; ');
  }
  return Array.isArray(models) && models.length === 0 ? 'none loaded' : formatValue(models);
}

export function formatStatus(status: StatusResult): { message: string; detail: string } {
  const uptime = typeof status.uptime_s === 'number' ? `${Math.round(status.uptime_s)} s` : '-';
  return {
    message: `Ember ${status.version}: ${status.requests_served} requests served, queue ${status.queue_depth}`,
    detail: [
      `pid ${status.pid}, up ${uptime}`,
      `Running: ${formatValue(status.running)}`,
      `Memory: ${formatValue(status.memory)}`,
      `Models: ${formatModels(status.models)}`,
      `Workers: ${formatValue(status.workers)}`,
    ].join('\n'),
  };
}

export async function showStatus(services: Services): Promise<StatusResult | undefined> {
  try {
    const status = await services.daemon.request(DaemonStatus);
    services.log.info(`daemon/status: ${JSON.stringify(status)}`);
    const { message, detail } = formatStatus(status);
    void vscode.window.showInformationMessage(message, { modal: true, detail });
    return status;
  } catch (error) {
    await showError(error, services.log);
    return undefined;
  }
}

export async function restartDaemon(services: Services): Promise<void> {
  try {
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'Ember: restarting the daemon…' },
      () => services.daemon.restart(),
    );
    void vscode.window.showInformationMessage('Ember: daemon restarted.');
  } catch (error) {
    await showError(error, services.log);
  }
}

export function showLog(services: Services): void {
  services.log.show(true);
}
