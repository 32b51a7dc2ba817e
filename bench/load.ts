/**
 * bench/load: Kiln's dynamic batcher under load, side by side in one run with
 * onnxruntime-node (one request at a time) and the native harness (Kiln's core, no Node) at
 * its best batch size, the ceiling. Models: the MLP (x [N,512]) and the PP-OCR classifier
 * (x [N,3,48,192]) and recognizer (x [N,3,48,320]: one width, so requests batch).
 *
 *  - closed loop: 1..128 callers each send batch-1 requests back to back for --seconds per
 *    contender and point, in two rounds interleaved with the other contenders;
 *  - open loop: Poisson arrivals at half of onnxruntime-node's best closed-loop throughput,
 *    sent by a worker thread, latency from the scheduled send time; three interleaved rounds.
 * Every contender runs ORT with --intra intra-op threads, one inter-op thread, sequential
 * execution, pools that do not spin. Each row also reports the cores that other processes
 * used meanwhile: the machine may be shared.
 *
 *   node dist/bench/load.js [--seconds 2] [--only mlp,cls,rec] [--callers 1,2,4,...,128]
 *        [--intra 1] [--open-seconds 3] [--json bench/results/load.json]
 *        [--instances N] [--delay µs] [--preferred 16,32] [--max-batch N]   override Kiln's settings
 *        [--tune]                                   Kiln alone over a grid of settings at 64 callers
 *        [--adaptive] [--multiples 2,5,20]          adaptive batching against fixed delays (bench/load-adaptive.ts)
 *        [--ort-defaults]                           onnxruntime-node with its own thread settings instead
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Option } from 'commander';
import { configure, runtime } from '../lib';
import { mlpModel } from '../lib/samples';
import { OCR_MODELS } from '../support/ppocr';
import { benchCommand, integerAtLeast, listOf, nonNegativeNumber, onlyOption, positiveNumber } from './cli';
import { callerInputs, Ceiling, KilnContender, OrtContender, type BatchDelta, type CeilingPoint, type KilnSettings, type LoadCase } from './load-contenders';
import { adaptiveReport, runAdaptive, type AdaptiveResult } from './load-adaptive';
import { otherLoad } from './load-proc';
import { closedLoop, openLoop, poissonSchedule, summarize, type Infer, type Sample } from './load-drive';
import {
  describeSettings, openTable, scanLine, sweepTable, tuneTable, verdicts,
  type KilnPoint, type ModelResult, type OpenRow, type PointRow, type TuneRow,
} from './load-report';

/** Kiln's settings from the command line; each replaces a case's own. */
interface KilnOverrides {
  maxBatch?: number;
  delay?: number;
  preferred?: number[];
  instances?: number;
}

const OPTIONS = benchCommand('load', 'Kiln\'s dynamic batcher under load, side by side with onnxruntime-node and the native harness (docs/load.md).')
  .addOption(new Option('--seconds <s>', 'per contender and point').argParser(positiveNumber).default(2))
  .addOption(onlyOption(['mlp', 'cls', 'rec']))
  .addOption(new Option('--callers <list>', 'closed-loop caller counts').argParser(listOf(integerAtLeast(1))).default([1, 2, 4, 8, 16, 32, 64, 128], '1,2,4,8,16,32,64,128'))
  .addOption(new Option('--intra <n>', 'ORT intra-op threads of every contender').argParser(integerAtLeast(1)).default(1))
  .addOption(new Option('--open-seconds <s>', 'open loop per contender (0: none)').argParser(nonNegativeNumber).default(3))
  .option('--json <file>', 'results as JSON', path.join('bench', 'results', 'load.json'))
  .addOption(new Option('--instances <n>', 'Kiln: instances').argParser(integerAtLeast(1)))
  .addOption(new Option('--delay <us>', 'Kiln: max queue delay in µs').argParser(nonNegativeNumber))
  .addOption(new Option('--preferred <list>', 'Kiln: preferred batch sizes, or none').argParser((v) => (v === 'none' ? [] : listOf(integerAtLeast(1))(v))))
  .addOption(new Option('--max-batch <n>', 'Kiln: max batch size').argParser(integerAtLeast(1)))
  .option('--tune', 'Kiln alone over a grid of settings at 64 callers')
  .option('--adaptive', 'adaptive batching against fixed delays (bench/load-adaptive.ts)')
  .addOption(new Option('--multiples <list>', 'with --adaptive: latency targets, as multiples of the single-request latency').argParser(listOf(positiveNumber)).default([2, 5, 20], '2,5,20'))
  .option('--ort-defaults', 'onnxruntime-node with its own thread settings instead')
  .parse()
  .opts<{
    seconds: number; only: string[]; callers: number[]; intra: number; openSeconds: number; json: string;
    tune?: boolean; adaptive?: boolean; multiples: number[]; ortDefaults?: boolean;
  } & KilnOverrides>();

