// kiln bench's statistics and load generation on known samples: percentiles, the stability
// rule, step summaries, ranges, open-loop schedules, the step/sweep logic over scripted
// drivers, and the in-process load generator over scripted targets.
import { strict as assert } from 'assert';
import { compareTargets } from '../lib/bench/compare';
import { targetDriver } from '../lib/bench/loadgen';
import { renderCsv, csvField, CSV_COLUMNS } from '../lib/bench/report/csv';
import { measureStep, measureSteps, parseRange, sweep, sweepAll, type RunSettings } from '../lib/bench/runner';
import { schedule, sendTimes } from '../lib/bench/schedule';
import { diffCounters, isStable, percentile, summarizeLatency, summarizeStep, windowThroughput, withinTolerance } from '../lib/bench/stats';
import type { BenchReport, Driver, Load, ServerCounters, Target, TargetReport, WindowLimit, WindowResult } from '../lib/bench/types';
import { KilnError } from '../lib/errors';
import { prng } from '../lib/samples';

/** A window of `n` requests each taking `latencyUs`, over `durationUs`. */
const win = (n: number, latencyUs: number, durationUs: number, extra: Partial<WindowResult> = {}): WindowResult => ({
  durationUs, latenciesUs: Array.from({ length: n }, () => latencyUs), errors: 0, errorMessages: [], ...extra,
});

const STABILITY = { stabilityWindows: 3, stabilityPercentage: 10, percentile: 0 };

const counters = (requests: number, batchSizes: Record<number, number>): ServerCounters => ({
  requests, inferenceCount: requests, executionCount: Object.values(batchSizes).reduce((a, b) => a + b, 0),
  queueUs: requests * 10, computeInputUs: requests * 2, computeInferUs: requests * 100, computeOutputUs: requests * 3, batchSizes,
});

