/**
 * One `kiln bench` run as an API: the targets built (the base first), the inputs made, the
 * outputs optionally checked against a reference, the targets swept over the loads side by
 * side (at each load their windows taken in turn, one target measuring at a time, so they
 * never compete and a drifting machine affects all alike), and the report.
 */
import * as os from 'os';
import { KilnError } from '../errors';
import type { ProviderName } from '../options';
import { runtime } from '../runtime';
import { checkTarget, referenceOutputs } from './check';
import { compareTargets } from './compare';
import { loadInputs, type InputSpec } from './inputs';
import { targetDriver } from './loadgen';
import { sweepAll, type RunProgress, type RunSettings } from './runner';
import { createKilnTarget, modelInputSpecs, type KilnTargetOptions, type TargetOutputs } from './targets/kiln';
import { createOrtTarget, importOrt } from './targets/ort';
import type { BenchReport, Driver, InputSet, Load, Target, TargetReport } from './types';

export const TARGET_NAMES = ['kiln', 'kiln-batcher', 'onnxruntime-node', 'native', 'served'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface BenchOptions {
  /** A model file run in this process (and by the native harness). */
  model?: { path: string; label?: string };
  /** A KServe v2 endpoint. */
  served?: { url: string; protocol: 'http' | 'grpc'; model: string; version?: string; binary: boolean };
  /** In order: the first is the base the others are compared with. */
  targets: TargetName[];
  provider?: ProviderName;
  intraOpThreads?: number;
  batcher?: KilnTargetOptions['batcher'];
  loads: Load[];
  settings: RunSettings;
  latencyBoundMs?: number;
  /** --shape: full shapes of inputs with symbolic dims. */
  shapes: Record<string, number[]>;
  /** The size of a symbolic first dim of random inputs where no --shape is given (perf_analyzer's -b). */
  batchSize: number;
  /** --input-data: random (default), zero, a file or a folder. */
  inputData?: string;
  seed: number;
  check: boolean;
  /** The command line, as typed, for the report. */
  command: string;
  progress?: RunProgress;
  /** Called as the measurement (all targets, side by side) starts and ends (the command line closes its progress bar). */
  onTarget?: (names: string, phase: 'start' | 'end') => void;
}

/** Input sets check compares on (the first few). */
const CHECKED_SETS = 4;

/** Random input sets made when the data is random. */
const RANDOM_SETS = 4;

/** Where the inputs' shapes come from: the server's metadata for a served base, else the model file. */
async function inputSpecs(o: BenchOptions): Promise<InputSpec[]> {
  if (o.targets[0] === 'served' && o.served) {
    const s = o.served;
    const meta = s.protocol === 'grpc'
      ? await (await import('./targets/grpc')).grpcModelMetadata(s.url, s.model, s.version)
      : await (await import('./targets/http')).httpModelMetadata(s.url, s.model, s.version);
    return meta.inputs.map((i) => ({ name: i.name, type: i.type, shape: [...i.shape] }));
  }
  if (!o.model) throw new KilnError('E_INVALID_ARGUMENT', 'kiln bench needs a model file, or a server (-u) and its model name (-m)');
  return modelInputSpecs(o.model.path, o.model.label ?? o.model.path);
}

/** Symbolic first dims sized `batch` where no --shape sets them (random data only). */
function batchDefaults(specs: readonly InputSpec[], batch: number): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const s of specs) {
    const symbolic = s.shape.map((d) => typeof d !== 'number' || d < 0);
    if (symbolic[0] && !symbolic.slice(1).some(Boolean)) out[s.name] = [batch, ...(s.shape.slice(1) as number[])];
  }
  return out;
}

function needModel(o: BenchOptions, name: string): { path: string; label: string } {
  if (!o.model) throw new KilnError('E_INVALID_ARGUMENT', `the ${name} target runs a model file in this process: give one`);
  return { path: o.model.path, label: o.model.label ?? o.model.path };
}

async function createTarget(name: Exclude<TargetName, 'native'>, o: BenchOptions, inputs: InputSet[]): Promise<Target> {
  if (name === 'served') {
    const s = o.served ?? (() => {
      throw new KilnError('E_INVALID_ARGUMENT', 'a served target needs a server (-u) and its model name (-m)');
    })();
    const options = { url: s.url, model: s.model, ...(s.version !== undefined ? { version: s.version } : {}), inputs, binary: s.binary };
    return s.protocol === 'grpc' ? (await import('./targets/grpc')).createGrpcTarget(options) : (await import('./targets/http')).createHttpTarget(options);
  }
  const m = needModel(o, name);
  const common = { model: m.path, label: m.label, inputs, provider: o.provider, intraOpThreads: o.intraOpThreads };
  if (name === 'onnxruntime-node') return createOrtTarget(common);
  return createKilnTarget({ ...common, ...(name === 'kiln-batcher' ? { batcher: o.batcher ?? {} } : {}) });
}

