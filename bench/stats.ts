/** Summaries of benchmark samples taken in rounds. */
import { formatMicroseconds, quantile } from '../lib/latency';

export { quantile };
export const fmt = formatMicroseconds;

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
