/**
 * bench/soak: does memory stay flat over a long run? Three phases in one process, each
 * sampling process.memoryUsage() (rss, external, heapTotal, heapUsed, arrayBuffers) at
 * regular points, right after a full garbage collection when node runs with --expose-gc:
 *
 *  1. inferences: --inferences calls over six streams (the add and MLP sample models, each
 *     through runSync, run with 8 in flight, and Model.infer on a batching model with 32 in
 *     flight), interleaved: the phase is cut into --slices slices, each runs its share of
 *     every stream, then memory is sampled. Inputs are fresh arrays per call, results are
 *     dropped as a service would drop them, and every CHECK_EVERY-th is checked against a
 *     reference;
 *  2. sessions: --sessions Session create/dispose cycles of the MLP, from its bytes and from
 *     a file alternately, over four option sets (own intra-op pool or not, one or two executor
 *     threads); each runs 4 checked inferences, then disposes with 2 more runs in flight;
 *  3. models: --models loadModel/dispose cycles of the MLP behind the batcher (one or two
 *     instances), each answering a checked wave of requests, then disposed with batches
 *     running and requests queued.
 *
 * A forced GC before each sample shows what is still reachable, but it also frees what only
 * a collection frees, which a service that never calls gc() keeps. So, with --expose-gc,
 * phases 2 and 3 run once more each in a child process without it ("no forced GC"): memory
 * as such a service sees it. Any pass stops early once RSS has grown by STOP_GROWTH.
 *
 * Warm-up is the first --warmup fraction of each phase's slices or cycles. Per phase and
 * metric: the level after warm-up (median of the WINDOW samples that follow it) against the
 * level at the end (median of the last WINDOW samples), the growth between them, the maximum
 * after warm-up and the least-squares trend per inference or cycle; RSS and external memory
 * pass when the growth is at most 5%. heapTotal, heapUsed, arrayBuffers and rss − heapTotal
 * (memory outside V8's heap) are shown to tell V8's heap sizing from native growth.
 *
 *   node --expose-gc dist/bench/soak.js [--inferences 1000000] [--sessions 200] [--models 50]
 *        [--slices 100] [--warmup 0.1] [--json FILE]
 * A count of 0 skips its phase (to rerun one phase longer, say). Exit status 2 when a verdict fails.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Option } from 'commander';
import { configure, KilnError, loadModel, runtime, Session, type Feeds, type Model, type ModelConfig, type Results, type SessionOptions } from '../lib';
import { addModel, mlpModel, mlpReference, prng } from '../lib/samples';
import { benchCommand, fractionBelow, integerAtLeast } from './cli';
import { otherLoad } from './load-proc';

const OPTIONS = (() => {
  const o = benchCommand('soak', 'Does memory stay flat over a long run? Inferences, session cycles and model cycles, memory sampled after a full GC (docs/soak.md). Exit status 2 when a verdict fails.')
    .addOption(new Option('--inferences <n>', 'phase 1: inferences (0 skips the phase)').argParser(integerAtLeast(0)).default(1_000_000))
    .addOption(new Option('--sessions <n>', 'phase 2: session create/dispose cycles (0 skips it)').argParser(integerAtLeast(0)).default(200))
    .addOption(new Option('--models <n>', 'phase 3: model load/dispose cycles (0 skips it)').argParser(integerAtLeast(0)).default(50))
    .addOption(new Option('--slices <n>', 'phase 1: slices, one memory sample each').argParser(integerAtLeast(1)).default(100))
    .addOption(new Option('--warmup <fraction>', 'share of each phase counted as warm-up').argParser(fractionBelow(0.8)).default(0.1))
    .option('--json <file>', 'results as JSON')
    // Internal: a pass run by the parent in a child process; prints its results as JSON.
    .addOption(new Option('--child').hideHelp())
    .parse()
    .opts<{ inferences: number; sessions: number; models: number; slices: number; warmup: number; json?: string; child?: boolean }>();
  return { inferences: o.inferences, sessions: o.sessions, models: o.models, slices: o.slices, warmup: o.warmup, json: o.json ?? '', child: o.child === true };
})();

/** Growth allowed between the level after warm-up and the level at the end. */
const MAX_GROWTH = 0.05;
/** Phase 1 checks one call in this many per stream (and always the first). */
const CHECK_EVERY = 1000;
/** Share of a phase's samples whose median makes a level (after warm-up, at the end). */
const WINDOW = 0.1;
/** A pass stops once RSS is this far above its first sample: the verdict is clear by then. */
const STOP_GROWTH = 2 ** 30;