const TARGET_CALLERS = 64;
const HARNESS_BATCHES = [1, 8, 16, 32, 64];
/** The open loop runs long enough for this many requests, so its p99 is not just the maximum. */
const OPEN_MIN_REQUESTS = 300;
const OPEN_ROUNDS = 3;

/** Kiln's settings from the command line, over a case's own. */
function overridden(k: KilnSettings): KilnSettings {
  return {
    maxBatchSize: OPTIONS.maxBatch ?? k.maxBatchSize,
    maxQueueDelayUs: OPTIONS.delay ?? k.maxQueueDelayUs,
    preferredBatchSize: OPTIONS.preferred ?? k.preferredBatchSize,
    instances: OPTIONS.instances ?? k.instances,
  };
}

/*
 * Kiln's settings per model, tuned for throughput with --tune (docs/load.md has the grid).
 * No queue delay: the batcher forms batches once per microtask turn, so the callers one
 * batch answers, which send their next requests in that same turn, batch together anyway;
 * a delay only adds latency under light load. Two instances overlap one batch's compute
 * with the JS work of answering the other; on the MLP a preferred size of 32 splits 64
 * callers into two such batches. The PP-OCR models gain nothing from batching on a CPU (a
 * batch of 64 costs more per image than a batch of 1), so their batches stay small and the
 * second instance is what adds throughput.
 */
function cases(dir: string): LoadCase[] {
  const mlp = path.join(dir, 'mlp.onnx');
  fs.writeFileSync(mlp, mlpModel());
  return [
    { name: 'mlp', file: mlp, dims: [1, 512], harnessDims: {},
      kiln: { maxBatchSize: 64, maxQueueDelayUs: 0, preferredBatchSize: [32], instances: 2 } },
    { name: 'cls', file: OCR_MODELS.cls, dims: [1, 3, 48, 192], harnessDims: { 'p2o.DynamicDimension.1': 48, 'p2o.DynamicDimension.2': 192 },
      kiln: { maxBatchSize: 4, maxQueueDelayUs: 0, preferredBatchSize: [], instances: 2 } },
    { name: 'rec', file: OCR_MODELS.rec, dims: [1, 3, 48, 320], harnessDims: { 'p2o.DynamicDimension.1': 320 },
      kiln: { maxBatchSize: 4, maxQueueDelayUs: 0, preferredBatchSize: [], instances: 2 } },
  ];
}

const log = (s: string): void => void process.stderr.write(s + '\n');

const warmUp = (infer: Infer, callers: number): Promise<Sample> => closedLoop(infer, callers, Math.min(0.3, OPTIONS.seconds / 4));

interface Contenders {
  kiln: KilnContender;
  ort: OrtContender;
  harness: Ceiling;
}

type Name = keyof Contenders;

/** Kiln's result with its batches and its latency target: queue delay + 2 × the batch's compute time. */
function kilnPoint(samples: readonly Sample[], d: BatchDelta, delayUs: number): KilnPoint {
  return { ...summarize(samples), ...d, p99BoundUs: delayUs + 2 * d.computeUsPerBatch };
}

/**
 * One sweep point: after warm-ups, two rounds of half the time each, in the order A B C then
 * C B A (A rotating from point to point), so drift and load from elsewhere fall on all three.
 */