async function createDriver(name: TargetName, o: BenchOptions, inputs: InputSet[]): Promise<{ driver: Driver; target?: Target }> {
  if (name === 'native') {
    const m = needModel(o, name);
    const shapes = Object.fromEntries(Object.entries(inputs[0]).map(([input, t]) => [input, [...t.dims]]));
    const { createNativeDriver } = await import('./targets/native');
    const driver = await createNativeDriver({ model: m.path, shapes, ...(o.provider ? { provider: o.provider } : {}), ...(o.intraOpThreads !== undefined ? { intraOpThreads: o.intraOpThreads } : {}) });
    return { driver };
  }
  const target = await createTarget(name, o, inputs);
  return { driver: targetDriver(target, { seed: o.seed, inProcess: name !== 'served' }), target };
}

/**
 * The reference outputs of `--check`: onnxruntime-node's when it is installed and the model
 * is a local file, else a plain Kiln session's; for a served model alone, the base's.
 */
async function reference(o: BenchOptions, inputs: InputSet[]): Promise<TargetOutputs[]> {
  const count = Math.min(inputs.length, CHECKED_SETS);
  let name: Exclude<TargetName, 'native'> = 'served';
  if (o.model) name = await importOrt().then(() => 'onnxruntime-node' as const, () => 'kiln' as const);
  const target = await createTarget(name, o, inputs);
  try {
    if (!target.outputs) throw new KilnError('E_INVALID_ARGUMENT', `--check: the ${name} target cannot return outputs`);
    return await referenceOutputs(target, count);
  } finally {
    await target.close();
  }
}

function machine(): BenchReport['machine'] {
  const cpus = os.cpus();
  let onnxRuntime: string | undefined;
  try {
    onnxRuntime = runtime().version;
  } catch {
    onnxRuntime = undefined; // a served run needs no local ONNX Runtime
  }
  return {
    cpus: cpus.length, cpuModel: cpus[0]?.model.trim() ?? 'unknown', memoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`, node: process.version, ...(onnxRuntime ? { onnxRuntime } : {}),
  };
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  if (!o.targets.length) throw new KilnError('E_INVALID_ARGUMENT', 'kiln bench needs at least one target');
  if (!o.loads.length) throw new KilnError('E_INVALID_ARGUMENT', 'kiln bench needs at least one load');
  // A missing optional target is told before anything is measured.
  if (o.targets.includes('onnxruntime-node')) await importOrt();
  const startedAt = new Date().toISOString();
  const specs = await inputSpecs(o);
  const inputs = loadInputs(o.inputData, specs, o.shapes, { count: RANDOM_SETS, seed: o.seed, defaults: batchDefaults(specs, o.batchSize) });
  const ref = o.check ? await reference(o, inputs) : undefined;
  const made: { driver: Driver; target?: Target }[] = [];
  let targets: TargetReport[];
  try {
    for (const name of o.targets) made.push(await createDriver(name, o, inputs));
    const checks: (TargetReport['check'] | undefined)[] = [];
    for (const { target } of made) checks.push(ref && target ? await checkTarget(target, ref) : undefined);
    o.onTarget?.(o.targets.join(', '), 'start');
    targets = await sweepAll(made.map((m) => m.driver), o.loads, o.settings, { latencyBoundMs: o.latencyBoundMs, progress: o.progress });
    targets.forEach((t, i) => {
      const check = checks[i];
      if (check) t.check = check;
    });
  } finally {
    for (const { driver } of made) await driver.close();
    o.onTarget?.(o.targets.join(', '), 'end');
  }
  const s = o.settings;
  return {
    tool: 'kiln bench',
    version: 1,
    command: o.command,
    startedAt,
    machine: machine(),
    ...(o.model || o.served ? { model: { path: o.model?.label ?? o.model?.path ?? `${o.served?.url}/${o.served?.model}`, inputs: specs.map((i) => ({ name: i.name, type: i.type, shape: i.shape.map((d) => (d === null ? '?' : d)) })) } } : {}),
    settings: {
      ...('ms' in s.limit ? { windowMs: s.limit.ms } : { windowRequests: s.limit.requests }),
      warmupRequests: s.warmupRequests, stabilityWindows: s.stabilityWindows, stabilityPercentage: s.stabilityPercentage,
      maxWindows: s.maxWindows, percentile: s.percentile,
    },
    targets,
    comparisons: compareTargets(targets),
  };
}
