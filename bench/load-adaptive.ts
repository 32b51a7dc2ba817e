/**
 * bench/load --adaptive: adaptive batching (maxLatencyMs) against fixed queue delays, per
 * model, for targets of 2x, 5x and 20x the single-request latency: the median latency of
 * requests arriving one at a time (Poisson, 5% of the closed-loop maximum) at an idle model
 * without a target. That is ORT's compute time plus waking Kiln's sleeping threads; a target
 * below it is one no batching policy can meet, so the compute time alone is reported beside.
 *
 * 1. Fixed delays {0, T/4, T/2} under open-loop Poisson load on a ladder of rates (fractions
 *    of the closed-loop maximum), interleaved per rate: the highest rate at which any of them
 *    keeps p99 <= T is the model's capacity at that target, and that configuration is the
 *    best fixed one.
 * 2. Adaptive batching at 10%..150% of that capacity, each rate interleaved with the best
 *    fixed configuration on the same schedule after half a second at that rate: p99 of
 *    served requests, refusals, served rate.
 * 3. Light load: one caller sending back to back, with and without the target, in
 *    alternating rounds: p50 with the target against p50 without.
 * Latency runs from the call to infer() (the sender's own lag is the same for every
 * configuration and not the batcher's doing); refused requests are counted apart.
 */
import { closedLoop, openLoop, poissonSchedule, summarize, type Measured, type Sample } from './load-drive';
import { KilnContender, type KilnSettings, type LoadCase } from './load-contenders';

export interface AdaptiveOptions {
  intra: number;
  /** Seconds per measured point (at least MIN_REQUESTS requests). */
  seconds: number;
  /** Multiples of the single-request latency to use as targets. */
  multiples: number[];
}

interface FixedPoint {
  rate: number;
  delayUs: number;
  result: Measured;
}

interface AdaptiveRow {
  load: number; // fraction of capacity
  rate: number;
  /** Both rounds pooled. */
  adaptive: Measured;
  fixed: Measured;
  /** p99 of each round alone, µs: the spread. */
  adaptiveRounds: number[];
  fixedRounds: number[];
}

export interface TargetResult {
  multiple: number;
  targetMs: number;
  /** Highest offered rate at which a fixed delay kept p99 within the target (0: none did). */
  capacity: number;
  /** The lowest p99 any fixed delay reached on the ladder, ms: what the machine allows. */
  floorMs: number;
  bestDelayUs: number;
  ladder: FixedPoint[];
  rows: AdaptiveRow[];
  light: { without: Measured; with: Measured };
}

export interface AdaptiveResult {
  model: string;
  settings: KilnSettings;
  /** ORT's compute time of a batch of one, ms. */
  computeMs: number;
  /** Median latency of single requests arriving at an idle model, ms: the targets' unit. */
  singleMs: number;
  closedMax: number;
  targets: TargetResult[];
}

const MIN_REQUESTS = 400;
/** Rounds per adaptive point (each at least MIN_REQUESTS / ROUNDS requests). */
const ROUNDS = 2;
/** Open-loop time at a point's rate before it is measured. */
const WARM_SECONDS = 0.5;
const LADDER = [0.05, 0.1, 0.15, 0.25, 0.35, 0.5, 0.65, 0.8, 1];
const LOADS = [0.1, 0.25, 0.5, 0.65, 0.8, 1, 1.5];
const CALLERS = 64;
/** Where no fixed delay meets a target, the loads are shares of this share of the closed-loop maximum. */
const NO_CAPACITY_BASE = 0.25;
const log = (s: string): void => void process.stderr.write(s + '\n');

/** Two contenders in the order of round `round`: A B, then B A, and so on. */
const inTurn = <const T extends string>(round: number, a: T, b: T): [T, T] => (round % 2 === 0 ? [a, b] : [b, a]);

async function open(k: KilnContender, rate: number, seconds: number, seed: number, minRequests = MIN_REQUESTS): Promise<Sample> {
  const schedule = poissonSchedule(rate, Math.max(seconds, minRequests / rate), seed);
  return openLoop(k.infer, schedule, CALLERS, 'call');
}

/** A Kiln model for one configuration of a case, warmed up. */
async function contender(c: LoadCase, o: AdaptiveOptions, inputs: Float32Array[], k: KilnSettings): Promise<KilnContender> {
  const kiln = await KilnContender.create(c, o.intra, inputs, k);
  await closedLoop(kiln.infer, 8, 0.3);
  return kiln;
}

