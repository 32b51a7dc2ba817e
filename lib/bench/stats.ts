/**
 * The statistics of `kiln bench`: latency percentiles (nearest rank, as lib/latency.ts),
 * throughput of a window, perf_analyzer's stability rule and the summary of a step.
 */
import { quantile } from '../latency';
import type { LatencySummary, Load, ServerCounters, StepResult, WindowResult } from './types';

/** Percentiles every summary carries; another chosen with `--percentile` is added as `chosen`. */
const REPORTED = [50, 90, 95, 99] as const;

/** The `p`th percentile (0..100) of ascending `sorted` samples, nearest rank; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  return quantile(sorted, p / 100);
}

export function summarizeLatency(latenciesUs: readonly number[], chosen?: number): LatencySummary {
  const sorted = Float64Array.from(latenciesUs).sort();
  const list = Array.from(sorted);
  let sum = 0;
  for (const v of list) sum += v;
  const summary: LatencySummary = {
    count: list.length,
    mean: list.length ? sum / list.length : NaN,
    p50: percentile(list, 50),
    p90: percentile(list, 90),
    p95: percentile(list, 95),
    p99: percentile(list, 99),
    max: list.length ? list[list.length - 1] : NaN,
  };
  if (chosen !== undefined && chosen > 0 && !(REPORTED as readonly number[]).includes(chosen)) {
    summary.chosen = { percentile: chosen, value: percentile(list, chosen) };
  }
  return summary;
}

/**
 * The latency a percentile names in a summary: p50/p90/p95/p99, the chosen one, or the mean
 * for 0 (no percentile chosen: perf_analyzer then judges stability on the mean).
 */
export function latencyAt(summary: LatencySummary, p: number): number {
  if (p === 0) return summary.mean;
  const named: Record<number, number> = { 50: summary.p50, 90: summary.p90, 95: summary.p95, 99: summary.p99 };
  if (p in named) return named[p];
  if (summary.chosen?.percentile === p) return summary.chosen.value;
  throw new RangeError(`the summary holds no p${p}`);
}

/** Completed requests per second of a window. */
export function windowThroughput(w: WindowResult): number {
  return w.durationUs > 0 ? w.latenciesUs.length / (w.durationUs / 1e6) : 0;
}

export interface StabilitySettings {
  /** How many consecutive windows must agree (perf_analyzer: 3). */
  stabilityWindows: number;
  /** Their tolerance around the average, in percent (perf_analyzer: 10). */
  stabilityPercentage: number;
  /** The percentile whose latency must agree; 0: the mean latency. */
  percentile: number;
}

/** Whether every value lies within ±`pct`% of their average. */
export function withinTolerance(values: readonly number[], pct: number): boolean {
  if (values.some((v) => !Number.isFinite(v))) return false;
  const avg = values.reduce((a, b) => a + b, 0) / values.length;
  const band = (Math.abs(avg) * pct) / 100;
  return values.every((v) => Math.abs(v - avg) <= band);
}

/**
 * perf_analyzer's rule: the last `stabilityWindows` windows are stable when their throughputs
 * and their latencies (the chosen percentile, else the mean) each lie within ±tolerance of
 * their average.
 */
export function isStable(windows: readonly WindowResult[], s: StabilitySettings): boolean {
  if (windows.length < s.stabilityWindows) return false;
  const last = windows.slice(-s.stabilityWindows);
  const latencies = last.map((w) => latencyAt(summarizeLatency(w.latenciesUs, s.percentile), s.percentile));
  return withinTolerance(last.map(windowThroughput), s.stabilityPercentage) && withinTolerance(latencies, s.stabilityPercentage);
}

/** Server counters of several windows added up (undefined when none has them). */
export function addCounters(list: readonly (ServerCounters | undefined)[]): ServerCounters | undefined {
  const present = list.filter((c): c is ServerCounters => c !== undefined);
  if (!present.length) return undefined;
  const total: ServerCounters = { requests: 0, inferenceCount: 0, executionCount: 0, queueUs: 0, computeInputUs: 0, computeInferUs: 0, computeOutputUs: 0 };
  for (const c of present) {
    total.requests += c.requests;
    total.inferenceCount += c.inferenceCount;
    total.executionCount += c.executionCount;
    total.queueUs += c.queueUs;
    total.computeInputUs += c.computeInputUs;
    total.computeInferUs += c.computeInferUs;
    total.computeOutputUs += c.computeOutputUs;
    if (c.batchSizes) {
      total.batchSizes ??= {};
      for (const [size, n] of Object.entries(c.batchSizes)) total.batchSizes[Number(size)] = (total.batchSizes[Number(size)] ?? 0) + n;
    }
  }
  return total;
}

