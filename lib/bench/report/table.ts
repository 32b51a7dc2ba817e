/** The terminal report of `kiln bench`: a table per target, then the comparisons. */
import { formatMicroseconds } from '../../latency';
import { formatBytes, table } from '../../cli/format';
import { sendLag } from '../stats';
import type { BenchReport, Comparison, Load, StepResult, TargetReport } from '../types';

export function formatLoad(load: Load): string {
  return load.kind === 'concurrency' ? `concurrency ${load.concurrency}` : `rate ${load.rate}/s ${load.arrival}`;
}

/** "1:120 2:31" (executions by batch size). */
export function formatBatchSizes(sizes: Record<number, number> | undefined): string {
  if (!sizes) return '-';
  return Object.entries(sizes).sort(([a], [b]) => Number(a) - Number(b)).map(([size, n]) => `${size}:${n}`).join(' ') || '-';
}

/**
 * The batch sizes in a terminal column: the list while it is short, else the mean rows per
 * execution and the largest batch (the whole distribution is in the JSON, CSV and HTML).
 */
function batchColumn(sizes: Record<number, number> | undefined): string {
  const list = formatBatchSizes(sizes);
  if (!sizes || list.length <= 24) return list;
  let executions = 0;
  let rows = 0;
  let largest = 0;
  for (const [size, n] of Object.entries(sizes)) {
    executions += n;
    rows += Number(size) * n;
    largest = Math.max(largest, Number(size));
  }
  return `mean ${(rows / executions).toFixed(1)}, max ${largest}`;
}

const us = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '-' : formatMicroseconds(v));
const times = (r: number): string => (Number.isFinite(r) ? `${r.toFixed(2)}x` : '-');

function breakdown(step: StepResult): string {
  const b = step.breakdown;
  if (!b) return '-';
  return [b.queueUs, b.computeInputUs, b.computeInferUs, b.computeOutputUs].map((v) => v.toFixed(0)).join('/') + ' µs';
}

function stepRow(step: StepResult, i: number, target: TargetReport, report: BenchReport): string[] {
  const chosen = report.settings.percentile;
  const lag = sendLag(step, report.settings.stabilityWindows);
  const best = target.best?.stepIndex === i ? ' *' : '';
  const row = [
    formatLoad(step.load) + best,
    step.throughput.toFixed(1),
    us(step.latency.p50), us(step.latency.p90), us(step.latency.p95), us(step.latency.p99), us(step.latency.max),
  ];
  if (step.latency.chosen) row.push(us(step.latency.chosen.value));
  else if (chosen > 0 && ![50, 90, 95, 99].includes(chosen)) row.push('-');
  row.push(
    `${(step.spread.throughput[0]).toFixed(0)}-${(step.spread.throughput[1]).toFixed(0)}`,
    String(step.errors),
    step.stable ? 'yes' : `no (${step.windows.length})`,
    batchColumn(step.batchSizes),
    breakdown(step),
    us(step.cpuUsPerRequest),
    step.peakRssBytes === undefined ? '-' : formatBytes(step.peakRssBytes),
    lag ? `${lag.lateSends} (max ${us(lag.maxSendLagUs)})` : '-',
  );
  return row;
}

function targetTable(target: TargetReport, report: BenchReport, latencyBoundMs: number | undefined): string {
  const chosen = report.settings.percentile;
  const header = ['load', 'infer/s', 'p50', 'p90', 'p95', 'p99', 'max'];
  if (chosen > 0 && ![50, 90, 95, 99].includes(chosen)) header.push(`p${chosen}`);
  header.push('infer/s range', 'errors', 'stable', 'batch sizes', 'queue/in/infer/out', 'CPU/req', 'peak RSS', 'late sends');
  const rows = target.steps.map((s, i) => stepRow(s, i, target, report));
  // Columns this target has nothing for (no batcher, no open loop) are left out.
  const keep = header.map((_, c) => c < 7 || rows.some((r) => r[c] !== '-'));
  let out = `${target.name}: ${target.description}\n`;
  out += table([header, ...rows].map((r) => r.filter((_, c) => keep[c])));
  if (target.best) {
    const step = target.steps[target.best.stepIndex];
    out += `  * best under ${target.best.boundMs} ms (p${chosen || 99}): ${formatLoad(step.load)}, ${step.throughput.toFixed(1)} infer/s\n`;
  } else if (latencyBoundMs !== undefined) {
    out += `  no step met the bound of ${latencyBoundMs} ms (p${chosen || 99})\n`;
  }
  const messages = [...new Set(target.steps.flatMap((s) => s.windows.flatMap((w) => w.errorMessages)))];
  if (messages.length) out += `  errors: ${messages.join('; ')}\n`;
  if (target.check) {
    const c = target.check;
    out += `  check: ${c.compared} outputs compared with the reference, ${c.mismatches} mismatched, largest difference ${c.maxAbsError.toPrecision(3)}\n`;
  }
  return out;
}

function comparisonTable(comparisons: readonly Comparison[]): string {
  let out = '';
  const pairs = [...new Set(comparisons.map((c) => `${c.base}\u0000${c.other}`))];
  for (const pair of pairs) {
    const [base, other] = pair.split('\u0000');
    const rows = comparisons.filter((c) => c.base === base && c.other === other);
    out += `${other} ÷ ${base} (latency above 1x, throughput below 1x: ${base} did better)\n`;
    out += table([
      ['load', 'p50', 'p99', 'infer/s'],
      ...rows.map((c) => [formatLoad(c.load), times(c.p50Ratio), times(c.p99Ratio), times(c.throughputRatio)]),
    ]);
  }
  return out;
}

/** Targets that run in kiln bench's own process. */
const IN_PROCESS = new Set(['kiln', 'kiln-batcher', 'onnxruntime-node']);

export const RESOURCE_NOTE =
  'CPU/req: CPU time of the process running the target during its own windows, per request sent (open loop: the sender\'s wait included).\n' +
  'peak RSS: the highest resident memory of that process so far; kiln, kiln-batcher and onnxruntime-node share this process, so theirs is the process\'s, not one target\'s.';

/** The whole report as text for a terminal; `latencyBoundMs`: the bound searched, if any. */
export function renderTable(report: BenchReport, latencyBoundMs?: number): string {
  const s = report.settings;
  const window = s.windowMs !== undefined ? `${s.windowMs} ms windows` : `windows of ${s.windowRequests} requests`;
  let out = `kiln bench: ${window}, stable when ${s.stabilityWindows} agree within ${s.stabilityPercentage}% (at most ${s.maxWindows}), ` +
    `${s.warmupRequests} warm-up requests; ${report.machine.cpus} CPUs (${report.machine.cpuModel})\n`;
  if (report.model) out += `model ${report.model.path}: ${report.model.inputs.map((i) => `${i.name} ${i.type} [${i.shape.join(',')}]`).join(', ')}\n`;
  for (const target of report.targets) out += `\n${targetTable(target, report, latencyBoundMs)}`;
  if (report.targets.some((t) => IN_PROCESS.has(t.name) && t.steps.some((st) => st.peakRssBytes !== undefined))) out += `\n${RESOURCE_NOTE}\n`;
  if (report.comparisons.length) out += `\n${comparisonTable(report.comparisons)}`;
  return out;
}
