/**
 * Turning daemon and transport failures into short, readable messages.
 * No `vscode` import: the transport tests use it in plain Node.
 */
import { ErrorCodes, ResponseError } from 'vscode-jsonrpc/node';
import { ErrorCode } from './protocol';

/** The daemon is not there to answer: it could not be started, or it stopped. */
export class DaemonUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DaemonUnavailableError';
  }
}

/** True for the error a request gets when it was cancelled (`$/cancelRequest`). */
export function isCancelled(error: unknown): boolean {
  return error instanceof ResponseError && error.code === ErrorCode.RequestCancelled;
}

/** True where the request never reached a daemon that could answer it. */
export function isTransportError(error: unknown): boolean {
  if (error instanceof DaemonUnavailableError) return true;
  return (
    error instanceof ResponseError &&
    (error.code === ErrorCodes.PendingResponseRejected ||
      error.code === ErrorCodes.ConnectionInactive ||
      error.code === ErrorCodes.MessageWriteError)
  );
}

/** One line for the user: the daemon's own `error.message`, with the details that help act on it. */
export function describeError(error: unknown): string {
  if (error instanceof ResponseError) {
    const data = error.data as Record<string, unknown> | undefined;
    switch (error.code) {
      case ErrorCode.RequestCancelled:
        return 'Cancelled.';
      case ErrorCode.InputTooLong:
        // The daemon's message may already give the numbers ("... is 9050 tokens; the model takes at most 8192").
        if (data && typeof data.tokens === 'number' && typeof data.limit === 'number' && !error.message.includes(String(data.tokens))) {
          return `${error.message} (${data.tokens} tokens, the model takes ${data.limit})`;
        }
        return error.message;
      case ErrorCodes.PendingResponseRejected:
      case ErrorCodes.ConnectionInactive:
      case ErrorCodes.MessageWriteError:
        return 'The Ember daemon stopped before it answered; see "Ember: Show Log".';
      default:
        return error.message;
    }
  }
  if (error instanceof Error) return error.message;
  return String(error);
}