/** `after - before` of cumulative counters: what one window added. */
export function diffCounters(after: ServerCounters, before: ServerCounters): ServerCounters {
  const out: ServerCounters = {
    requests: after.requests - before.requests,
    inferenceCount: after.inferenceCount - before.inferenceCount,
    executionCount: after.executionCount - before.executionCount,
    queueUs: after.queueUs - before.queueUs,
    computeInputUs: after.computeInputUs - before.computeInputUs,
    computeInferUs: after.computeInferUs - before.computeInferUs,
    computeOutputUs: after.computeOutputUs - before.computeOutputUs,
  };
  if (after.batchSizes) {
    const sizes: Record<number, number> = {};
    for (const [size, n] of Object.entries(after.batchSizes)) {
      const d = n - (before.batchSizes?.[Number(size)] ?? 0);
      if (d > 0) sizes[Number(size)] = d;
    }
    out.batchSizes = sizes;
  }
  return out;
}

const range = (values: readonly number[]): [number, number] => [Math.min(...values), Math.max(...values)];

/**
 * A step from its windows. Throughput, latency, spread, batch sizes, breakdown and CPU time
 * cover the windows the stability rule judged (the last `stabilityWindows`, or all when
 * fewer were taken); errors count every window, so none is hidden.
 */
export function summarizeStep(load: Load, windows: readonly WindowResult[], s: StabilitySettings): StepResult {
  if (!windows.length) throw new RangeError('a step needs at least one window');
  const accepted = windows.slice(-s.stabilityWindows);
  const latencies = accepted.flatMap((w) => w.latenciesUs);
  const durationUs = accepted.reduce((a, w) => a + w.durationUs, 0);
  const perWindow = accepted.map((w) => summarizeLatency(w.latenciesUs));
  const step: StepResult = {
    load,
    stable: isStable(windows, s),
    windows: [...windows],
    throughput: durationUs > 0 ? latencies.length / (durationUs / 1e6) : 0,
    latency: summarizeLatency(latencies, s.percentile),
    spread: { throughput: range(accepted.map(windowThroughput)), p50: range(perWindow.map((l) => l.p50)), p99: range(perWindow.map((l) => l.p99)) },
    errors: windows.reduce((a, w) => a + w.errors, 0),
  };
  const server = addCounters(accepted.map((w) => w.server));
  if (server) {
    if (server.batchSizes && Object.keys(server.batchSizes).length) step.batchSizes = server.batchSizes;
    if (server.requests > 0) {
      step.breakdown = {
        queueUs: server.queueUs / server.requests,
        computeInputUs: server.computeInputUs / server.requests,
        computeInferUs: server.computeInferUs / server.requests,
        computeOutputUs: server.computeOutputUs / server.requests,
      };
    }
  }
  const cpu = accepted.filter((w) => w.cpuUs !== undefined);
  const requests = cpu.reduce((a, w) => a + w.latenciesUs.length + w.errors, 0);
  if (cpu.length && requests > 0) step.cpuUsPerRequest = cpu.reduce((a, w) => a + (w.cpuUs as number), 0) / requests;
  const rss = windows.map((w) => w.peakRssBytes).filter((v): v is number => v !== undefined);
  if (rss.length) step.peakRssBytes = Math.max(...rss);
  return step;
}

/** Late sends and the largest send lag over a step's judged windows (open loop only). */
export function sendLag(step: StepResult, stabilityWindows: number): { lateSends: number; maxSendLagUs: number } | undefined {
  const open = step.windows.slice(-stabilityWindows).filter((w) => w.lateSends !== undefined);
  if (!open.length) return undefined;
  return { lateSends: open.reduce((a, w) => a + (w.lateSends ?? 0), 0), maxSendLagUs: Math.max(...open.map((w) => w.maxSendLagUs ?? 0)) };
}