describe('kiln bench statistics', () => {
  it('percentiles are nearest rank over the sorted samples', () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    assert.equal(percentile(sorted, 50), 6); // rank round(0.5 * 9) = 5 (0-based)
    assert.equal(percentile(sorted, 90), 9);
    assert.equal(percentile(sorted, 99), 10);
    assert.equal(percentile(sorted, 0), 1);
    assert.ok(Number.isNaN(percentile([], 50)));
    const s = summarizeLatency([40, 10, 30, 20, 50, 60, 70, 80, 90, 100, 110]);
    assert.deepEqual(s, { count: 11, mean: 60, p50: 60, p90: 100, p95: 110, p99: 110, max: 110 });
    assert.deepEqual(summarizeLatency([40, 10, 30, 20], 75).chosen, { percentile: 75, value: 30 }); // round(0.75 * 3) = 2
    assert.equal(summarizeLatency([40, 10, 30, 20], 99).chosen, undefined, 'p99 is reported anyway');
    const empty = summarizeLatency([]);
    assert.equal(empty.count, 0);
    assert.ok(Number.isNaN(empty.mean) && Number.isNaN(empty.max));
  });

  it('the throughput of a window is completed requests per second of its duration', () => {
    assert.equal(windowThroughput(win(100, 1000, 500_000)), 200);
    assert.equal(windowThroughput(win(100, 1000, 500_000, { errors: 7 })), 200, 'failed requests do not count');
    assert.equal(windowThroughput(win(0, 0, 0)), 0);
  });

  it('stability: the last 3 windows\' throughput and latency each within ±10% of their average', () => {
    assert.equal(withinTolerance([100, 105, 95], 10), true);
    assert.equal(withinTolerance([100, 110, 90], 10), true, 'the band is inclusive');
    assert.equal(withinTolerance([100, 111, 89], 10), false);
    assert.equal(withinTolerance([0, 0, 0], 10), true);
    assert.equal(withinTolerance([1, NaN, 1], 10), false);
    const steady = [win(100, 1000, 100_000), win(105, 1050, 100_000), win(96, 980, 100_000)];
    assert.equal(isStable(steady, STABILITY), true);
    assert.equal(isStable(steady.slice(0, 2), STABILITY), false, 'fewer windows than the rule needs');
    assert.equal(isStable([win(10, 1000, 100_000), ...steady], STABILITY), true, 'only the last 3 are judged');
    assert.equal(isStable([...steady.slice(0, 2), win(130, 1000, 100_000)], STABILITY), false, 'throughput off by 30%');
    assert.equal(isStable([...steady.slice(0, 2), win(100, 1500, 100_000)], STABILITY), false, 'mean latency off');
    // A chosen percentile judges that percentile, not the mean: same p90, different means.
    const tail = (high: number): WindowResult => ({ ...win(100, 1000, 100_000), latenciesUs: [...Array.from({ length: 99 }, () => 1000), high] });
    const windows = [tail(1000), tail(1000), tail(100_000)];
    assert.equal(isStable(windows, STABILITY), false);
    assert.equal(isStable(windows, { ...STABILITY, percentile: 90 }), true);
    assert.equal(isStable(windows, { ...STABILITY, stabilityPercentage: 200 }), true);
  });

  it('a step sums its accepted windows; errors count over every window', () => {
    const load: Load = { kind: 'concurrency', concurrency: 4 };
    const windows = [
      win(10, 5000, 100_000, { errors: 2, errorMessages: ['boom'], cpuUs: 999_999, peakRssBytes: 300, server: counters(10, { 1: 10 }) }),
      win(100, 1000, 100_000, { cpuUs: 20_000, peakRssBytes: 100, server: counters(100, { 4: 25 }) }),
      win(110, 2000, 100_000, { errors: 1, cpuUs: 22_200, peakRssBytes: 200, server: counters(110, { 4: 20, 2: 15 }) }),
      win(90, 1000, 100_000, { cpuUs: 18_000, peakRssBytes: 150, server: counters(90, { 4: 22, 1: 2 }) }),
    ];
    const step = summarizeStep(load, windows, STABILITY);
    assert.deepEqual(step.load, load);
    assert.equal(step.windows.length, 4);
    assert.equal(step.throughput, 1000); // 300 requests over 0.3 s
    assert.equal(step.latency.count, 300);
    assert.equal(step.latency.p50, 1000);
    assert.equal(step.latency.max, 2000);
    assert.deepEqual(step.spread, { throughput: [900, 1100], p50: [1000, 2000], p99: [1000, 2000] });
    assert.equal(step.errors, 3, 'the first window\'s errors are not hidden');
    assert.deepEqual(step.batchSizes, { 1: 2, 2: 15, 4: 67 });
    assert.deepEqual(step.breakdown, { queueUs: 10, computeInputUs: 2, computeInferUs: 100, computeOutputUs: 3 });
    assert.equal(step.cpuUsPerRequest, 60_200 / 301);
    assert.equal(step.peakRssBytes, 300);
    assert.equal(step.stable, false, 'mean latencies 1000, ~2000, 1000');
  });

  it('counters of a window are the difference of cumulative counters', () => {
    const d = diffCounters(counters(150, { 1: 10, 4: 30 }), counters(100, { 1: 10, 4: 20 }));
    assert.deepEqual(d, { requests: 50, inferenceCount: 50, executionCount: 10, queueUs: 500, computeInputUs: 100, computeInferUs: 5000, computeOutputUs: 150, batchSizes: { 4: 10 } });
  });

  it('ranges: perf_analyzer\'s START:END:STEP, multiplicative xF, single values', () => {
    assert.deepEqual(parseRange('1:128:x2', '--concurrency', true), [1, 2, 4, 8, 16, 32, 64, 128]);
    assert.deepEqual(parseRange('1:8:1', '--concurrency', true), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(parseRange('1:8', '--concurrency', true), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(parseRange('2:9:3', '--concurrency', true), [2, 5, 8]);
    assert.deepEqual(parseRange('1:10:x3', '--concurrency', true), [1, 3, 9]);
    assert.deepEqual(parseRange('1:4:x1.5', '--concurrency', true), [1, 2, 3], 'an integer sweep moves up by at least 1 (3 x 1.5 rounds to 5)');
    assert.deepEqual(parseRange('6', '--concurrency', true), [6]);
    assert.deepEqual(parseRange('10:40:x2', '--request-rate', false), [10, 20, 40]);
    assert.deepEqual(parseRange('0.5:2:0.5', '--request-rate', false), [0.5, 1, 1.5, 2]);
    assert.deepEqual(parseRange('0.1:0.3:0.1', '--request-rate', false), [0.1, 0.2, 0.3]);
    const refused = (text: string, integer: boolean, why: RegExp): void => {
      assert.throws(() => parseRange(text, '--concurrency', integer), (e: unknown) => e instanceof KilnError && e.code === 'E_INVALID_ARGUMENT' && why.test(e.message) && e.message.endsWith(`received ${text}`));
    };
    refused('0', true, /the start is not one of the integers >= 1/);
    refused('1.5', true, /the start is not one of the integers >= 1/);
    refused('8:1', true, /the end is below the start/);
    refused('1:8:x1', true, /x followed by a factor > 1/);
    refused('1:8:0', true, /the step is not one/);
    refused('1:2:3:4', true, /too many parts/);
    refused('a', false, /the start is not one of the numbers > 0/);
    refused('1:5000', true, /more than 1000 steps/);
  });

  it('schedules: constant arrivals evenly spaced; Poisson exponential gaps, the same for the same seed', () => {
    assert.deepEqual(sendTimes(1000, 'constant', 5), [0, 1000, 2000, 3000, 4000]);
    assert.deepEqual(sendTimes(400, 'constant', 3), [0, 2500, 5000]);
    const p = sendTimes(1000, 'poisson', 20_000, 7);
    assert.deepEqual(sendTimes(1000, 'poisson', 20_000, 7), p);
    assert.notDeepEqual(sendTimes(1000, 'poisson', 100, 8), p.slice(0, 100));
    const u = prng(7);
    const first = -Math.log(1 - (u() + 1) / 2) * 1000;
    const second = first - Math.log(1 - (u() + 1) / 2) * 1000;
    assert.equal(p[0], 0);
    assert.equal(p[1], first);
    assert.equal(p[2], second);
    // Exponential gaps: mean 1/rate, standard deviation 1/rate too (20 000 draws of a fixed seed).
    const gaps = p.slice(1).map((t, i) => t - p[i]);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    const sd = Math.sqrt(gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / gaps.length);
    assert.ok(Math.abs(mean - 1000) < 30, `mean gap ${mean}`);
    assert.ok(Math.abs(sd - 1000) < 40, `gap sd ${sd}`);
    assert.ok(gaps.every((g) => g >= 0 && Number.isFinite(g)));
    assert.throws(() => schedule(0, 'constant'), RangeError);
  });

  it('comparisons: other ÷ base, latency and throughput, at the loads both measured', () => {
    const step = (load: Load, p50: number, p99: number, throughput: number): TargetReport['steps'][number] => ({
      ...summarizeStep(load, [win(10, p50, 1e6)], STABILITY), latency: { ...summarizeLatency([p50]), p50, p99 }, throughput,
    });
    const c1: Load = { kind: 'concurrency', concurrency: 1 };
    const c2: Load = { kind: 'concurrency', concurrency: 2 };
    const base: TargetReport = { name: 'kiln', description: '', steps: [step(c1, 100, 200, 1000), step(c2, 150, 300, 1800)] };
    const other: TargetReport = { name: 'onnxruntime-node', description: '', steps: [step(c1, 150, 500, 800)] };
    assert.deepEqual(compareTargets([base, other]), [{ base: 'kiln', other: 'onnxruntime-node', load: c1, p50Ratio: 1.5, p99Ratio: 2.5, throughputRatio: 0.8 }]);
    assert.deepEqual(compareTargets([base]), []);
  });

  it('CSV fields are quoted when they must be, and every row has every column', () => {
    assert.equal(csvField('plain'), 'plain');
    assert.equal(csvField('a,b'), '"a,b"');
    assert.equal(csvField('say "hi"'), '"say ""hi"""');
    assert.equal(csvField('two\nlines'), '"two\nlines"');
    assert.equal(csvField(undefined), '');
    assert.equal(csvField(NaN), '');
    assert.equal(csvField(false), 'false');
    const report = {
      settings: { stabilityWindows: 3 },
      targets: [{ name: 'kiln', description: 'sample "mlp", cpu', steps: [summarizeStep({ kind: 'rate', rate: 50, arrival: 'poisson' }, [win(5, 100, 1e5, { lateSends: 2, maxSendLagUs: 1500 })], STABILITY)] }],
    } as unknown as BenchReport;
    const [header, row, end] = renderCsv(report).split('\r\n');
    assert.equal(header, CSV_COLUMNS.join(','));
    assert.equal(end, '');
    assert.match(row, /^kiln,"sample ""mlp"", cpu",rate,,50,poisson,50,100,/);
    assert.match(row, /,2,1500,$/, 'late sends and the largest lag; no best without a bound');
  });
});

/** A driver whose windows are scripted: p99 latency and throughput as functions of the load. */
function scriptedDriver(latencyUs: (load: Load) => number, throughput: (load: Load) => number): Driver & { warmups: number[]; windows: Load[] } {
  const d = {
    name: 'scripted', description: 'scripted windows', warmups: [] as number[], windows: [] as Load[],
    warmup: async (n: number) => void d.warmups.push(n),
    window: async (load: Load, _limit: WindowLimit): Promise<WindowResult> => {
      d.windows.push(load);
      return win(throughput(load) / 10, latencyUs(load), 100_000);
    },
    close: async () => undefined,
  };
  return d;
}

const SETTINGS: RunSettings = { limit: { ms: 100 }, warmupRequests: 5, stabilityWindows: 3, stabilityPercentage: 10, maxWindows: 6, percentile: 0 };
const conc = (c: number): Load => ({ kind: 'concurrency', concurrency: c });
const value = (l: Load): number => (l.kind === 'concurrency' ? l.concurrency : l.rate);

describe('kiln bench steps and sweeps', () => {
  it('a step takes windows until 3 agree, warms a driver up once, and reports an unstable step as such', async () => {
    const d = scriptedDriver(() => 1000, () => 1000);
    const step = await measureStep(d, conc(1), SETTINGS);
    assert.equal(step.stable, true);
    assert.equal(step.windows.length, 3);
    await measureStep(d, conc(2), SETTINGS);
    assert.deepEqual(d.warmups, [5], 'warmed up once');
    let n = 0;
    const wobbly = scriptedDriver(() => 1000, () => (n++ % 2 ? 1000 : 2000));
    const unstable = await measureStep(wobbly, conc(1), SETTINGS);
    assert.equal(unstable.stable, false);
    assert.equal(unstable.windows.length, 6, 'stopped at --max-trials');
    assert.equal(unstable.throughput, 400 / 0.3, 'over the last 3 windows: 100, 200 and 100 requests in 0.3 s');
  });

  it('a latency bound sweeps up to the first load over it, bisects, and names the best step within', async () => {
    const d = scriptedDriver((l) => value(l) * 100, (l) => value(l) * 1000);
    const report = await sweep(d, [1, 2, 4, 8, 16].map(conc), SETTINGS, { latencyBoundMs: 0.5 });
    // 1, 2, 4 within 500 µs; 8 over: the sweep stops; bisection tries 6 (over), then 5 (within); no integer lies between 5 and 6.
    assert.deepEqual(report.steps.map((s) => value(s.load)), [1, 2, 4, 5, 6, 8]);
    assert.deepEqual([...new Set(d.windows.map(value))], [1, 2, 4, 8, 6, 5]);
    assert.deepEqual(report.best, { stepIndex: 3, boundMs: 0.5 });
    const none = await sweep(scriptedDriver(() => 10_000, () => 1000), [1, 2].map(conc), SETTINGS, { latencyBoundMs: 1 });
    assert.equal(none.best, undefined);
    assert.equal(none.steps.length, 1, 'the sweep stops at the first step over the bound');
    const rates = await sweep(scriptedDriver((l) => value(l) * 10, (l) => value(l) * 10), [10, 20, 40].map((r): Load => ({ kind: 'rate', rate: r, arrival: 'constant' })), SETTINGS, { latencyBoundMs: 0.3, bisections: 2 });
    assert.deepEqual(rates.steps.map((s) => value(s.load)), [10, 20, 30, 35, 40], 'two bisections: 30 (within), 35 (over)');
    assert.equal(rates.best?.stepIndex, 2, 'rate 30: 300 µs, within');
    const plain = await sweep(scriptedDriver(() => 1, () => 1), [conc(1)], SETTINGS);
    assert.equal(plain.best, undefined);
  });

  it('targets compared in one run take their windows in turn, the order rotating, until all are stable', async () => {
    const order: string[] = [];
    const named = (name: string, d: ReturnType<typeof scriptedDriver>): Driver => ({
      ...d, name, warmup: d.warmup, close: d.close,
      window: async (load, limit) => {
        order.push(name);
        return d.window(load, limit);
      },
    });
    let n = 0;
    // b wobbles for its first four windows, then settles: a keeps taking windows beside it.
    const a = named('a', scriptedDriver(() => 1000, () => 1000));
    const b = named('b', scriptedDriver(() => 1000, () => (n++ < 4 ? 1000 * (1 + (n % 2)) : 1000)));
    const [sa, sb] = await measureSteps([{ driver: a, load: conc(1) }, { driver: b, load: conc(1) }], SETTINGS);
    // b's throughput: 2000, 1000, 2000, 1000, then 1000: its last three agree after its sixth window.
    assert.deepEqual(order, ['a', 'b', 'b', 'a', 'a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']);
    assert.equal(sa.windows.length, 6);
    assert.equal(sb.windows.length, 6);
    assert.ok(sa.stable && sb.stable);
  });

  it('a latency bound with several targets: each leaves the sweep at its own first step over the bound, and bisects', async () => {
    const fast = scriptedDriver((l) => value(l) * 50, (l) => value(l) * 1000);
    const slow = scriptedDriver((l) => value(l) * 100, (l) => value(l) * 1000);
    const [f, s] = await sweepAll([fast, slow], [1, 2, 4, 8, 16].map(conc), SETTINGS, { latencyBoundMs: 0.5 });
    // slow: as in the single-target case; fast: 1..8 within 500 µs (8: 400), 16 over (800); bisects 12 (over), 10 (within: 500), 11 (over).
    assert.deepEqual(s.steps.map((x) => value(x.load)), [1, 2, 4, 5, 6, 8]);
    assert.deepEqual(f.steps.map((x) => value(x.load)), [1, 2, 4, 8, 10, 11, 12, 16]);
    assert.equal(value(f.steps[f.best!.stepIndex].load), 10);
    assert.equal(value(s.steps[s.best!.stepIndex].load), 5);
  });
});

/** A target answering after `delayMs` (a macrotask later), failing every `failEvery`th request. */
function scriptedTarget(o: { delayMs?: number; failEvery?: number; throwEvery?: number; never?: boolean } = {}): Target & { maxInFlight: number; sent: number } {
  let inFlight = 0;
  let served = 0;
  const t = {
    name: 'scripted', description: 'a scripted target', maxInFlight: 0, sent: 0,
    infer: (): Promise<void> => {
      const i = ++t.sent;
      if (o.throwEvery && i % o.throwEvery === 0) throw new Error('thrown at once');
      if (o.never) return new Promise<void>(() => undefined);
      inFlight++;
      t.maxInFlight = Math.max(t.maxInFlight, inFlight);
      return new Promise<void>((resolve, reject) => setTimeout(() => {
        inFlight--;
        served++;
        if (o.failEvery && i % o.failEvery === 0) reject(new KilnError('E_ORT', 'scripted failure'));
        else resolve();
      }, o.delayMs ?? 0));
    },
    counters: async (): Promise<ServerCounters> => counters(served, { 1: served }),
    close: async () => undefined,
  };
  return t;
}

describe('kiln bench load generator', () => {
  it('closed loop keeps `concurrency` requests in flight and stops at the request count', async () => {
    const target = scriptedTarget({ delayMs: 1, failEvery: 5 });
    const driver = targetDriver(target);
    const w = await driver.window(conc(3), { requests: 30 });
    assert.equal(target.sent, 30);
    assert.equal(target.maxInFlight, 3);
    assert.equal(w.latenciesUs.length, 24);
    assert.equal(w.errors, 6);
    assert.deepEqual(w.errorMessages, ['scripted failure'], 'distinct messages');
    assert.ok(w.latenciesUs.every((l) => l > 0));
    assert.ok(w.durationUs >= Math.max(...w.latenciesUs));
    assert.deepEqual(w.server?.batchSizes, { 1: 30 });
    assert.equal(w.server?.requests, 30);
    assert.ok(w.cpuUs !== undefined && w.cpuUs > 0);
    assert.ok(w.peakRssBytes !== undefined && w.peakRssBytes > 1 << 20);
    assert.equal(w.lateSends, undefined, 'closed loop has no send schedule');
  });

  it('open loop sends the scheduled count without waiting for answers; latency runs from the scheduled time', async () => {
    const target = scriptedTarget({ delayMs: 20, throwEvery: 7 });
    const w = await targetDriver(target).window({ kind: 'rate', rate: 2000, arrival: 'constant' }, { requests: 21 });
    assert.equal(target.sent, 21);
    assert.equal(w.errors, 3, 'a synchronous throw is a failed request');
    assert.deepEqual(w.errorMessages, ['thrown at once']);
    assert.equal(w.latenciesUs.length, 18);
    assert.ok(target.maxInFlight > 1, 'answers were not awaited before the next send');
    assert.ok(w.latenciesUs.every((l) => l >= 20_000 - 1000), 'each includes its 20 ms answer');
    assert.equal(typeof w.lateSends, 'number');
    assert.ok((w.maxSendLagUs as number) >= 0);
  });

  it('a time window waits a bounded time for requests in flight, then counts them as failed', async () => {
    const w = await targetDriver(scriptedTarget({ never: true }), { drainMs: 30 }).window(conc(2), { ms: 20 });
    assert.equal(w.latenciesUs.length, 0);
    assert.equal(w.errors, 2);
    assert.deepEqual(w.errorMessages, ['no answer within 40 ms after the window ended']);
  });
});
