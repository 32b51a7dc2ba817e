/** Order statistics for benchmark samples. */

export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[i];
}

export interface Summary {
  n: number;
  median: number;
  p99: number;
  /** Lowest and highest median of the individual rounds: the run-to-run spread. */
  roundMin: number;
  roundMax: number;
}

export function summarize(rounds: readonly number[][]): Summary {
  const all = rounds.flat().sort((a, b) => a - b);
  const medians = rounds.map((r) => quantile([...r].sort((a, b) => a - b), 0.5));
  return {
    n: all.length,
    median: quantile(all, 0.5),
    p99: quantile(all, 0.99),
    roundMin: Math.min(...medians),
    roundMax: Math.max(...medians),
  };
}

export function fmt(us: number): string {
  if (!Number.isFinite(us)) return '-';
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} µs`;
}