const gc = (globalThis as { gc?: () => void }).gc;
const log = (s: string): void => void process.stderr.write(s + '\n');

// ---------------------------------------------------------------------------------------------
// Inputs and their expected outputs

/** One input set of a model: fresh feeds on every call, and what the output must be. */
interface Case {
  readonly rows: number;
  /** Exact comparison (add), else within 1e-4 of the largest expected value (the MLP). */
  readonly exact: boolean;
  feeds(): Feeds;
  readonly expected: Float32Array;
}

function random(n: number, seed: number): Float32Array {
  const next = prng(seed);
  return Float32Array.from({ length: n }, () => next());
}

const float32 = (data: Float32Array, dims: number[]): { type: 'float32'; data: Float32Array; dims: number[] } => ({ type: 'float32', data, dims });

/** add: y = a + b on [rows, 4]; float32 addition is exact against Math.fround. */
function addCases(): Case[] {
  return [1, 2, 3, 4, 5, 6, 7, 8].map((rows) => {
    const a = random(rows * 4, 100 + rows);
    const b = random(rows * 4, 200 + rows);
    return {
      rows, exact: true,
      feeds: () => ({ a: float32(a.slice(), [rows, 4]), b: float32(b.slice(), [rows, 4]) }),
      expected: a.map((v, i) => Math.fround(v + b[i])),
    };
  });
}

/** mlp: y [rows, 10] against mlpReference (plain JS, computed once per case). */
function mlpCases(): Case[] {
  return [1, 2, 3, 4].map((rows) => {
    const x = random(rows * 512, 300 + rows);
    return { rows, exact: false, feeds: () => ({ x: float32(x.slice(), [rows, 512]) }), expected: mlpReference(x, rows) };
  });
}

/** Throws unless `r.y` has `c`'s shape and values. */
function verify(r: Results, c: Case, what: string): void {
  const y = r.y;
  const got = y?.data;
  const width = c.expected.length / c.rows;
  if (!(got instanceof Float32Array) || y.dims.length !== 2 || y.dims[0] !== c.rows || y.dims[1] !== width) {
    throw new Error(`${what}: expected y float32 [${c.rows}, ${width}], received ${y ? `${String(y.type)} [${y.dims.join(', ')}]` : 'no y'}`);
  }
  let scale = 0;
  for (const v of c.expected) scale = Math.max(scale, Math.abs(v));
  const tolerance = c.exact ? 0 : 1e-4 * scale;
  for (let i = 0; i < got.length; i++) {
    if (!(Math.abs(got[i] - c.expected[i]) <= tolerance)) {
      throw new Error(`${what}: y[${i}] = ${got[i]}, expected ${c.expected[i]} (tolerance ${tolerance})`);
    }
  }
}

/**
 * Waits for the requests sent just before a dispose: each must be answered (correctly: the
 * promises verify) or turned away with E_DISPOSED. Returns how many were answered.
 */
async function settleLate(late: readonly Promise<unknown>[], caught: { answered: number; disposed: number }, what: string): Promise<number> {
  let answered = 0;
  for (const outcome of await Promise.allSettled(late)) {
    if (outcome.status === 'fulfilled') {
      answered++;
    } else {
      disposedOrThrow(outcome.reason, what);
      caught.disposed++;
    }
  }
  caught.answered += answered;
  return answered;
}

