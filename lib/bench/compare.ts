/** Targets side by side: at each load two targets both measured, how they compare. */
import type { Comparison, Load, StepResult, TargetReport } from './types';

/** Whether two loads are the same load (kind, value and, for rates, arrivals). */
export function sameLoad(a: Load, b: Load): boolean {
  if (a.kind === 'concurrency' && b.kind === 'concurrency') return a.concurrency === b.concurrency;
  if (a.kind === 'rate' && b.kind === 'rate') return a.rate === b.rate && a.arrival === b.arrival;
  return false;
}

/**
 * Every other target against the first (the base) at every load both measured, each ratio
 * other ÷ base: a latency ratio above 1 and a throughput ratio below 1 say the base did better.
 */
export function compareTargets(targets: readonly TargetReport[]): Comparison[] {
  const [base, ...others] = targets;
  if (!base) return [];
  const out: Comparison[] = [];
  for (const other of others) {
    for (const b of base.steps) {
      const o: StepResult | undefined = other.steps.find((s) => sameLoad(s.load, b.load));
      if (!o) continue;
      out.push({
        base: base.name,
        other: other.name,
        load: b.load,
        p50Ratio: o.latency.p50 / b.latency.p50,
        p99Ratio: o.latency.p99 / b.latency.p99,
        throughputRatio: o.throughput / b.throughput,
      });
    }
  }
  return out;
}
