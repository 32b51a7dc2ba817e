// Latency of a model before and after a model command, measured side by side.
import * as optimize from '../optimize';
import type { SessionOptions } from '../options';
import { formatMicroseconds, quantile } from '../latency';
import { Session, type Feeds, type ValueInfo } from '../session';
import type { Tensor } from '../tensor';
import { ratio } from './format';

interface Latency {
  before: number[];
  after: number[];
}

/**
 * Per-run latency (µs) of two models on the same inputs, measured in alternating rounds (the
 * order flips every round) so that drift on a shared machine hits both alike. Without
 * `calls`, as many as fit in about two seconds (20 to 5000 each).
 */
async function compareLatency(before: Uint8Array, after: Uint8Array, feeds: [Feeds, Feeds], options: SessionOptions, calls?: number): Promise<Latency> {
  const a = await Session.create(before, options);
  try {
    const b = await Session.create(after, options);
    try {
      const time = (s: Session, f: Feeds): number => {
        const t0 = process.hrtime.bigint();
        s.runSync(f);
        return Number(process.hrtime.bigint() - t0) / 1000;
      };
      let warm = [0, 0];
      for (let i = 0; i < 10; i++) warm = [time(a, feeds[0]), time(b, feeds[1])];
      const n = calls ?? Math.max(20, Math.min(5000, Math.floor(2e6 / Math.max(1, warm[0] + warm[1]))));
      const round = Math.max(1, Math.min(50, Math.floor(n / 10)));
      const out: Latency = { before: [], after: [] };
      for (let r = 0; out.before.length < n; r++) {
        const k = Math.min(round, n - out.before.length);
        const order: [Session, Feeds, number[]][] = [[a, feeds[0], out.before], [b, feeds[1], out.after]];
        if (r % 2) order.reverse();
        for (const [s, f, list] of order) for (let i = 0; i < k; i++) list.push(time(s, f));
      }
      return out;
    } finally {
      await b.dispose();
    }
  } finally {
    await a.dispose();
  }
}

function latencyRows(l: Latency): string[][] {
  const b = [...l.before].sort((x, y) => x - y);
  const a = [...l.after].sort((x, y) => x - y);
  const row = (label: string, q: number): string[] => [label, formatMicroseconds(quantile(b, q)), formatMicroseconds(quantile(a, q)), ratio(quantile(a, q), quantile(b, q))];
  return [row(`latency median (${b.length} runs)`, 0.5), row('latency p99', 0.99)];
}

/**
 * Latency rows for a report (none when `calls` is 0), or one row saying why there are none:
 * the model is written by then, so a failure to time it is no failure of the command.
 */
export async function latencySection(before: Uint8Array, after: Uint8Array, feeds: () => [Feeds, Feeds], options: SessionOptions, calls: number | undefined): Promise<string[][]> {
  if (calls === 0) return [];
  try {
    return latencyRows(await compareLatency(before, after, feeds(), options, calls));
  } catch (e) {
    return [['latency', `not measured: ${(e as Error).message}`]];
  }
}

/** Whether a report's rows hold measured latency (rather than none, or why not). */
export const measured = (rows: readonly (readonly string[])[]): boolean => rows.some((r) => r[0].startsWith('latency') && r.length > 2);

/** Inputs for timing and their description: see latencyFeeds. */
export interface TimingInputs {
  feeds: Feeds;
  /** "x [1,3,48,320]" */
  shapes: string;
  /** Where they come from: "the first eval sample" */
  origin: string;
}

/**
 * The inputs latency is measured on: the shapes of the first real sample given, a symbolic
 * dim sized by --dim where given (else the sample's size, else 1); the sample's own data when
 * its shapes are kept, else seeded random data.
 */
export function latencyFeeds(inputs: readonly ValueInfo[], sample: Feeds | undefined, dims: Readonly<Record<string, number>>, source: string): TimingInputs {
  const feeds: Record<string, Tensor> = {};
  const described: string[] = [];
  let random = false;
  for (const input of inputs) {
    const real = sample?.[input.name] as Tensor | undefined;
    const shape = input.shape.map((d, i) => (typeof d === 'number' ? d : (dims[d] ?? real?.dims[i] ?? 1)));
    if (real && real.dims.every((d, i) => d === shape[i])) {
      feeds[input.name] = real;
    } else {
      feeds[input.name] = optimize.randomFeeds([{ ...input, shape }])[input.name];
      random = true;
    }
    described.push(`${input.name} [${shape.join(',')}]`);
  }
  const origin = !sample ? 'random data, symbolic dims from --dim, else 1' : random ? `random data, the first ${source} sample's shapes with --dim` : `the first ${source} sample`;
  return { feeds, shapes: described.join(', '), origin };
}
