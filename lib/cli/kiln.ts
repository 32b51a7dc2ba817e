#!/usr/bin/env node
/**
 * kiln info                      the ONNX Runtime library, its providers, the CUDA driver
 * kiln bench [options]           latency of run and runSync on a model, median and p99
 *   --model mlp|add|conv|big-output|FILE.onnx   (default mlp: a sample the package builds)
 *   --batch N (default 1)  --calls N (default 3000)  --intra N  --concurrency N (default 1)
 * kiln optimize IN.onnx -o OUT.onnx [--level basic|extended|all]
 *                                ONNX Runtime's graph optimizations, saved; node counts and latency
 * kiln quantize IN.onnx -o OUT.onnx [--calibration DATA] [options]
 *                                INT8: dynamic, or static (QDQ) with calibration data; tuning
 * kiln fp16 IN.onnx -o OUT.onnx [--fp16-io] [--block Op,...]
 *                                float32 -> float16, sensitive ops and the IO kept float32
 * kiln serve --model-repository DIR | MODEL.onnx | --example
 *                                a KServe v2 / Triton-compatible inference server over HTTP and gRPC
 * Run `kiln help` for every option.
 */
import * as fs from 'fs';
import * as path from 'path';
import { cuda } from '../device';
import { encodeModel } from '../onnx';
import * as optimize from '../optimize';
import type { SessionOptions } from '../options';
import { KilnError, toKilnError } from '../errors';
import { runtime } from '../runtime';
import { formatMicroseconds, quantile } from '../latency';
import { addModel, bigOutputModel, convModel, mlpModel, prng } from '../samples';
import { Session, type Feeds, type Results, type ValueInfo } from '../session';
import { ARRAY_TYPE, Tensor, type TensorType } from '../tensor';
import { startServer } from '../server/serve';

const SAMPLES: Record<string, () => Uint8Array> = { mlp: mlpModel, add: addModel, conv: convModel, 'big-output': bigOutputModel };

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new KilnError('E_INVALID_ARGUMENT', `--${name} needs a value`);
  return v;
}