/** An expected end of a run caught by dispose: E_DISPOSED. Anything else is a failure. */
function disposedOrThrow(e: unknown, what: string): void {
  if (e instanceof KilnError && e.code === 'E_DISPOSED') return;
  throw new Error(`${what}: expected a result or E_DISPOSED, received ${e instanceof Error ? e.message : String(e)}`);
}

// ---------------------------------------------------------------------------------------------
// Memory samples and their summary

interface Memory {
  rss: number;
  /** V8's heap as reserved from the OS: what V8 heap sizing adds to RSS. */
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

const METRICS = ['rss', 'external', 'heapTotal', 'heapUsed', 'arrayBuffers', 'rssOutsideHeap'] as const;
type Metric = (typeof METRICS)[number];
const LABELS: Record<Metric, string> = {
  rss: 'rss', external: 'external', heapTotal: 'heapTotal', heapUsed: 'heapUsed', arrayBuffers: 'arrayBuffers', rssOutsideHeap: 'rss − heapTotal',
};
/**
 * The metrics with a verdict; the others are shown for diagnosis. Without forced GCs, external
 * memory also counts ArrayBuffers that are garbage V8 has not collected yet (a gc() takes it
 * back): only RSS is judged there, where a session or model kept alive until a GC shows.
 */
const JUDGED: readonly Metric[] = gc ? ['rss', 'external'] : ['rss'];

interface Sample extends Memory {
  /** rss − heapTotal: native memory, code and stacks, without V8's heap. */
  rssOutsideHeap: number;
  /** Slices or cycles done when the sample was taken. */
  unit: number;
  /** Seconds since the phase began. */
  t: number;
}

async function sample(unit: number, t0: number): Promise<Sample> {
  if (gc) {
    gc();
    // Native memory behind a collected ArrayBuffer is released by a finalizer that may run
    // after the collection that found it: let it run, then collect what it dropped.
    await new Promise<void>((resolve) => setImmediate(resolve));
    gc();
  }
  const m = process.memoryUsage();
  return {
    unit, t: (performance.now() - t0) / 1000, rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed,
    external: m.external, arrayBuffers: m.arrayBuffers, rssOutsideHeap: m.rss - m.heapTotal,
  };
}

interface MetricSummary {
  metric: Metric;
  /** Median of the WINDOW samples right after warm-up. */
  afterWarmup: number;
  /** Median of the last WINDOW samples. */
  end: number;
  growthPct: number;
  /** Highest sample after warm-up. */
  max: number;
  /** Least-squares slope over the samples after warm-up, in bytes per unit of work (an inference, a cycle). */
  trendPerWork: number;
  verdict: 'PASS' | 'FAIL' | undefined;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/**
 * Samples [0] is taken before the first unit, [k] after k units; warm-up ends at `warm` units
 * (a pass stopped before that is summarized from its start).
 */
function summarize(samples: readonly Sample[], warm: number, workPerUnit: number): MetricSummary[] {
  const settled = samples.filter((s) => s.unit >= warm);
  const after = settled.length >= 2 ? settled : samples;
  const window = Math.max(1, Math.round(after.length * WINDOW));
  return METRICS.map((metric) => {
    const v = after.map((s) => s[metric]);
    const afterWarmup = median(v.slice(0, window));
    const end = median(v.slice(-window));
    const growthPct = ((end - afterWarmup) / afterWarmup) * 100;
    const judged = JUDGED.includes(metric);
    return {
      metric, afterWarmup, end, growthPct, max: Math.max(...v),
      trendPerWork: slope(after.map((s) => s.unit), v) / workPerUnit,
      verdict: judged ? (growthPct <= MAX_GROWTH * 100 ? 'PASS' : 'FAIL') : undefined,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Phases

interface PhaseResult {
  name: string;
  /** Samples taken after a forced GC (node --expose-gc), or as the process stood. */
  forcedGc: boolean;
  /** Set when the pass stopped early (RSS grew by STOP_GROWTH): the units done. */
  stoppedAt?: number;
  /** What was done, in words. */
  work: string;
  /** Units of work (inferences, cycles) and their name. */
  done: number;
  unitName: string;
  seconds: number;
  /** Seconds spent collecting garbage and sampling, left out of the throughput. */
  sampleSeconds: number;
  throughput: number;
  checked: number;
  /** Runs and requests sent just before a dispose: answered, or rejected with E_DISPOSED. */
  inFlightAtDispose?: { answered: number; disposed: number };
  otherCores: number;
  warmupUnits: number;
  units: number;
  samples: Sample[];
  memory: MetricSummary[];
}

interface PhaseRun {
  samples: Sample[];
  seconds: number;
  sampleSeconds: number;
  otherCores: number;
  /** Units done: `units` unless the pass stopped early. */
  done: number;
  stoppedAt?: number;
}

/** A phase's name: its samples are taken after a forced GC, or as the process stands. */
const named = (base: string): string => (gc ? base : `${base} (no forced GC)`);

/**
 * Runs `units` units of work, sampling before the first and after each; `unit(k)` does the
 * k-th. Stops early once RSS has grown by STOP_GROWTH over the first sample.
 */
async function phase(units: number, progressEvery: number, label: string, unit: (k: number) => Promise<void>): Promise<PhaseRun> {
  const other = otherLoad();
  const t0 = performance.now();
  let sampling = 0;
  const take = async (k: number): Promise<Sample> => {
    const s0 = performance.now();
    const s = await sample(k, t0);
    sampling += performance.now() - s0;
    return s;
  };
  const samples = [await take(0)];
  let stoppedAt: number | undefined;
  for (let k = 0; k < units; k++) {
    await unit(k);
    const s = await take(k + 1);
    samples.push(s);
    const stop = s.rss - samples[0].rss > STOP_GROWTH;
    if ((k + 1) % progressEvery === 0 || k + 1 === units || stop) {
      log(`${label} ${k + 1}/${units}: ${s.t.toFixed(1)} s, rss ${mib(s.rss)}, external ${mib(s.external)}, heap ${mib(s.heapUsed)} of ${mib(s.heapTotal)}`);
    }
    if (stop) {
      stoppedAt = k + 1;
      log(`${label}: stopped after ${stoppedAt} of ${units}: RSS grew by more than ${mib(STOP_GROWTH)}`);
      break;
    }
  }
  return { samples, seconds: (performance.now() - t0) / 1000, sampleSeconds: sampling / 1000, otherCores: other(), done: stoppedAt ?? units, stoppedAt };
}

const warmupUnits = (units: number): number => Math.min(units - 1, Math.ceil(units * OPTIONS.warmup));

interface Stream {
  name: string;
  share: number;
  inFlight: number;
  cases: Case[];
  /** runSync streams call `sync`, the others `async`. */
  sync?: (feeds: Feeds) => Results;
  async?: (feeds: Feeds) => Promise<Results>;
  total: number;
  calls: number;
  seconds: number;
  checked: number;
}

/** The k-th of `parts` near-equal parts of `total`. */
const part = (total: number, k: number, parts: number): number => Math.floor((total * (k + 1)) / parts) - Math.floor((total * k) / parts);

async function drive(s: Stream, n: number): Promise<void> {
  const t0 = performance.now();
  const base = s.calls;
  const check = (i: number, r: Results): void => {
    if (i % CHECK_EVERY !== 0) return; // dropped unread, as a service drops a sent answer
    verify(r, s.cases[i % s.cases.length], `${s.name}, call ${i}`);
    s.checked++;
  };
  if (s.sync) {
    for (let i = base; i < base + n; i++) check(i, s.sync(s.cases[i % s.cases.length].feeds()));
  } else {
    const call = s.async as (feeds: Feeds) => Promise<Results>;
    let next = base;
    const worker = async (): Promise<void> => {
      while (next < base + n) {
        const i = next++;
        check(i, await call(s.cases[i % s.cases.length].feeds()));
      }
    };
    await Promise.all(Array.from({ length: Math.min(s.inFlight, n) }, worker));
  }
  s.calls += n;
  s.seconds += (performance.now() - t0) / 1000;
}

/**
 * The mix: 60% of the calls on the add model (Kiln's own per-call path: a few µs each), 40%
 * on the MLP at 1-4 rows (ORT allocating real intermediate tensors: ~100 µs each), so a
 * million calls take 40 s to two minutes on two shared cores.
 */
const MIX: readonly { name: string; model: 'add' | 'mlp'; api: 'runSync' | 'run' | 'infer'; inFlight: number; share: number }[] = [
  { name: 'add runSync', model: 'add', api: 'runSync', inFlight: 1, share: 0.2 },
  { name: 'add run ×8', model: 'add', api: 'run', inFlight: 8, share: 0.2 },
  { name: 'add infer ×32', model: 'add', api: 'infer', inFlight: 32, share: 0.2 },
  { name: 'mlp runSync', model: 'mlp', api: 'runSync', inFlight: 1, share: 0.1 },
  { name: 'mlp run ×8', model: 'mlp', api: 'run', inFlight: 8, share: 0.1 },
  { name: 'mlp infer ×32', model: 'mlp', api: 'infer', inFlight: 32, share: 0.2 },
];

const ADD_BATCHING: ModelConfig = { maxBatchSize: 64 };
const MLP_BATCHING: ModelConfig = { maxBatchSize: 32, instanceGroup: [{ count: 2 }] };

async function inferencePhase(): Promise<{ result: PhaseResult; streams: Stream[] }> {
  const sessions = { add: await Session.create(addModel()), mlp: await Session.create(mlpModel()) };
  const models: Record<'add' | 'mlp', Model> = { add: await loadModel(addModel(), ADD_BATCHING), mlp: await loadModel(mlpModel(), MLP_BATCHING) };
  const cases = { add: addCases(), mlp: mlpCases() };
  let assigned = 0;
  const streams: Stream[] = MIX.map((m, i) => {
    // The last stream takes the rounding remainder, so the streams add up to --inferences.
    const total = i === MIX.length - 1 ? OPTIONS.inferences - assigned : Math.round(OPTIONS.inferences * m.share);
    assigned += total;
    const session = sessions[m.model];
    const model = models[m.model];
    return {
      name: m.name, share: m.share, inFlight: m.inFlight, cases: cases[m.model], total, calls: 0, seconds: 0, checked: 0,
      ...(m.api === 'runSync' ? { sync: (f: Feeds) => session.runSync(f) }
        : m.api === 'run' ? { async: (f: Feeds) => session.run(f) }
          : { async: (f: Feeds) => model.infer(f) }),
    };
  });
  log(`inferences: ${streams.map((s) => `${s.name} ${s.total}`).join(', ')}`);
  const units = Math.min(OPTIONS.slices, OPTIONS.inferences);
  const p = await phase(units, Math.max(1, Math.round(units / 10)), 'inferences', async (k) => {
    for (const s of streams) await drive(s, part(s.total, k, units));
  });
  // The phase's sessions and models stay open until its last sample: closing them first would hide what they hold.
  await Promise.all([sessions.add.dispose(), sessions.mlp.dispose(), models.add.dispose(), models.mlp.dispose()]);
  const warm = warmupUnits(units);
  const done = streams.reduce((a, s) => a + s.calls, 0);
  const result: PhaseResult = {
    name: named('inferences'), forcedGc: gc !== undefined, stoppedAt: p.stoppedAt, unitName: 'inference', done,
    work: `${OPTIONS.inferences.toLocaleString('en-US')} inferences in ${units} slices (${streams.map((s) => `${s.name} ${(s.share * 100).toFixed(0)}%`).join(', ')})`,
    seconds: p.seconds, sampleSeconds: p.sampleSeconds, throughput: done / (p.seconds - p.sampleSeconds),
    checked: streams.reduce((a, s) => a + s.checked, 0), otherCores: p.otherCores,
    warmupUnits: warm, units, samples: p.samples, memory: summarize(p.samples, warm, OPTIONS.inferences / units),
  };
  return { result, streams };
}

/** Session options cycled through phase 2: the global intra-op pool or a session's own, one or two executor threads. */
const SESSION_VARIANTS: readonly SessionOptions[] = [{}, { intraOpThreads: 2 }, { executorThreads: 2 }, { intraOpThreads: 2, executorThreads: 2 }];

async function sessionPhase(bytes: Uint8Array, file: string): Promise<PhaseResult> {
  const cases = mlpCases();
  let checked = 0;
  const caught = { answered: 0, disposed: 0 };
  const units = OPTIONS.sessions;
  const p = await phase(units, Math.max(1, Math.round(units / 10)), 'sessions', async (k) => {
    const what = `session cycle ${k}`;
    const session = await Session.create(k % 2 === 0 ? bytes : file, SESSION_VARIANTS[k % SESSION_VARIANTS.length]);
    const answers = await Promise.all(cases.slice(0, 3).map((c) => session.run(c.feeds())));
    answers.forEach((r, i) => verify(r, cases[i], what));
    verify(session.runSync(cases[3].feeds()), cases[3], what);
    checked += 4;
    // Two runs in flight at dispose: the running one finishes, a queued one may be turned away.
    const late = [cases[0], cases[3]].map((c) => session.run(c.feeds()).then((r) => verify(r, c, what)));
    const disposed = session.dispose();
    checked += await settleLate(late, caught, what);
    await disposed;
  });
  const warm = warmupUnits(units);
  return {
    name: named('sessions'), forcedGc: gc !== undefined, stoppedAt: p.stoppedAt, unitName: 'cycle', done: p.done,
    work: `${units} Session create/dispose cycles of the MLP (bytes / file alternately; ${SESSION_VARIANTS.length} option sets), 4 runs each + 2 in flight at dispose`,
    seconds: p.seconds, sampleSeconds: p.sampleSeconds, throughput: p.done / (p.seconds - p.sampleSeconds),
    checked, inFlightAtDispose: caught, otherCores: p.otherCores,
    warmupUnits: warm, units, samples: p.samples, memory: summarize(p.samples, warm, 1),
  };
}

/** Requests per model cycle: a first wave answered in full, then a second caught by dispose. */
const WAVE = 32;
const LATE = 48;
const QUEUED = 16;

async function modelPhase(bytes: Uint8Array, file: string): Promise<PhaseResult> {
  const cases = mlpCases();
  let checked = 0;
  const caught = { answered: 0, disposed: 0 };
  const units = OPTIONS.models;
  const p = await phase(units, Math.max(1, Math.round(units / 10)), 'models', async (k) => {
    const what = `model cycle ${k}`;
    const model = await loadModel(k % 2 === 0 ? bytes : file, {
      maxBatchSize: 16, dynamicBatching: { maxQueueDelayMicroseconds: 100 }, instanceGroup: [{ count: 1 + (k % 2) }],
    });
    const infer = (i: number): Promise<void> => {
      const c = cases[i % cases.length];
      return model.infer(c.feeds()).then((r) => verify(r, c, what));
    };
    await Promise.all(Array.from({ length: WAVE }, (_, i) => infer(i)));
    checked += WAVE;
    const late = Array.from({ length: LATE }, (_, i) => infer(i));
    // One turn of the event loop: full batches start; then more requests queue behind them.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (let i = 0; i < QUEUED; i++) late.push(infer(i));
    const disposed = model.dispose();
    checked += await settleLate(late, caught, what);
    await disposed;
  });
  const warm = warmupUnits(units);
  return {
    name: named('models'), forcedGc: gc !== undefined, stoppedAt: p.stoppedAt, unitName: 'cycle', done: p.done,
    work: `${units} loadModel/dispose cycles of the MLP (maxBatchSize 16, 1 or 2 instances), ${WAVE} requests each + ${LATE + QUEUED} in flight at dispose`,
    seconds: p.seconds, sampleSeconds: p.sampleSeconds, throughput: p.done / (p.seconds - p.sampleSeconds),
    checked, inFlightAtDispose: caught, otherCores: p.otherCores,
    warmupUnits: warm, units, samples: p.samples, memory: summarize(p.samples, warm, 1),
  };
}

// ---------------------------------------------------------------------------------------------
// Report

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function signedPct(pct: number): string {
  return `${pct >= 0 ? '+' : ''}${pct.toFixed(1)}%`;
}

function trend(bytes: number, unitName: string): string {
  const abs = Math.abs(bytes);
  const v = abs >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(2)} MiB` : abs >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes.toFixed(1)} B`;
  return `${bytes >= 0 ? '+' : ''}${v}/${unitName}`;
}

function machine(): string {
  const info = runtime();
  const cpus = os.cpus();
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  const malloc = Object.keys(process.env).filter((k) => k.startsWith('MALLOC_')).map((k) => `${k}=${process.env[k]}`);
  return `${cpus.length} × ${cpus[0]?.model ?? '?'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}` +
    `${header?.glibcVersionRuntime ? `, glibc ${header.glibcVersionRuntime}` : ''}${malloc.length ? ` (${malloc.join(' ')})` : ''}; ` +
    `node ${process.version}, ONNX Runtime ${info.version} (${path.basename(info.library)})`;
}

function gcLine(phases: readonly PhaseResult[]): string {
  const lines = gc
    ? ['Memory sampled after a forced full GC (node --expose-gc; twice, around one event-loop turn for native finalizers).']
    : ['global.gc is unavailable (run with `node --expose-gc`): every sample is memory as the process stood, garbage included.'];
  if (gc && phases.some((p) => !p.forcedGc)) {
    lines.push('Passes marked "no forced GC" ran again in a child process without --expose-gc: memory as a service that never calls gc() sees it.');
  }
  return lines.join(' ');
}

function streamTable(streams: readonly Stream[]): string {
  const lines = streams.map((s) =>
    `| ${s.name} | ${s.calls.toLocaleString('en-US')} | ${((s.calls / OPTIONS.inferences) * 100).toFixed(0)}% | ${s.inFlight} | ${s.seconds.toFixed(1)} | ${Math.round(s.calls / s.seconds).toLocaleString('en-US')} | ${s.checked} |`);
  return ['| stream | calls | share | in flight | seconds | calls/s | checked |', '|---|---|---|---|---|---|---|', ...lines].join('\n');
}

function workTable(phases: readonly PhaseResult[]): string {
  const lines = phases.map((p) => {
    const caught = p.inFlightAtDispose ? `${p.inFlightAtDispose.answered} answered, ${p.inFlightAtDispose.disposed} E_DISPOSED` : '—';
    const rate = p.throughput >= 100 ? Math.round(p.throughput).toLocaleString('en-US') : p.throughput.toFixed(1);
    const stopped = p.stoppedAt !== undefined ? `; stopped after ${p.stoppedAt} of ${p.units} (RSS +${mib(STOP_GROWTH)})` : '';
    return `| ${p.name} | ${p.work}${stopped} | ${p.seconds.toFixed(1)} s (${p.sampleSeconds.toFixed(1)} s sampling) | ${rate} ${p.unitName}s/s | ${p.checked.toLocaleString('en-US')} | ${caught} | ${p.otherCores.toFixed(2)} |`;
  });
  return ['| phase | work | wall time | throughput | results checked | sent just before dispose | other load (cores) |', '|---|---|---|---|---|---|---|', ...lines].join('\n');
}

function memoryTable(phases: readonly PhaseResult[]): string {
  const lines: string[] = [];
  for (const p of phases) {
    for (const m of p.memory) {
      lines.push(`| ${p.name} | ${LABELS[m.metric]} | ${mib(m.afterWarmup)} | ${mib(m.end)} | ${signedPct(m.growthPct)} | ${mib(m.max)} | ${trend(m.trendPerWork, p.unitName)} | ${m.verdict ?? '—'} |`);
    }
  }
  return ['| phase | metric | after warm-up | end | growth | max | trend | verdict (≤ 5%) |', '|---|---|---|---|---|---|---|---|', ...lines].join('\n');
}

function verdicts(phases: readonly PhaseResult[]): string[] {
  return phases.map((p) => {
    const judged = p.memory.filter((m) => m.verdict !== undefined);
    const ok = judged.every((m) => m.verdict === 'PASS');
    const units = p.unitName === 'inference' ? 'slices' : 'cycles';
    return `${p.name}: ${ok ? 'PASS' : 'FAIL'} (${judged.map((m) => `${LABELS[m.metric]} ${signedPct(m.growthPct)}`).join(', ')}; ` +
      `warm-up ${p.warmupUnits} of ${p.units} ${units}${p.stoppedAt !== undefined ? `; stopped after ${p.stoppedAt}` : ''})`;
  });
}

function report(phases: readonly PhaseResult[], streams: readonly Stream[] | undefined): string {
  const parts = [`Machine: ${machine()}`, '', gcLine(phases), ''];
  if (streams) parts.push('Phase 1 split:', '', streamTable(streams), '');
  parts.push(workTable(phases), '', memoryTable(phases), '', ...verdicts(phases).map((v) => `- ${v}`));
  return parts.join('\n');
}

/**
 * Phase 2 or 3 again in a child process started without --expose-gc (other node flags kept),
 * so that nothing but V8's own collections frees memory.
 */
function withoutForcedGc(which: 'sessions' | 'models'): PhaseResult {
  const flags = process.execArgv.filter((a) => a !== '--expose-gc' && a !== '--expose_gc');
  const args = [
    ...flags, __filename, '--child', '--inferences', '0', '--warmup', String(OPTIONS.warmup),
    '--sessions', which === 'sessions' ? String(OPTIONS.sessions) : '0', '--models', which === 'models' ? String(OPTIONS.models) : '0',
  ];
  const child = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
  if (child.status !== 0) throw new Error(`the ${which} pass without forced GC failed (${child.signal ?? `exit status ${child.status}`})`);
  return (JSON.parse(child.stdout) as PhaseResult[])[0];
}

async function main(): Promise<void> {
  configure();
  if (!gc && !OPTIONS.child) log('soak: global.gc is unavailable (run with `node --expose-gc`); memory samples will include garbage');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-soak-'));
  const phases: PhaseResult[] = [];
  let streams: Stream[] | undefined;
  try {
    if (OPTIONS.inferences > 0) {
      const r = await inferencePhase();
      phases.push(r.result);
      streams = r.streams;
    }
    const bytes = mlpModel();
    const file = path.join(dir, 'mlp.onnx');
    fs.writeFileSync(file, bytes);
    if (OPTIONS.sessions > 0) phases.push(await sessionPhase(bytes, file));
    if (OPTIONS.models > 0) phases.push(await modelPhase(bytes, file));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (OPTIONS.child) {
    process.stdout.write(JSON.stringify(phases));
    return;
  }
  // After this process's phases, so that what these passes leave behind cannot hide growth there.
  if (gc && OPTIONS.sessions > 0) phases.push(withoutForcedGc('sessions'));
  if (gc && OPTIONS.models > 0) phases.push(withoutForcedGc('models'));
  process.stdout.write(report(phases, streams) + '\n');
  if (OPTIONS.json) {
    fs.mkdirSync(path.dirname(path.resolve(OPTIONS.json)), { recursive: true });
    fs.writeFileSync(OPTIONS.json, JSON.stringify({
      date: new Date().toISOString(), machine: machine(), gcForced: gc !== undefined, options: OPTIONS,
      maxGrowthPct: MAX_GROWTH * 100, window: WINDOW, checkEvery: CHECK_EVERY, stopGrowthBytes: STOP_GROWTH,
      streams: streams?.map(({ name, share, inFlight, total, calls, seconds, checked }) => ({ name, share, inFlight, total, calls, seconds, checked })),
      phases,
    }, null, 2));
  }
  if (phases.some((p) => p.memory.some((m) => m.verdict === 'FAIL'))) process.exitCode = 2;
}

main().catch((e: Error) => {
  process.stderr.write(`${e.stack ?? e.message}\n`);
  process.exit(1);
});