async function sweepPoint(c: Contenders, k: KilnSettings, callers: number, turn: number): Promise<PointRow> {
  const other = otherLoad();
  const names: Name[] = ['kiln', 'ort', 'harness'];
  const order = names.map((_, i) => names[(i + turn) % names.length]);
  const samples: Record<'kiln' | 'ort', Sample[]> = { kiln: [], ort: [] };
  const harness: CeilingPoint[] = [];
  await warmUp(c.kiln.infer, callers);
  await warmUp(c.ort.infer, callers);
  const before = c.kiln.stats();
  for (const round of [order, [...order].reverse()]) {
    for (const name of round) {
      // The harness does not depend on callers: half the time is enough to follow the machine's drift.
      if (name === 'harness') harness.push(await c.harness.measure(OPTIONS.seconds / 4));
      else samples[name].push(await closedLoop(c[name].infer, callers, OPTIONS.seconds / 2));
    }
  }
  const d = KilnContender.delta(before, c.kiln.stats());
  return {
    callers,
    kiln: kilnPoint(samples.kiln, d, k.maxQueueDelayUs),
    ort: summarize(samples.ort),
    harness: Ceiling.mean(harness),
    otherCores: other(),
  };
}

/**
 * The open loop in interleaved rounds (the order of Kiln and onnxruntime-node alternates), so
 * a burst of load from elsewhere on the machine falls on both; each round has its own
 * schedule, the same for every contender, and the rounds' latencies are pooled.
 */
async function openRun(c: Contenders, rate: number, callers: number): Promise<OpenRow> {
  const seconds = Math.max(OPTIONS.openSeconds, OPEN_MIN_REQUESTS / rate) / OPEN_ROUNDS;
  const other = otherLoad();
  const samples: Record<'sender' | 'ort' | 'kiln', Sample[]> = { sender: [], ort: [], kiln: [] };
  const warm = poissonSchedule(rate, Math.min(0.5, seconds / 2), 0x3a3);
  await openLoop(c.ort.infer, warm, callers);
  await openLoop(c.kiln.infer, warm, callers);
  const warmed = c.kiln.stats();
  for (let round = 0; round < OPEN_ROUNDS; round++) {
    const schedule = poissonSchedule(rate, seconds, 0x10ad + round);
    // The sender alone (requests answered at once): the delivery latency included in both.
    samples.sender.push(await openLoop(() => Promise.resolve(), schedule, callers));
    const order = round % 2 === 0 ? (['ort', 'kiln'] as const) : (['kiln', 'ort'] as const);
    for (const k of order) samples[k].push(await openLoop(c[k].infer, schedule, callers));
  }
  return {
    rate, sender: summarize(samples.sender), ort: summarize(samples.ort),
    kiln: { ...summarize(samples.kiln), ...KilnContender.delta(warmed, c.kiln.stats()) }, otherCores: other(),
  };
}

function pointLog(model: string, p: PointRow): string {
  return `${model} ${p.callers} callers: kiln ${p.kiln.throughput.toFixed(0)}/s p99 ${p.kiln.p99Us.toFixed(0)} µs, ` +
    `ort-node ${p.ort.throughput.toFixed(0)}/s p99 ${p.ort.p99Us.toFixed(0)} µs, harness ${p.harness.throughput.toFixed(0)}/s (b${p.harness.batch}), other load ${p.otherCores.toFixed(2)} cores`;
}

async function runModel(c: LoadCase): Promise<ModelResult> {
  const k = overridden(c.kiln);
  const inputs = callerInputs(c, Math.max(...OPTIONS.callers));
  const { best, scan } = await Ceiling.find(c, OPTIONS.intra, HARNESS_BATCHES, Math.max(0.5, OPTIONS.seconds / 4));
  const contenders: Contenders = {
    kiln: await KilnContender.create(c, OPTIONS.intra, inputs, k),
    ort: await OrtContender.create(c, OPTIONS.intra, inputs, OPTIONS.ortDefaults),
    harness: best,
  };
  const points: PointRow[] = [];
  try {
    for (const [turn, callers] of OPTIONS.callers.entries()) {
      points.push(await sweepPoint(contenders, k, callers, turn));
      log(pointLog(c.name, points[points.length - 1]));
    }
    const ortMax = Math.max(...points.map((p) => p.ort.throughput));
    const open = OPTIONS.openSeconds > 0 ? await openRun(contenders, ortMax / 2, inputs.length) : undefined;
    if (open) log(`${c.name} open loop @${open.rate.toFixed(0)}/s: kiln p99 ${open.kiln.p99Us.toFixed(0)} µs, ort-node p99 ${open.ort.p99Us.toFixed(0)} µs`);
    return { model: c.name, kiln: k, scan, points, open };
  } finally {
    contenders.harness.close();
    await contenders.kiln.close();
    await contenders.ort.close();
  }
}

