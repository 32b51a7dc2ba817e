/** Tables and verdicts of bench/load. */
import type { BatchDelta, CeilingPoint, KilnSettings } from './load-contenders';
import type { Measured } from './load-drive';
import { fmt } from './stats';

export interface KilnPoint extends Measured, BatchDelta {
  /** The latency target: configured queue delay + 2 × the batch's compute time, µs. */
  p99BoundUs: number;
}

export interface PointRow {
  callers: number;
  kiln: KilnPoint;
  ort: Measured;
  harness: CeilingPoint;
  /** Cores other processes used during the point (the machine is shared). */
  otherCores: number;
}

export interface OpenRow {
  /** Offered rate, req/s: half of onnxruntime-node's best closed-loop throughput. */
  rate: number;
  /** The sender with requests answered at once: its own delivery latency. */
  sender: Measured;
  kiln: Measured & BatchDelta;
  ort: Measured;
  otherCores: number;
}

export interface ModelResult {
  model: string;
  kiln: KilnSettings;
  scan: CeilingPoint[];
  points: PointRow[];
  open: OpenRow | undefined;
}

const rate = (x: number): string => (x >= 1000 ? `${(x / 1000).toFixed(1)} k` : x.toFixed(x >= 100 ? 0 : 1));
const ratio = (x: number): string => `${x.toFixed(2)}×`;
const lat = (m: Measured): string => `${fmt(m.p50Us)} / ${fmt(m.p99Us)}`;
const cpu = (us: number): string => (Number.isFinite(us) ? us.toFixed(1) : '-');
const cores = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '-');

/** The most frequent batch sizes as "size: share of requests". */
export function batchMix(sizes: Record<number, number>, top = 3): string {
  const rows = Object.entries(sizes).map(([s, n]) => ({ size: Number(s), requests: Number(s) * n }));
  const total = rows.reduce((a, r) => a + r.requests, 0);
  if (total === 0) return '-';
  rows.sort((a, b) => b.requests - a.requests);
  const shown = rows.slice(0, top).map((r) => `${r.size}: ${Math.round((100 * r.requests) / total)}%`);
  return shown.join(', ') + (rows.length > top ? ', …' : '');
}

export function describeSettings(k: KilnSettings): string {
  const preferred = k.preferredBatchSize.length ? `, preferredBatchSize [${k.preferredBatchSize.join(', ')}]` : '';
  return `maxBatchSize ${k.maxBatchSize}, maxQueueDelayMicroseconds ${k.maxQueueDelayUs}${preferred}, instances ${k.instances}`;
}

export function sweepTable(r: ModelResult): string {
  const head = '| callers | Kiln req/s | ort-node req/s | harness req/s (batch) | Kiln ÷ ort-node | Kiln ÷ harness | ' +
    'Kiln p50 / p99 | ort-node p50 / p99 | p99 bound | Kiln batch sizes (share of requests) | CPU µs/req Kiln / ort-node / harness | other load |';
  const sep = '|' + '---|'.repeat(12);
  const lines = r.points.map((p) => `| ${p.callers} | ${rate(p.kiln.throughput)} | ${rate(p.ort.throughput)} | ` +
    `${rate(p.harness.throughput)} (${p.harness.batch}) | ${ratio(p.kiln.throughput / p.ort.throughput)} | ` +
    `${(100 * p.kiln.throughput / p.harness.throughput).toFixed(0)}% | ${lat(p.kiln)} | ${lat(p.ort)} | ` +
    `${fmt(p.kiln.p99BoundUs)}${p.kiln.p99Us <= p.kiln.p99BoundUs ? '' : ' ✗'} | ${batchMix(p.kiln.batchSizes)} | ` +
    `${cpu(p.kiln.cpuUsPerRequest)} / ${cpu(p.ort.cpuUsPerRequest)} / ${cpu(p.harness.cpuUsPerInference)} | ${cores(p.otherCores)} |`);
  return [head, sep, ...lines].join('\n');
}