async function forTarget(c: LoadCase, o: AdaptiveOptions, inputs: Float32Array[], base: KilnSettings, closedMax: number, singleMs: number, multiple: number): Promise<TargetResult> {
  const targetMs = multiple * singleMs;
  const delays = [0, Math.round((targetMs * 1000) / 4), Math.round((targetMs * 1000) / 2)];
  const fixed = await Promise.all(delays.map((d) => contender(c, o, inputs, { ...base, maxQueueDelayUs: d })));
  const adaptive = await contender(c, o, inputs, { ...base, maxQueueDelayUs: 0, maxLatencyMs: targetMs });
  try {
    const ladder: FixedPoint[] = [];
    const alive = new Set(delays.keys());
    for (const [step, share] of LADDER.entries()) {
      const rate = share * closedMax;
      for (const i of [...alive].sort((a, b) => ((a + step) % 3) - ((b + step) % 3))) {
        const result = summarize([await open(fixed[i], rate, o.seconds, 0xad0 + step)]);
        ladder.push({ rate, delayUs: delays[i], result });
        // Past three times the target, higher rates only queue more.
        if (result.p99Us > 3000 * targetMs) alive.delete(i);
      }
    }
    const within = ladder.filter((p) => p.result.p99Us <= 1000 * targetMs);
    const best = within.reduce<FixedPoint | undefined>((a, p) => (!a || p.rate > a.rate ? p : a), undefined);
    const capacity = best?.rate ?? 0;
    const floorMs = Math.min(...ladder.map((p) => p.result.p99Us)) / 1000;
    const bestDelayUs = best?.delayUs ?? 0;
    log(`${c.name} T=${targetMs.toFixed(2)} ms (${multiple}x): capacity ${capacity.toFixed(0)}/s with delay ${bestDelayUs} µs`);
    const rows: AdaptiveRow[] = [];
    const bestFixed = fixed[delays.indexOf(bestDelayUs)];
    for (const [step, load] of LOADS.entries()) {
      const rate = load * (capacity || NO_CAPACITY_BASE * closedMax);
      // Each configuration settles at the new rate first (the policy learns the larger batches
      // and the arrival rate; measured apart, in docs/load.md), then two rounds, A F then F A,
      // each on its own schedule shared by both.
      for (const k of [adaptive, bestFixed]) await open(k, rate, WARM_SECONDS, 0xa11 + step, 0);
      const samples: Record<'adaptive' | 'fixed', Sample[]> = { adaptive: [], fixed: [] };
      for (let round = 0; round < ROUNDS; round++) {
        for (const which of inTurn(round, 'adaptive', 'fixed')) {
          samples[which].push(await open(which === 'adaptive' ? adaptive : bestFixed, rate, o.seconds / ROUNDS, 0xbe0 + 16 * step + round, MIN_REQUESTS / ROUNDS));
        }
      }
      const p99Of = (x: Sample): number => summarize([x]).p99Us;
      const row = {
        load, rate, adaptive: summarize(samples.adaptive), fixed: summarize(samples.fixed),
        adaptiveRounds: samples.adaptive.map(p99Of), fixedRounds: samples.fixed.map(p99Of),
      };
      rows.push(row);
      log(`  ${(load * 100).toFixed(0)}% ${rate.toFixed(0)}/s: adaptive p99 ${(row.adaptive.p99Us / 1000).toFixed(2)} ms, ` +
        `${row.adaptive.throughput.toFixed(0)}/s served, ${row.adaptive.refused} refused; fixed p99 ${(row.fixed.p99Us / 1000).toFixed(2)} ms`);
    }
    const light: Record<'without' | 'with', Sample[]> = { without: [], with: [] };
    for (let round = 0; round < 4; round++) {
      for (const which of inTurn(round, 'without', 'with')) {
        light[which].push(await closedLoop((which === 'with' ? adaptive : fixed[0]).infer, 1, o.seconds / 2));
      }
    }
    return {
      multiple, targetMs, capacity, floorMs, bestDelayUs, ladder, rows,
      light: { without: summarize(light.without), with: summarize(light.with) },
    };
  } finally {
    for (const k of [...fixed, adaptive]) await k.close();
  }
}

export async function runAdaptive(c: LoadCase, o: AdaptiveOptions, inputs: Float32Array[]): Promise<AdaptiveResult> {
  const settings = { ...c.kiln, maxQueueDelayUs: 0 };
  const plain = await contender(c, o, inputs, settings);
  let singleMs: number;
  let closedMax: number;
  let computeMs: number;
  try {
    closedMax = summarize([await closedLoop(plain.infer, CALLERS, o.seconds)]).throughput;
    const before = plain.stats();
    singleMs = summarize([await open(plain, LADDER[0] * closedMax, o.seconds, 0x51)]).p50Us / 1000;
    const d = KilnContender.delta(before, plain.stats());
    computeMs = (d.batchSizes[1] ?? 0) > 0 ? d.computeUsPerBatch / 1000 : NaN;
  } finally {
    await plain.close();
  }
  log(`${c.name}: idle single-request p50 ${singleMs.toFixed(3)} ms (compute ${computeMs.toFixed(3)} ms), ${CALLERS} callers ${closedMax.toFixed(0)}/s`);
  const targets: TargetResult[] = [];
  for (const m of o.multiples) targets.push(await forTarget(c, o, inputs, settings, closedMax, singleMs, m));
  return { model: c.name, settings, computeMs, singleMs, closedMax, targets };
}

