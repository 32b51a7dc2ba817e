/** Order statistics and formatting of latencies, shared by `kiln bench` and bench/. */

/** The `q` quantile of ascending `sorted` samples (nearest rank); NaN when empty. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[i];
}

/** Microseconds as "12.3 µs" or "1.23 ms". */
export function formatMicroseconds(us: number): string {
  if (!Number.isFinite(us)) return '-';
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} µs`;
}