/** Kiln alone at 64 callers over a grid of settings: how the defaults were chosen. */
function tuneGrid(c: LoadCase): KilnSettings[] {
  const shapes: Pick<KilnSettings, 'maxBatchSize' | 'preferredBatchSize'>[] = c.name === 'mlp'
    ? [{ maxBatchSize: 64, preferredBatchSize: [] }, { maxBatchSize: 64, preferredBatchSize: [32] }]
    : [{ maxBatchSize: 64, preferredBatchSize: [] }, { maxBatchSize: 8, preferredBatchSize: [] }, { maxBatchSize: 4, preferredBatchSize: [] }];
  return shapes.flatMap((s) => [1, 2].flatMap((instances) => [0, 100, 500].map((maxQueueDelayUs) => ({ ...s, instances, maxQueueDelayUs }))));
}

async function tune(c: LoadCase): Promise<TuneRow[]> {
  const inputs = callerInputs(c, TARGET_CALLERS);
  const rows: TuneRow[] = [];
  for (const k of tuneGrid(c)) {
    const kiln = await KilnContender.create(c, OPTIONS.intra, inputs, k);
    await warmUp(kiln.infer, TARGET_CALLERS);
    const before = kiln.stats();
    const sample = await closedLoop(kiln.infer, TARGET_CALLERS, OPTIONS.seconds);
    const result = kilnPoint([sample], KilnContender.delta(before, kiln.stats()), k.maxQueueDelayUs);
    await kiln.close();
    rows.push({ model: c.name, callers: TARGET_CALLERS, kiln: k, result });
    log(`${c.name} ${describeSettings(k)}: ${result.throughput.toFixed(0)}/s p99 ${result.p99Us.toFixed(0)} µs`);
  }
  return rows;
}

function header(): string {
  const info = runtime();
  return `ONNX Runtime ${info.version} (${path.basename(info.library)}), node ${process.version}, ` +
    `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}; ORT: intra-op ${OPTIONS.intra}, inter-op 1, sequential, no spinning` +
    `${OPTIONS.ortDefaults ? ' (onnxruntime-node: its own defaults)' : ''}; ` +
    `${OPTIONS.seconds} s per contender per point in two interleaved rounds (harness ${OPTIONS.seconds / 2} s), open loop ≥ ${OPTIONS.openSeconds} s and ≥ ${OPEN_MIN_REQUESTS} requests per contender`;
}

function report(results: readonly ModelResult[]): string {
  const parts = [header(), ''];
  for (const r of results) {
    parts.push(`### ${r.model}`, '', `Kiln: ${describeSettings(r.kiln)}; ${scanLine(r)}`, '', sweepTable(r), '');
  }
  parts.push('### Open loop (Poisson arrivals at half of onnxruntime-node\'s best throughput; latency from the scheduled send)', '',
    openTable(results), '', ...verdicts(results, TARGET_CALLERS).map((v) => `- ${v}`));
  return parts.join('\n');
}

function save(file: string, body: object): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), header: header(), options: OPTIONS, ...body }, null, 2));
}

async function main(): Promise<void> {
  configure(); // Kiln creates the process's OrtEnv before onnxruntime-node does
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-load-'));
  try {
    const selected = cases(dir).filter((c) => OPTIONS.only.includes(c.name));
    if (OPTIONS.tune) {
      const rows: TuneRow[] = [];
      for (const c of selected) rows.push(...(await tune(c)));
      process.stdout.write(`${header()}\n\n${tuneTable(rows)}\n`);
      save(OPTIONS.json.replace(/\.json$/, '-tune.json'), { tune: rows });
      return;
    }
    if (OPTIONS.adaptive) {
      const results: AdaptiveResult[] = [];
      for (const c of selected) {
        const o = { intra: OPTIONS.intra, seconds: OPTIONS.seconds, multiples: OPTIONS.multiples };
        results.push(await runAdaptive(c, o, callerInputs(c, 64)));
      }
      process.stdout.write(`${header()}\n\n${adaptiveReport(results)}\n`);
      save(OPTIONS.json.replace(/\.json$/, '-adaptive.json'), { adaptive: results });
      return;
    }
    const results: ModelResult[] = [];
    for (const c of selected) results.push(await runModel(c));
    process.stdout.write(report(results) + '\n');
    save(OPTIONS.json, { results });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`${e.stack ?? e.message}\n`);
  process.exit(1);
});
