/**
 * The report as CSV: one row per target and step, under column names that stay the same
 * from one version to the next (scripts read them). Latencies in microseconds.
 */
import * as fs from 'fs';
import { sendLag } from '../stats';
import type { BenchReport, StepResult, TargetReport } from '../types';
import { formatBatchSizes } from './table';

export const CSV_COLUMNS = [
  'target', 'description', 'load_kind', 'concurrency', 'request_rate', 'arrival',
  'throughput', 'latency_mean_us', 'latency_p50_us', 'latency_p90_us', 'latency_p95_us', 'latency_p99_us', 'latency_max_us',
  'chosen_percentile', 'latency_chosen_us', 'requests', 'errors', 'stable', 'windows',
  'throughput_min', 'throughput_max', 'p50_min_us', 'p50_max_us', 'p99_min_us', 'p99_max_us',
  'batch_sizes', 'queue_us', 'compute_input_us', 'compute_infer_us', 'compute_output_us',
  'cpu_us_per_request', 'peak_rss_bytes', 'late_sends', 'max_send_lag_us', 'best',
] as const;

/** One field: quoted when it holds a comma, a quote or a line break (quotes doubled), as RFC 4180. */
export function csvField(value: string | number | boolean | undefined): string {
  if (value === undefined || (typeof value === 'number' && !Number.isFinite(value))) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function row(target: TargetReport, step: StepResult, index: number, report: BenchReport): (string | number | boolean | undefined)[] {
  const l = step.latency;
  const lag = sendLag(step, report.settings.stabilityWindows);
  const b = step.breakdown;
  const values: Record<(typeof CSV_COLUMNS)[number], string | number | boolean | undefined> = {
    target: target.name,
    description: target.description,
    load_kind: step.load.kind,
    concurrency: step.load.kind === 'concurrency' ? step.load.concurrency : undefined,
    request_rate: step.load.kind === 'rate' ? step.load.rate : undefined,
    arrival: step.load.kind === 'rate' ? step.load.arrival : undefined,
    throughput: step.throughput,
    latency_mean_us: l.mean,
    latency_p50_us: l.p50,
    latency_p90_us: l.p90,
    latency_p95_us: l.p95,
    latency_p99_us: l.p99,
    latency_max_us: l.max,
    chosen_percentile: l.chosen?.percentile,
    latency_chosen_us: l.chosen?.value,
    requests: l.count,
    errors: step.errors,
    stable: step.stable,
    windows: step.windows.length,
    throughput_min: step.spread.throughput[0],
    throughput_max: step.spread.throughput[1],
    p50_min_us: step.spread.p50[0],
    p50_max_us: step.spread.p50[1],
    p99_min_us: step.spread.p99[0],
    p99_max_us: step.spread.p99[1],
    batch_sizes: step.batchSizes ? formatBatchSizes(step.batchSizes) : undefined,
    queue_us: b?.queueUs,
    compute_input_us: b?.computeInputUs,
    compute_infer_us: b?.computeInferUs,
    compute_output_us: b?.computeOutputUs,
    cpu_us_per_request: step.cpuUsPerRequest,
    peak_rss_bytes: step.peakRssBytes,
    late_sends: lag?.lateSends,
    max_send_lag_us: lag?.maxSendLagUs,
    best: target.best === undefined ? undefined : target.best.stepIndex === index,
  };
  return CSV_COLUMNS.map((c) => values[c]);
}

export function renderCsv(report: BenchReport): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const target of report.targets) {
    target.steps.forEach((step, i) => lines.push(row(target, step, i, report).map(csvField).join(',')));
  }
  return `${lines.join('\r\n')}\r\n`;
}

export async function writeCsvReport(report: BenchReport, file: string): Promise<void> {
  await fs.promises.writeFile(file, renderCsv(report));
}
