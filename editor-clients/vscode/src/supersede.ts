/**
 * Cancelling an inline completion request without losing what typing through could reuse.
 *
 * VS Code cancels a provider call at the next keystroke. Passing that on at once (`$/cancelRequest`)
 * would throw away a completion still being generated, though the request that keystroke leads to
 * carries the same `supersede` key: the daemon replaces the older request then, or, when the user
 * typed the start of its text, answers the newer one from it (typing through). So the cancel waits
 * for that newer request, and is sent only if none went out for the document meanwhile (the user
 * pressed Escape or moved away, and no request follows). No `vscode` import: tested in plain Node.
 */
import { CancellationToken, CancellationTokenSource, Disposable } from 'vscode-jsonrpc/node';

/** Extra wait past the debounce for the next request to be sent. */
export const CANCEL_GRACE_MS = 200;

export class SupersedingRequests {
  /** Document key -> how many requests were sent for it. */
  private readonly sent = new Map<string, number>();

  /**
   * A request for `key` is being sent: returns the token to send it with, and a `done()` to call
   * when it is answered. When `editorToken` is cancelled, the returned token is cancelled after
   * `delayMs` unless another request for `key` was sent meanwhile.
   */
  begin(key: string, editorToken: CancellationToken | undefined, delayMs: number): { token: CancellationToken; done: () => void } {
    const seq = (this.sent.get(key) ?? 0) + 1;
    this.sent.set(key, seq);
    const source = new CancellationTokenSource();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const listener: Disposable | undefined = editorToken?.onCancellationRequested(() => {
      timer = setTimeout(() => {
        if (this.sent.get(key) === seq) source.cancel();
      }, delayMs);
    });
    if (editorToken?.isCancellationRequested) source.cancel();
    return {
      token: source.token,
      done: () => {
        if (timer !== undefined) clearTimeout(timer);
        listener?.dispose();
        source.dispose();
      },
    };
  }
}