const ms = (us: number): string => (us / 1000).toFixed(2);

/** Markdown: per model and target, the adaptive rows beside the best fixed delay, and verdicts. */
export function adaptiveReport(results: readonly AdaptiveResult[]): string {
  const out: string[] = [];
  for (const r of results) {
    out.push(`### ${r.model}`, '', `Single requests at an idle model, no target: p50 ${r.singleMs.toFixed(3)} ms (ORT compute ${r.computeMs.toFixed(3)} ms); ` +
      `${CALLERS} callers closed loop: ${r.closedMax.toFixed(0)} req/s. ` +
      `maxBatchSize ${r.settings.maxBatchSize}, instances ${r.settings.instances}.`, '');
    for (const t of r.targets) {
      const capacity = t.capacity > 0
        ? `capacity ${t.capacity.toFixed(0)} req/s (best fixed delay ${t.bestDelayUs} µs keeps p99 within the target up to there)`
        : `no fixed delay keeps p99 within the target at any rate tried (lowest p99 ${t.floorMs.toFixed(2)} ms), so the loads below are ` +
          `shares of ${(NO_CAPACITY_BASE * r.closedMax).toFixed(0)} req/s`;
      out.push(`**Target ${t.targetMs.toFixed(2)} ms (${t.multiple}×)**: ${capacity}`, '',
        '| load | offered req/s | adaptive p50 / p99 ms (rounds\' p99) | adaptive served req/s | refused | fixed p50 / p99 ms (rounds\' p99) | fixed served req/s |',
        '|---|---|---|---|---|---|---|');
      const spread = (rounds: number[]): string => rounds.map(ms).join(', ');
      for (const row of t.rows) {
        out.push(`| ${(row.load * 100).toFixed(0)}% | ${row.rate.toFixed(0)} | ${ms(row.adaptive.p50Us)} / ${ms(row.adaptive.p99Us)} (${spread(row.adaptiveRounds)}) | ` +
          `${row.adaptive.throughput.toFixed(0)} | ${row.adaptive.refused} of ${row.adaptive.requests + row.adaptive.refused} | ` +
          `${ms(row.fixed.p50Us)} / ${ms(row.fixed.p99Us)} (${spread(row.fixedRounds)}) | ${row.fixed.throughput.toFixed(0)} |`);
      }
      out.push('', ...verdicts(t).map((v) => `- ${v}`), '');
    }
  }
  return out.join('\n');
}

function verdicts(t: TargetResult): string[] {
  const bound = 1.05 * t.targetMs * 1000;
  const over = t.rows.filter((r) => r.adaptive.p99Us > bound);
  const early = t.rows.filter((r) => r.load < 0.8 && r.adaptive.refused > 0);
  const heavy = t.rows.filter((r) => r.load >= 1);
  const served = Math.max(...heavy.map((r) => r.adaptive.throughput));
  const light = t.light.with.p50Us / t.light.without.p50Us;
  return [
    `p99 of served requests ≤ target + 5% at every load: ${over.length === 0 ? 'met' : `missed at ${over.map((r) => `${(r.load * 100).toFixed(0)}% (${ms(r.adaptive.p99Us)} ms)`).join(', ')}`}`,
    `no refusal below 80% of capacity: ${early.length === 0 ? 'met' : `missed at ${early.map((r) => `${(r.load * 100).toFixed(0)}% (${r.adaptive.refused})`).join(', ')}`}`,
    t.capacity > 0
      ? `served at ≥ 100% load within 2% of the best fixed delay's capacity (${t.capacity.toFixed(0)}/s) or above: ${served >= 0.98 * t.capacity ? 'met' : 'missed'} (${served.toFixed(0)}/s)`
      : 'throughput against the best fixed delay: no fixed delay meets this target',
    `one caller: p50 ${ms(t.light.with.p50Us)} ms with the target, ${ms(t.light.without.p50Us)} ms without (${light.toFixed(2)}×), ` +
      `${t.light.with.refused} refused: ${light <= 1.1 ? 'met' : 'missed'}`,
  ];
}