function intFlag(args: string[], name: string, fallback: number | undefined, min: number): number | undefined {
  const v = flag(args, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new KilnError('E_INVALID_ARGUMENT', `--${name} must be an integer >= ${min}, received ${v}`);
  return n;
}

/** Seeded inputs for every model input: the first dynamic dim is the batch, others are 1. */
function feedsFor(session: Session, batch: number): Feeds {
  const feeds: Record<string, Tensor> = {};
  const next = prng(7);
  for (const input of session.inputs) {
    let batchUsed = false;
    const dims = input.shape.map((d) => {
      if (typeof d === 'number') return d;
      if (batchUsed) return 1;
      batchUsed = true;
      return batch;
    });
    const n = dims.reduce((a, b) => a * b, 1);
    const type = input.type as TensorType;
    if (type === 'string') {
      feeds[input.name] = new Tensor('string', Array.from({ length: n }, () => 'kiln'), dims);
    } else if (type in ARRAY_TYPE) {
      const data = new ARRAY_TYPE[type as Exclude<TensorType, 'string'>](new ArrayBuffer(n * ARRAY_TYPE[type as Exclude<TensorType, 'string'>].BYTES_PER_ELEMENT), 0, n);
      if (data instanceof Float32Array || data instanceof Float64Array) {
        for (let i = 0; i < n; i++) data[i] = next() / 2;
      }
      feeds[input.name] = new Tensor(type, data as never, dims);
    } else {
      throw new KilnError('E_INVALID_ARGUMENT', `input "${input.name}" is a ${input.type}: kiln bench feeds tensors only`);
    }
  }
  return feeds;
}

function stats(us: number[]): string {
  us.sort((a, b) => a - b);
  return `median ${formatMicroseconds(quantile(us, 0.5))}  p99 ${formatMicroseconds(quantile(us, 0.99))}  (${us.length} calls)`;
}

async function bench(args: string[]): Promise<void> {
  const modelArg = flag(args, 'model') ?? 'mlp';
  const batch = intFlag(args, 'batch', 1, 1) as number;
  const calls = intFlag(args, 'calls', 3000, 1) as number;
  const concurrency = intFlag(args, 'concurrency', 1, 1) as number;
  const intra = intFlag(args, 'intra', undefined, 0);
  const model = SAMPLES[modelArg] ? SAMPLES[modelArg]() : modelArg;
  if (typeof model === 'string' && !fs.existsSync(model)) {
    throw new KilnError('E_NOT_FOUND', `--model: no sample called "${model}" (${Object.keys(SAMPLES).join(', ')}) and no such file`);
  }
  const session = await Session.create(model, intra === undefined ? {} : { intraOpThreads: intra });
  const feeds = feedsFor(session, batch);
  const info = runtime();
  process.stdout.write(`kiln bench: ${SAMPLES[modelArg] ? `sample "${modelArg}"` : modelArg}, batch ${batch}, ` +
    `ONNX Runtime ${info.version}, providers ${session.providers.join(', ')}\n`);
  for (let i = 0; i < Math.min(200, calls); i++) session.runSync(feeds);
  const sync: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    session.runSync(feeds);
    sync.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  process.stdout.write(`  runSync          ${stats(sync)}\n`);
  const lat: number[] = [];
  const t0 = process.hrtime.bigint();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next++ < calls) {
      const t = process.hrtime.bigint();
      await session.run(feeds);
      lat.push(Number(process.hrtime.bigint() - t) / 1000);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(`  run (${concurrency} in flight) ${stats(lat)}  ${((calls * batch) / seconds).toFixed(0)} inferences/s\n`);
  await session.dispose();
}

function info(): void {
  const rt = runtime();
  const gpus = cuda.devices();
  const lines = [
    `ONNX Runtime ${rt.version} (C API ${rt.apiVersion}) from ${rt.library}`,
    `providers: ${rt.providers.join(', ')}`,
    `global thread pools: intra-op ${rt.intraOpThreads || 'one per core'}, inter-op ${rt.interOpThreads || 'default'}, spinning ${rt.spinning ? 'on' : 'off'}`,
    gpus.problem ? `CUDA: ${gpus.problem}` : `CUDA: driver ${gpus.library} (CUDA ${gpus.driverVersion})`,
  ];
  for (const d of gpus.devices) {
    lines.push(`  cuda:${d.id} ${d.name}, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB, compute ${d.computeCapability}, ${d.multiprocessors} SMs, PCI ${d.pciBusId}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

// ---------------------------------------------------------------------------------------------
// Model tools: optimize, quantize, fp16

interface Parsed {
  positional: string[];
  values: Map<string, string[]>;
  switches: Set<string>;
}

/** `args` by the flags `command` takes: `--name value` / `--name=value`, switches, positionals. */
function parseArgs(command: string, args: string[], valueFlags: readonly string[], switchFlags: readonly string[]): Parsed {
  const out: Parsed = { positional: [], values: new Map(), switches: new Set() };
  for (let i = 0; i < args.length; i++) {
    let arg = args[i];
    if (arg === '-o') arg = '--output';
    if (!arg.startsWith('--')) {
      out.positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (switchFlags.includes(name)) {
      if (eq >= 0) throw new KilnError('E_INVALID_ARGUMENT', `--${name} takes no value`);
      out.switches.add(name);
    } else if (valueFlags.includes(name)) {
      const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
      if (value === undefined || (eq < 0 && value.startsWith('--'))) throw new KilnError('E_INVALID_ARGUMENT', `--${name} needs a value`);
      out.values.set(name, [...(out.values.get(name) ?? []), value]);
    } else {
      throw new KilnError('E_INVALID_ARGUMENT', `kiln ${command}: unknown option ${arg} (see kiln help)`);
    }
  }
  return out;
}

function value(p: Parsed, name: string): string | undefined {
  const v = p.values.get(name);
  if (v && v.length > 1) throw new KilnError('E_INVALID_ARGUMENT', `--${name} is given ${v.length} times`);
  return v?.[0];
}

function numberValue(p: Parsed, name: string, check: (n: number) => boolean, what: string): number | undefined {
  const v = value(p, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || !check(n)) throw new KilnError('E_INVALID_ARGUMENT', `--${name} must be ${what}, received ${v}`);
  return n;
}

function listValue(p: Parsed, name: string): string[] | undefined {
  const v = p.values.get(name);
  return v ? v.flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '') : undefined;
}

/** `--dim name=N`, repeatable. */
function dimsValue(p: Parsed): Record<string, number> {
  const dims: Record<string, number> = {};
  for (const d of p.values.get('dim') ?? []) {
    const eq = d.lastIndexOf('=');
    const n = Number(d.slice(eq + 1));
    if (eq <= 0 || !Number.isInteger(n) || n < 1) throw new KilnError('E_INVALID_ARGUMENT', `--dim takes NAME=SIZE (a symbolic dim of an input and its size >= 1), received ${d}`);
    dims[d.slice(0, eq)] = n;
  }
  return dims;
}

/** The input and output files of a model command. */
function files(command: string, p: Parsed): { input: string; output: string } {
  if (p.positional.length !== 1) throw new KilnError('E_INVALID_ARGUMENT', `kiln ${command} takes one model file, received ${p.positional.length ? p.positional.join(' ') : 'none'}`);
  const input = p.positional[0];
  const output = value(p, 'output');
  if (!output) throw new KilnError('E_INVALID_ARGUMENT', `kiln ${command}: give the output file with -o OUT.onnx`);
  if (!fs.existsSync(input)) throw new KilnError('E_NOT_FOUND', `no such model file: ${input}`);
  checkWritable(output);
  return { input, output };
}

/** Refuses, before any work, an output file that could not be written. */
function checkWritable(file: string): void {
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new KilnError('E_NOT_FOUND', `output ${file}: the folder ${dir} does not exist`);
  if (!fs.statSync(dir).isDirectory()) throw new KilnError('E_INVALID_ARGUMENT', `output ${file}: ${dir} is not a folder`);
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new KilnError('E_INVALID_ARGUMENT', `output ${file} is a folder, expected a file name`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new KilnError('E_INVALID_ARGUMENT', `output ${file}: the folder ${dir} is not writable`);
  }
}

/** What the CLI reports for a failure: Kiln's code, or a file system error told as one. */
function cliError(e: unknown): KilnError {
  if (e instanceof KilnError) return e;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  const message = e instanceof Error ? e.message.replace(/^[A-Z]+: /, '') : String(e);
  if (code === 'ENOENT') return new KilnError('E_NOT_FOUND', message, { cause: e });
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return new KilnError('E_INVALID_ARGUMENT', message, { cause: e });
  return toKilnError(e);
}

const formatBytes = (n: number): string => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const ratio = (after: number, before: number): string => (before > 0 && Number.isFinite(after / before) ? `${(after / before).toFixed(2)}x` : '-');

/** Rows as aligned columns: the first column left-aligned, the rest right-aligned. */
function table(rows: readonly (readonly string[])[], indent = '  '): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => indent + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('   ').trimEnd()).join('\n') + '\n';
}

/** The model's inputs (a session on the CPU, disposed at once). */
async function inputsOf(model: string | Uint8Array): Promise<readonly ValueInfo[]> {
  const session = await Session.create(model, { graphOptimizationLevel: 'disabled' });
  const inputs = session.inputs;
  await session.dispose();
  return inputs;
}

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

/** Latency rows, or one row saying why there are none (the model is written by then). */
async function latencySection(before: Uint8Array, after: Uint8Array, feeds: () => [Feeds, Feeds], options: SessionOptions, calls: number | undefined): Promise<string[][]> {
  if (calls === 0) return [];
  try {
    return latencyRows(await compareLatency(before, after, feeds(), options, calls));
  } catch (e) {
    return [['latency', `not measured: ${(e as Error).message}`]];
  }
}

/** Inputs for timing and their description: see latencyFeeds. */
interface TimingInputs {
  feeds: Feeds;
  /** "x [1,3,48,320] (first eval sample)" */
  shapes: string;
}

/**
 * The inputs latency is measured on: the shapes of the first real sample given, a symbolic
 * dim sized by --dim where given (else the sample's size, else 1); the sample's own data when
 * its shapes are kept, else seeded random data.
 */
function latencyFeeds(inputs: readonly ValueInfo[], sample: Feeds | undefined, dims: Readonly<Record<string, number>>, source: string): TimingInputs {
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
  const why = !sample ? 'random data, symbolic dims from --dim, else 1' : random ? `random data, the first ${source} sample's shapes with --dim` : `the first ${source} sample`;
  return { feeds, shapes: `${described.join(', ')} (${why})` };
}

const METRIC_NAMES: Readonly<Record<optimize.Metric, string>> = { top1: 'top-1 agreement', cosine: 'cosine similarity', maxError: 'max abs error' };

/** The collapse check's metric and floor: --metric (cosine by default) and --floor (0.9). */
function floorOption(p: Parsed, metric: optimize.Metric | undefined): { metric: optimize.Metric; floor: number } | undefined {
  const given = numberValue(p, 'floor', (n) => n >= 0, 'a number >= 0');
  if (p.switches.has('no-floor')) {
    if (given !== undefined) throw new KilnError('E_INVALID_ARGUMENT', 'give --floor or --no-floor, not both');
    return undefined;
  }
  // Max abs error has no scale to default to: without --floor the check is on cosine similarity.
  const checked = metric === 'maxError' && given === undefined ? 'cosine' : (metric ?? 'cosine');
  if (checked === 'maxError' && given === 0) throw new KilnError('E_INVALID_ARGUMENT', '--floor with --metric max-error is the largest acceptable error: give one > 0');
  if (checked !== 'maxError' && given !== undefined && given > 1) throw new KilnError('E_INVALID_ARGUMENT', `--floor for ${METRIC_NAMES[checked]} is at most 1, received ${given}`);
  return { metric: checked, floor: given ?? 0.9 };
}

/**
 * The collapse check's summary line. A model below the floor is not written, and the command
 * ends with floorFailure's E_ACCURACY after the summary.
 */
function floorLine(check: optimize.FloorCheck | undefined, on: string, output: string): string {
  if (!check) return '  check: none (--no-floor)\n';
  const name = METRIC_NAMES[check.metric];
  const relation = check.metric === 'maxError' ? `at most ${check.floor}` : `at least ${check.floor}`;
  return `  check: ${name} ${check.value.toPrecision(4)} against FP32 on ${on} (${relation} required): ${check.passed ? `passed, ${output} written` : `FAILED, ${output} not written`}\n`;
}

function floorFailure(check: optimize.FloorCheck, what: string, on: string, output: string, hint: string): KilnError {
  const name = METRIC_NAMES[check.metric];
  return new KilnError('E_ACCURACY', `the ${what} model's ${name} against FP32 is ${check.value.toPrecision(4)} on ${on}, ` +
    `${check.metric === 'maxError' ? 'above' : 'below'} the floor ${check.floor}: ${output} not written (${hint}; set --floor, or --no-floor to write it anyway)`);
}

/** Width of the stage names in progress bars ("calibration: histograms"). */
const STAGE_WIDTH = 24;

/** Progress on stderr: a bar redrawn in place on a terminal, else a line every 10%. */
function progressReporter(): { update(stage: string, done: number, total: number): void; end(completed: boolean): void } {
  const tty = process.stderr.isTTY === true;
  let stage = '';
  let lastTenth = -1;
  let open = false;
  let last = { done: 0, total: 0 };
  // Tuning's total is an upper bound: a stage that ends early is shown as done.
  const end = (completed = true): void => {
    if (!open) return;
    if (completed && last.done < last.total) {
      process.stderr.write(tty ? `\r  ${stage.padEnd(STAGE_WIDTH)} [${'#'.repeat(30)}] done after ${last.done}${' '.repeat(8)}\n` : `  ${stage} done after ${last.done} of at most ${last.total}\n`);
    } else if (tty) {
      process.stderr.write('\n');
    }
    open = false;
  };
  return {
    update(next, done, total) {
      if (next !== stage) {
        end(true);
        stage = next;
        lastTenth = -1;
      }
      const t = Math.max(1, total);
      const d = Math.min(done, t);
      const share = d / t;
      last = { done: d, total: t };
      open = true;
      if (tty) {
        const width = 30;
        const filled = Math.round(share * width);
        process.stderr.write(`\r  ${stage.padEnd(STAGE_WIDTH)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${d}/${t}`);
        return;
      }
      const tenth = Math.floor(share * 10);
      if (tenth > lastTenth) {
        lastTenth = tenth;
        process.stderr.write(`  ${stage} ${Math.round(share * 100)}% (${d}/${t})\n`);
      }
    },
    end,
  };
}

const LEVELS = ['basic', 'extended', 'all'] as const;

async function optimizeCommand(args: string[]): Promise<void> {
  const p = parseArgs('optimize', args, ['output', 'level', 'dim', 'calls', 'external-data'], []);
  const { input, output } = files('optimize', p);
  const level = (value(p, 'level') ?? 'extended') as (typeof LEVELS)[number];
  if (!LEVELS.includes(level)) throw new KilnError('E_INVALID_ARGUMENT', `--level must be one of ${LEVELS.join(', ')}, received ${level}`);
  const calls = numberValue(p, 'calls', (n) => Number.isInteger(n) && n >= 0, 'an integer >= 0');
  const threshold = numberValue(p, 'external-data', (n) => Number.isInteger(n) && n >= 0, 'a size in bytes');
  const dims = dimsValue(p);

  const original = encodeModel(optimize.readModel(input));
  const optimized = await optimize.optimizeBytes(original, level);
  const model = optimize.readModel(optimized);
  const written = optimize.writeModel(model, output, threshold === undefined ? {} : { externalDataThreshold: threshold });

  const before = optimize.opCounts(optimize.readModel(original));
  const after = optimize.opCounts(model);
  const ops = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((op) => (before[op] ?? 0) !== (after[op] ?? 0)).sort();
  const total = (c: Record<string, number>): number => Object.values(c).reduce((x, y) => x + y, 0);
  const signed = (n: number): string => (n > 0 ? `+${n}` : String(n));
  const rows: string[][] = [['nodes', 'before', 'after', 'change']];
  for (const op of ops) rows.push([`  ${op}`, String(before[op] ?? 0), String(after[op] ?? 0), signed((after[op] ?? 0) - (before[op] ?? 0))]);
  if (ops.length === 0) rows.push(['  (no op type changed in number)', '', '', '']);
  rows.push(['  total', String(total(before)), String(total(after)), signed(total(after) - total(before))]);

  const timeLoad = async (bytes: Uint8Array, options: SessionOptions): Promise<number> => {
    const t0 = performance.now();
    const s = await Session.create(bytes, options);
    const ms = performance.now() - t0;
    await s.dispose();
    return ms;
  };
  // Best of two each, alternating: the first load in a process also pays for warming up.
  let loadBefore = Infinity;
  let loadAfter = Infinity;
  for (let i = 0; i < 2; i++) {
    loadBefore = Math.min(loadBefore, await timeLoad(original, {}));
    loadAfter = Math.min(loadAfter, await timeLoad(optimized, { graphOptimizationLevel: 'disabled' }));
  }
  const inputs = await inputsOf(original);
  const lat = await latencySection(original, optimized, () => {
    const f = optimize.randomFeeds(inputs, { dims });
    return [f, f];
  }, { graphOptimizationLevel: 'disabled' }, calls);

  const out = [`kiln optimize: ${input} -> ${output}, level ${level} (ONNX Runtime ${runtime().version}, CPU provider)\n`];
  out.push(table(rows));
  out.push(table([
    ['', 'before', 'after', 'ratio'],
    ['size', formatBytes(original.byteLength), formatBytes(written), ratio(written, original.byteLength)],
    ['load', `${loadBefore.toFixed(1)} ms`, `${loadAfter.toFixed(1)} ms`, ratio(loadAfter, loadBefore)],
    ...lat,
  ]));
  out.push('  load: the original as ONNX Runtime loads it by default (optimizing it), the saved model with load-time optimization off.\n');
  if (lat.length) out.push(`  latency: batch-1 runs on random inputs (symbolic dims ${Object.keys(dims).length ? `${Object.entries(dims).map(([k, v]) => `${k}=${v}`).join(', ')}, others 1` : '1'}), both graphs run as saved (load-time optimization off).\n`);
  if (level === 'all') {
    out.push('  note: level "all" adds layout optimizations (NCHWc, kernels for this CPU\'s instruction set): ONNX Runtime warns that\n' +
      '  such a model is specific to the hardware it was saved on. Load it only on this machine type; save at "extended" to ship.\n');
  }
  process.stdout.write(out.join(''));
}

const METRICS: Readonly<Record<string, optimize.Metric>> = { top1: 'top1', cosine: 'cosine', 'max-error': 'maxError' };
const METHODS = ['minmax', 'percentile', 'entropy'] as const;

function metricOption(p: Parsed): optimize.Metric | undefined {
  const name = value(p, 'metric');
  if (name === undefined) return undefined;
  const metric = METRICS[name];
  if (!metric) throw new KilnError('E_INVALID_ARGUMENT', `--metric must be one of ${Object.keys(METRICS).join(', ')}, received ${name}`);
  return metric;
}

/** float16 outputs as float32, so that they compare with a float32 model's. */
function widen(results: Results[]): Results[] {
  return results.map((r) => {
    const o: Results = {};
    for (const [k, t] of Object.entries(r)) {
      o[k] = t.type === 'float16' ? new Tensor('float32', Float32Array.from(t.data as Uint16Array, optimize.float16Value), t.dims) : t;
    }
    return o;
  });
}

/** Top-1 agreement, cosine similarity and max abs error of `candidate` against `reference`. */
function accuracyRows(reference: Results[], candidate: Results[], chosen: optimize.Metric | undefined, count: number, source: string): string[][] {
  const mark = (m: optimize.Metric): string => (m === chosen ? ' *' : '');
  const top1 = optimize.compareOutputs(reference, candidate, 'top1');
  const cos = optimize.compareOutputs(reference, candidate, 'cosine');
  const err = -optimize.compareOutputs(reference, candidate, 'maxError');
  return [
    [`accuracy against FP32 on ${count} ${source} sample${count === 1 ? '' : 's'}${chosen ? ' (* --metric)' : ''}`, '', '', ''],
    [`  top-1 agreement${mark('top1')}`, '1', top1.toFixed(4), (top1 - 1).toFixed(4)],
    [`  cosine similarity${mark('cosine')}`, '1', cos.toFixed(6), (cos - 1).toExponential(2)],
    [`  max abs error${mark('maxError')}`, '0', err.toPrecision(4), `+${err.toPrecision(4)}`],
  ];
}

async function quantizeCommand(args: string[]): Promise<void> {
  const p = parseArgs('quantize', args, [
    'output', 'calibration', 'tolerance', 'tolerance-absolute', 'metric', 'method', 'percentile', 'op-types', 'include', 'exclude',
    'eval', 'trt-table', 'external-data', 'dim', 'calls', 'floor',
  ], ['per-tensor', 'symmetric', 'no-preprocess', 'no-fuse', 'no-floor', 'quantize-output-layer']);
  const { input, output } = files('quantize', p);
  const dims = dimsValue(p);
  const calibration = value(p, 'calibration');
  const evalSpec = value(p, 'eval');
  const metric = metricOption(p);
  const relative = numberValue(p, 'tolerance', (n) => n >= 0 && n < 1, 'a share between 0 and 1 (0.01: 1%)');
  const absolute = numberValue(p, 'tolerance-absolute', (n) => n >= 0, 'a number >= 0');
  if (relative !== undefined && absolute !== undefined) throw new KilnError('E_INVALID_ARGUMENT', 'give --tolerance or --tolerance-absolute, not both');
  const tolerance = relative !== undefined ? { relative } : absolute !== undefined ? { absolute } : undefined;
  if (metric === 'maxError' && relative !== undefined) throw new KilnError('E_INVALID_ARGUMENT', '--metric max-error scores 0 at best, so a relative tolerance means nothing: give --tolerance-absolute (the largest acceptable error)');
  const percentile = numberValue(p, 'percentile', (n) => n > 0 && n <= 100, 'a percentage in (0, 100]');
  let method = value(p, 'method') as (typeof METHODS)[number] | undefined;
  if (method !== undefined && !METHODS.includes(method)) throw new KilnError('E_INVALID_ARGUMENT', `--method must be one of ${METHODS.join(', ')}, received ${method}`);
  if (percentile !== undefined) {
    if (method !== undefined && method !== 'percentile') throw new KilnError('E_INVALID_ARGUMENT', `--percentile goes with --method percentile, not ${method}`);
    method = 'percentile';
  }
  const trtTable = value(p, 'trt-table');
  if (!calibration) {
    for (const [flag, given] of [['method', method], ['trt-table', trtTable], ['symmetric', p.switches.has('symmetric') || undefined]] as const) {
      if (given !== undefined) throw new KilnError('E_INVALID_ARGUMENT', `--${flag} is for static quantization: give --calibration DATA`);
    }
    if (tolerance && !evalSpec) throw new KilnError('E_INVALID_ARGUMENT', 'tuning dynamic quantization needs held-out samples to score it on: give --eval DATA (or --calibration DATA for static quantization)');
  }
  const threshold = numberValue(p, 'external-data', (n) => Number.isInteger(n) && n >= 0, 'a size in bytes');
  const calls = numberValue(p, 'calls', (n) => Number.isInteger(n) && n >= 0, 'an integer >= 0');
  const gate = floorOption(p, metric);

  const original = encodeModel(optimize.readModel(input));
  const inputs = await inputsOf(original);
  const calibrationSamples = calibration ? await optimize.loadSamples(calibration, inputs, { dims }) : undefined;
  const evalSamples = evalSpec ? await optimize.loadSamples(evalSpec, inputs, { dims }) : calibrationSamples;
  const progress = progressReporter();
  let result: optimize.QuantizeResult;
  try {
    result = await optimize.quantize(original, {
      calibration: calibrationSamples,
      method,
      percentile,
      opTypes: listValue(p, 'op-types'),
      includeNodes: listValue(p, 'include'),
      excludeNodes: listValue(p, 'exclude'),
      perChannel: !p.switches.has('per-tensor'),
      symmetricActivations: p.switches.has('symmetric'),
      preprocess: !p.switches.has('no-preprocess'),
      fuse: !p.switches.has('no-fuse'),
      keepOutputLayer: !p.switches.has('quantize-output-layer'),
      tolerance,
      metric: metric ?? 'top1',
      evaluationSamples: evalSamples,
      tensorRtCalibrationTable: trtTable,
      onProgress: (stage, done, total) => progress.update(stage, done, total),
    });
  } catch (e) {
    progress.end(false);
    throw e;
  }
  progress.end(true);

  // The check against FP32, on the samples given (else one random input), before writing.
  const checkSamples = evalSamples?.length ? evalSamples : undefined;
  const source = evalSpec ? 'eval' : 'calibration';
  const timing = latencyFeeds(inputs, checkSamples?.[0], dims, source);
  const on = checkSamples ? `${checkSamples.length} ${source} sample${checkSamples.length === 1 ? '' : 's'}` : `one random input, ${timing.shapes.replace(/ \(.*\)$/, '')}: no real data given (--eval DATA)`;
  const reference = await optimize.outputsOf(original, checkSamples ?? [timing.feeds]);
  const candidate = await optimize.outputsOf(result.model, checkSamples ?? [timing.feeds]);
  const check = gate ? optimize.checkFloor(reference, candidate, gate.metric, gate.floor) : undefined;
  const written = check && !check.passed ? undefined : optimize.writeModel(optimize.readModel(result.model), output, threshold === undefined ? {} : { externalDataThreshold: threshold });

  const rows: string[][] = [
    ['', 'FP32', 'INT8', 'change'],
    ['size', formatBytes(original.byteLength), formatBytes(written ?? result.model.byteLength), ratio(written ?? result.model.byteLength, original.byteLength)],
    ...(written === undefined ? [] : await latencySection(original, result.model, () => [timing.feeds, timing.feeds], {}, calls)),
  ];
  rows.push(...accuracyRows(reference, candidate, metric ?? (tolerance ? 'top1' : undefined), checkSamples?.length ?? 1, checkSamples ? source : 'random'));
  const what = result.mode === 'dynamic'
    ? 'dynamic INT8 (weights int8, activations quantized at run time)'
    : `static INT8 in QDQ form, ${method ?? 'minmax'}${method === 'percentile' ? ` ${percentile ?? 99.999}%` : ''} calibration on ${calibrationSamples?.length} samples, ` +
      `${p.switches.has('symmetric') ? 'symmetric int8' : 'uint8'} activations`;
  const out = [`kiln quantize: ${input} -> ${output}, ${what}, ${p.switches.has('per-tensor') ? 'per-tensor' : 'per-channel'} weights\n`];
  out.push(table(rows));
  if (rows.some((r) => r[0].startsWith('latency') && r.length > 2)) out.push(`  latency: on ${timing.shapes}, both models loaded with ONNX Runtime's default optimizations, interleaved\n`);
  out.push(floorLine(check, on, output));
  const t = result.tuning;
  if (t) {
    const how = t.met ? 'met' : 'NOT met, even with every candidate in FP32';
    out.push(metric === 'maxError'
      ? `  tuning: max abs error at most ${(-t.required).toPrecision(4)} required, final ${(-t.score).toPrecision(4)} (${how}) after ${t.evaluations} evaluations\n`
      : `  tuning: ${metric ?? 'top1'} baseline ${t.baseline.toFixed(4)}, required >= ${t.required.toFixed(4)}, final ${t.score.toFixed(4)} (${how}) after ${t.evaluations} evaluations\n`);
    const l = t.latency;
    if (l) {
      const change = (x: number): string => `${x >= l.quantized ? '+' : ''}${((x / l.quantized - 1) * 100).toFixed(1)}%`;
      out.push(`  tuning latency (one intra-op thread, on ${l.input}): everything quantized ${formatMicroseconds(l.quantized)}, the result ${formatMicroseconds(l.result)} (${change(l.result)})` +
        (l.fewestNodes === undefined ? ', the set with the fewest nodes in FP32\n' : `; chosen for speed over the set with the fewest nodes in FP32, which ran ${formatMicroseconds(l.fewestNodes)} (${change(l.fewestNodes)})\n`));
    }
  }
  if (result.fused.hardSwish || result.fused.convAffine) {
    out.push(`  rewrites: ${result.fused.hardSwish} hard-swish folded into HardSigmoid + Mul, ${result.fused.convAffine} Conv(s) absorbed a scale/shift\n`);
  }
  out.push(`  nodes: ${result.quantized.length} quantized, ${result.skipped.length} left in FP32\n`);
  if (result.quantized.length) {
    const shown = result.quantized.slice(0, 50);
    out.push(`  quantized: ${shown.join(', ')}${result.quantized.length > shown.length ? `, ... and ${result.quantized.length - shown.length} more` : ''}\n`);
  }
  if (result.skipped.length) {
    // Tuning's fallbacks first, most sensitive first, then the rest as reported.
    const fallback = new Map((t?.fallback ?? []).map((f, i) => [f.node, i]));
    const listed = [...result.skipped].sort((a, b) => (fallback.get(a.node) ?? Infinity) - (fallback.get(b.node) ?? Infinity));
    const shown = listed.slice(0, 50);
    const width = Math.max(...shown.map((s) => s.node.length));
    out.push('  left in FP32:\n');
    for (const s of shown) out.push(`    ${s.node.padEnd(width)}   ${s.reason}\n`);
    if (listed.length > shown.length) out.push(`    ... and ${listed.length - shown.length} more\n`);
  }
  if (trtTable) out.push(`  TensorRT calibration table: ${trtTable}\n`);
  process.stdout.write(out.join(''));
  if (check && !check.passed) throw floorFailure(check, 'quantized', on, output, result.mode === 'static' ? '--tolerance returns the most sensitive nodes to FP32; min-max calibration clips nothing' : '--tolerance with --eval returns the most sensitive nodes to FP32');
}

async function fp16Command(args: string[]): Promise<void> {
  const p = parseArgs('fp16', args, ['output', 'block', 'block-nodes', 'eval', 'dim', 'calls', 'external-data', 'metric', 'floor'], ['keep-io', 'fp16-io', 'no-floor']);
  const { input, output } = files('fp16', p);
  if (p.switches.has('keep-io') && p.switches.has('fp16-io')) throw new KilnError('E_INVALID_ARGUMENT', 'give --keep-io or --fp16-io, not both');
  const keepIoTypes = !p.switches.has('fp16-io');
  const dims = dimsValue(p);
  const calls = numberValue(p, 'calls', (n) => Number.isInteger(n) && n >= 0, 'an integer >= 0');
  const threshold = numberValue(p, 'external-data', (n) => Number.isInteger(n) && n >= 0, 'a size in bytes');
  const gate = floorOption(p, metricOption(p));
  const evalSpec = value(p, 'eval');

  const model = optimize.readModel(input);
  const original = encodeModel(model);
  const inputs = await inputsOf(original);
  const samples = evalSpec ? await optimize.loadSamples(evalSpec, inputs, { dims }) : undefined;
  await optimize.addValueTypes(model);
  const report = optimize.convertFloat16(model, { keepIoTypes, blockOps: listValue(p, 'block'), blockNodes: listValue(p, 'block-nodes') });
  const converted = encodeModel(model);

  const out = [`kiln fp16: ${input} -> ${output}, ${keepIoTypes ? 'inputs and outputs kept float32' : 'float16 inputs and outputs'}\n`];
  const byOp = new Map<string, number>();
  for (const b of report.blocked) byOp.set(b.opType, (byOp.get(b.opType) ?? 0) + 1);
  out.push(
    `  nodes in float16:   ${report.converted}\n` +
    `  nodes kept float32: ${report.blocked.length}${byOp.size ? ` (${[...byOp].map(([op, n]) => `${op} ${n}`).join(', ')})` : ''}\n` +
    `  weights converted:  ${report.initializers} (${report.clamped} values clamped to ±65504, ${report.underflowed} non-zero values too small for float16 kept at ±2^-24)\n` +
    `  Casts inserted:     ${report.casts}\n`);
  for (const b of report.blocked.slice(0, 30)) out.push(`    ${b.node} (${b.opType}): ${b.reason}\n`);
  if (report.blocked.length > 30) out.push(`    ... and ${report.blocked.length - 30} more\n`);
  for (const w of report.warnings.slice(0, 10)) out.push(`  warning: ${w}\n`);

  // ONNX Runtime checks the types as it loads; its CPU provider runs float16 nodes it has no
  // kernel for through Casts to float32, so this measures agreement more than speed.
  let fp16Inputs: readonly ValueInfo[];
  try {
    fp16Inputs = await inputsOf(converted);
  } catch (e) {
    process.stdout.write(out.join(''));
    throw new KilnError('E_MODEL_LOAD', `ONNX Runtime (CPU) cannot load the converted model, so it cannot be checked: ${(e as Error).message}; ${output} not written`, { cause: e });
  }
  const timing = latencyFeeds(inputs, samples?.[0], dims, 'eval');
  const checked = samples ?? [timing.feeds];
  const on = samples ? `${samples.length} eval sample${samples.length === 1 ? '' : 's'}` : `one random input, ${timing.shapes.replace(/ \(.*\)$/, '')}: no real data given (--eval DATA)`;
  const asFp16 = (f: Feeds): Feeds => {
    const o: Record<string, Tensor> = {};
    for (const i of fp16Inputs) {
      const t = f[i.name] as Tensor;
      o[i.name] = i.type === 'float16' && t.type === 'float32' ? new Tensor('float16', optimize.toFloat16Array(t.data as Float32Array).data, t.dims) : t;
    }
    return o;
  };
  const reference = await optimize.outputsOf(original, checked);
  const candidate = widen(await optimize.outputsOf(converted, checked.map(asFp16)));
  const check = gate ? optimize.checkFloor(reference, candidate, gate.metric, gate.floor) : undefined;
  const written = check && !check.passed ? undefined : optimize.writeModel(model, output, threshold === undefined ? {} : { externalDataThreshold: threshold });

  const rows: string[][] = [['', 'FP32', 'FP16', 'change']];
  rows.push(['size', formatBytes(original.byteLength), formatBytes(written ?? converted.byteLength), ratio(written ?? converted.byteLength, original.byteLength)]);
  rows.push(...accuracyRows(reference, candidate, undefined, checked.length, samples ? 'eval' : 'random'));
  if (written !== undefined) rows.push(...(await latencySection(original, converted, () => [timing.feeds, asFp16(timing.feeds)], {}, calls)));
  out.push(table(rows));
  if (rows.some((r) => r[0].startsWith('latency') && r.length > 2)) out.push(`  latency: on ${timing.shapes}\n`);
  out.push(floorLine(check, on, output));
  out.push('  On the CPU provider float16 nodes without a CPU kernel run through inserted Casts, so the CPU latency\n' +
    '  says little: float16 pays off on CUDA and TensorRT.\n');
  process.stdout.write(out.join(''));
  if (check && !check.passed) throw floorFailure(check, 'float16', on, output, '--block and --block-nodes keep ops in float32');
}

async function serveCommand(args: string[]): Promise<void> {
  const p = parseArgs('serve', args, ['model-repository', 'host', 'port', 'grpc-port', 'model-control-mode', 'load-model', 'auth-token', 'exit-timeout-secs', 'log-level', 'max-body-bytes', 'default-max-batch-size', 'repository-poll-secs', 'queue-full-http-status'], ['example', 'auth-health']);
  const pollSecs = numberValue(p, 'repository-poll-secs', (n) => n > 0, 'a number of seconds > 0');
  const queueFull = numberValue(p, 'queue-full-http-status', (n) => n === 429 || n === 503, '429 or 503') as 429 | 503 | undefined;
  const port = numberValue(p, 'port', (n) => Number.isInteger(n) && n >= 0 && n < 65536, 'a port number (0: any free port)');
  const grpcPort = numberValue(p, 'grpc-port', (n) => Number.isInteger(n) && n >= -1 && n < 65536, 'a port number (0: any free port, -1: no gRPC)');
  const exitTimeout = numberValue(p, 'exit-timeout-secs', (n) => n >= 0, 'a number of seconds >= 0') ?? 30;
  const bodyLimit = numberValue(p, 'max-body-bytes', (n) => Number.isInteger(n) && n > 0, 'a size in bytes');
  const defaultMaxBatchSize = numberValue(p, 'default-max-batch-size', (n) => Number.isInteger(n) && n >= 0, 'an integer >= 0');
  const mode = value(p, 'model-control-mode');
  if (mode !== undefined && !['none', 'explicit', 'poll'].includes(mode)) throw new KilnError('E_INVALID_ARGUMENT', `--model-control-mode must be none, explicit or poll, received ${mode}`);
  if (p.positional.length > 1) throw new KilnError('E_INVALID_ARGUMENT', `kiln serve takes one model file, received ${p.positional.join(' ')}`);
  const server = await startServer({
    modelRepository: value(p, 'model-repository'),
    model: p.positional[0],
    example: p.switches.has('example') || undefined,
    host: value(p, 'host'),
    httpPort: port,
    grpcPort,
    controlMode: mode as 'none' | 'explicit' | 'poll' | undefined,
    loadModels: p.values.get('load-model'),
    authToken: value(p, 'auth-token') ?? process.env.KILN_AUTH_TOKEN,
    healthWithoutAuth: !p.switches.has('auth-health'),
    bodyLimit,
    defaultMaxBatchSize,
    repositoryPollSecs: pollSecs,
    queueFullStatus: queueFull,
    logLevel: value(p, 'log-level'),
  });
  const ready = server.manager.index().filter((s) => s.state === 'READY');
  const lines = [`kiln serve: KServe v2 over HTTP at ${server.url}${server.grpc ? ` and gRPC at ${server.grpc}` : ''} (model repository ${server.repository}), models: ${ready.map((s) => `${s.name} v${s.version}`).join(', ') || 'none ready'}`];
  if (ready.some((s) => s.name === 'add')) {
    const body = JSON.stringify({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [10, 20, 30, 40] }] });
    lines.push(`try: curl -s -X POST ${server.url}/v2/models/add/infer -H 'content-type: application/json' -d '${body}'`);
  }
  lines.push('stop with Ctrl-C (or SIGTERM): requests in flight are answered first');
  process.stdout.write(lines.join('\n') + '\n');
  // Stop taking connections, answer what was taken, release the models; bounded.
  const stop = (signal: string): void => {
    server.logger.info({ signal, exitTimeoutSecs: exitTimeout }, 'shutting down');
    const timer = setTimeout(() => {
      server.logger.error({ exitTimeoutSecs: exitTimeout }, 'requests still in flight at the exit timeout');
      process.exit(1);
    }, exitTimeout * 1000);
    server.close().then(() => {
      clearTimeout(timer);
      process.exit(0);
    }, (e: unknown) => {
      server.logger.error({ err: e }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

const USAGE = `usage:
  kiln info
  kiln bench [--model mlp|add|conv|big-output|FILE.onnx] [--batch N] [--calls N] [--intra N] [--concurrency N]
  kiln optimize IN.onnx -o OUT.onnx [--level basic|extended|all] [--dim NAME=N]... [--calls N] [--external-data BYTES]
      ONNX Runtime's graph optimizations applied once and saved (default level extended; "all" is
      specific to this machine's CPU). Prints node counts and load/run latency before and after.
  kiln quantize IN.onnx -o OUT.onnx [options]
      INT8 quantization: dynamic without calibration data, static (QDQ) with --calibration.
      --calibration DATA     samples: a folder of .npy/.raw files (single input) or of sub-folders
                             with <input>.npy/.raw (several inputs), or a .js/.cjs/.mjs module
      --method minmax|percentile|entropy   --percentile P (default 99.999)
      --per-tensor           one weight scale per tensor (default per channel)
      --symmetric            int8 activations with zero point 0 (TensorRT's form; default uint8)
      --op-types LIST        default: dynamic MatMul,Gemm; static Conv,MatMul (Gemms split into
                             MatMul + Add), plus Mul,Add of two activations when listed
      --include NODE,...   --exclude NODE,...  (node names as after preprocessing; the summary lists them)
      --no-fuse              skip the rewrites (hard-swish, scales and shifts around Convs)
      --quantize-output-layer  quantize the output layer too (by default the nodes nearest the outputs,
                             the logits, stay FP32 when dense and at most 5% of the weights)
      --tolerance R | --tolerance-absolute A   tuning: return the most sensitive nodes to FP32
                             until the score is within R (relative) or A (absolute) of FP32's
      --metric top1|cosine|max-error   tuning's score (default top1) and the check's (default cosine)
      --eval DATA            held-out samples for tuning and the check (default: the calibration samples)
      --floor X | --no-floor the check: the model is compared with FP32 on the eval or calibration samples
                             (else one random input) and not written, exit 1 (E_ACCURACY), when its
                             score is below X (default cosine similarity 0.9; with --metric max-error,
                             the largest acceptable error)
      --trt-table FILE       also write a TensorRT calibration table (static)
      --no-preprocess        skip ONNX Runtime's basic optimizations before quantizing
      --external-data BYTES  store initializers of at least BYTES in OUT.onnx.data
      --dim NAME=N           size of a symbolic dim for .raw samples and the latency inputs (latency runs
                             on the first sample's shapes, else 1 for a dim not given)
      --calls N              latency runs per model (0: skip; default: about 2 s worth)
  kiln serve (--model-repository DIR | MODEL.onnx | --example) [options]
      A KServe v2 (Triton-compatible) inference server over HTTP and gRPC: a Triton model repository
      (<model>/config.pbtxt or config.json, <model>/<version>/model.onnx; a model without config
      is completed from the ONNX model), one model file (named after the file), or --example (a
      repository Kiln writes: the sample MLP and add models).
      --host H (default 127.0.0.1)   --port N (HTTP, default 8000; 0: a free port, printed)
      --grpc-port N (default 8001; 0: a free port; -1: no gRPC)
      --model-control-mode none|explicit|poll   --load-model NAME (explicit; repeatable, * for all)
      --repository-poll-secs S (poll mode: re-read the repository every S seconds)
      --queue-full-http-status 503|429 (default 503, as Triton)
      --auth-token T (or KILN_AUTH_TOKEN): requests need Authorization: Bearer T; --auth-health
                             requires it on /v2/health too   --exit-timeout-secs S (default 30)
      --max-body-bytes N (default 64 MiB)   --default-max-batch-size N (default 64)   --log-level L
  kiln fp16 IN.onnx -o OUT.onnx [--keep-io | --fp16-io] [--block Op,...] [--block-nodes NODE,...]
            [--eval DATA] [--metric M] [--floor X | --no-floor] [--dim NAME=N]... [--calls N] [--external-data BYTES]
      float32 -> float16. Inputs and outputs stay float32 unless --fp16-io; Range, NonMaxSuppression,
      RoiAlign, TopK, ArgMax/ArgMin, CumSum, Resize/Upsample, random and quantization ops, ops of other
      domains, nodes with subgraphs, BatchNormalization with statistics beyond ±65504 and arithmetic on
      integers cast to float stay float32 (plus --block / --block-nodes), behind Casts.
      --eval DATA: samples to check the outputs on and to time (default one random input); --floor as for quantize
`;

const COMMANDS: Record<string, (args: string[]) => Promise<void> | void> = {
  info: () => info(),
  bench,
  optimize: optimizeCommand,
  quantize: quantizeCommand,
  fp16: fp16Command,
  serve: serveCommand,
};

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const run = command === undefined ? undefined : COMMANDS[command];
  // `kiln CMD --help` (or -h) prints the usage, whatever else is given.
  if (run && !rest.includes('--help') && !rest.includes('-h')) return run(rest);
  if (command !== undefined && !run && command !== 'help' && command !== '--help' && command !== '-h') {
    process.stderr.write(`kiln: unknown command "${command}"; the commands are ${Object.keys(COMMANDS).join(', ')}, help\n`);
    process.exitCode = 2;
  }
  process.stdout.write(USAGE);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  const error = cliError(e);
  process.stderr.write(`kiln: ${error.code}: ${error.message}\n`);
  process.exit(1);
});
