/**
 * Where the prefix sent for an inline completion starts.
 *
 * At most `maxChars` before the cursor, on a line start, and rounded to `WINDOW_STEP` so that it
 * stays put while the user types: the daemon reuses the KV state of the prompt's unchanged start,
 * and a window that slid with every keystroke would change that start each time (PROTOCOL.md,
 * "Prefix reuse"). Pure, so it is tested in plain Node.
 */
export const WINDOW_STEP = 1024;

/**
 * @param cursor the cursor's offset in the document
 * @param lineStartAtOrAfter the offset of the first line start at or after an offset (or the
 *   offset itself when no line starts between it and the cursor)
 */
export function prefixStart(cursor: number, maxChars: number, lineStartAtOrAfter: (offset: number) => number): number {
  if (cursor <= maxChars) return 0;
  const earliest = cursor - maxChars;
  const stepped = earliest + ((WINDOW_STEP - (earliest % WINDOW_STEP)) % WINDOW_STEP);
  return Math.min(cursor, lineStartAtOrAfter(Math.min(stepped, cursor)));
}