export function scanLine(r: ModelResult): string {
  return `harness scan (inferences/s by batch): ` + r.scan.map((s) => `b${s.batch} ${rate(s.throughput)}`).join(', ');
}

export function openTable(results: readonly ModelResult[]): string {
  const head = '| model | offered req/s | sender alone p50 / p99 | Kiln achieved | Kiln p50 / p99 | ort-node achieved | ort-node p50 / p99 | Kiln p99 ÷ ort-node p99 | Kiln batch sizes | CPU µs/req Kiln / ort-node | other load |';
  const sep = '|' + '---|'.repeat(11);
  const lines = results.filter((r) => r.open).map((r) => {
    const o = r.open as OpenRow;
    return `| ${r.model} | ${rate(o.rate)} | ${lat(o.sender)} | ${rate(o.kiln.throughput)} | ${lat(o.kiln)} | ${rate(o.ort.throughput)} | ${lat(o.ort)} | ` +
      `${ratio(o.kiln.p99Us / o.ort.p99Us)} | ${batchMix(o.kiln.batchSizes)} | ${cpu(o.kiln.cpuUsPerRequest)} / ${cpu(o.ort.cpuUsPerRequest)} | ${cores(o.otherCores)} |`;
  });
  return [head, sep, ...lines].join('\n');
}

const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');

export function verdicts(results: readonly ModelResult[], callers: number): string[] {
  const out: string[] = [];
  for (const r of results) {
    const p = r.points.find((x) => x.callers === callers);
    if (p) {
      const vsOrt = p.kiln.throughput / p.ort.throughput;
      const vsHarness = p.kiln.throughput / p.harness.throughput;
      if (r.model === 'mlp') out.push(`${r.model} @${callers} callers: Kiln = ${vsOrt.toFixed(1)}× onnxruntime-node (target ≥ 10×): ${verdict(vsOrt >= 10)}`);
      out.push(`${r.model} @${callers} callers: Kiln = ${(100 * vsHarness).toFixed(0)}% of the harness at its best batch ${p.harness.batch} (target ≥ 85%): ${verdict(vsHarness >= 0.85)}`);
    }
    const over = r.points.filter((x) => x.kiln.p99Us > x.kiln.p99BoundUs);
    out.push(`${r.model}: Kiln p99 ≤ queue delay + 2 × batch compute at ${r.points.length - over.length} of ${r.points.length} points: ` +
      (over.length ? 'MISSED at ' + over.map((x) => `${x.callers} callers (${fmt(x.kiln.p99Us)} > ${fmt(x.kiln.p99BoundUs)})`).join(', ') : 'met'));
    if (r.open) {
      const q = r.open.kiln.p99Us / r.open.ort.p99Us;
      out.push(`${r.model} open loop @${rate(r.open.rate)} req/s: Kiln p99 = ${q.toFixed(2)}× onnxruntime-node's (target ≤ 0.3×): ${verdict(q <= 0.3)}`);
    }
  }
  return out;
}

export interface TuneRow {
  model: string;
  callers: number;
  kiln: KilnSettings;
  result: KilnPoint;
}

export function tuneTable(rows: readonly TuneRow[]): string {
  const head = '| model | callers | maxBatchSize | preferred | delay µs | instances | req/s | p50 / p99 | p99 bound | batch sizes | CPU µs/req |';
  const sep = '|' + '---|'.repeat(11);
  const lines = rows.map((t) => `| ${t.model} | ${t.callers} | ${t.kiln.maxBatchSize} | [${t.kiln.preferredBatchSize.join(', ')}] | ` +
    `${t.kiln.maxQueueDelayUs} | ${t.kiln.instances} | ${rate(t.result.throughput)} | ${lat(t.result)} | ${fmt(t.result.p99BoundUs)} | ` +
    `${batchMix(t.result.batchSizes)} | ${cpu(t.result.cpuUsPerRequest)} |`);
  return [head, sep, ...lines].join('\n');
}
