/**
 * onnxruntime-node's session and run options, read and mapped to Kiln's. Options ONNX Runtime
 * knows but Kiln cannot honour are checked and then ignored; anything else invalid is a
 * KilnError with Kiln's message shape.
 */
import { KilnError } from '../errors';
import {
  OptionReader, optionError,
  type GraphOptimizationLevel, type LogLevel, type ProviderSpec, type SessionOptions as KilnSessionOptions,
} from '../options';

export interface ExecutionProviderOption {
  readonly name: string;
  /** cpu's useArena, cuda's and tensorrt's deviceId and Kiln's other provider options. */
  readonly [option: string]: unknown;
}
export type ExecutionProviderConfig = string | ExecutionProviderOption;
export type OutputLocation = 'cpu' | 'cpu-pinned';

export interface SessionOptions {
  executionProviders?: readonly ExecutionProviderConfig[];
  intraOpNumThreads?: number;
  interOpNumThreads?: number;
  /** Accepted and ignored: Kiln keeps the model's symbolic dims. */
  freeDimensionOverrides?: { readonly [dimensionName: string]: number };
  graphOptimizationLevel?: GraphOptimizationLevel;
  /** Accepted and ignored, as are enableMemPattern, logId and logVerbosityLevel. */
  enableCpuMemArena?: boolean;
  enableMemPattern?: boolean;
  executionMode?: 'sequential' | 'parallel';
  optimizedModelFilePath?: string;
  enableProfiling?: boolean;
  profileFilePrefix?: string;
  logId?: string;
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  logVerbosityLevel?: number;
  /** Kiln's outputs are in host memory (pinned when CUDA is in use). */
  preferredOutputLocation?: OutputLocation | { readonly [outputName: string]: OutputLocation };
  /** Turns on CUDA graphs for the cuda provider. */
  enableGraphCapture?: boolean;
  /** Session config entries, nested by their dotted names: `{ session: { x: '1' } }` is `session.x`. */
  extra?: Record<string, unknown>;
}

export interface RunOptions {
  /** Accepted and ignored, as are logVerbosityLevel, tag and extra. */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  logVerbosityLevel?: number;
  /** Ignored, as onnxruntime-node ignores it; abort with `signal` instead. */
  terminate?: boolean;
  tag?: string;
  extra?: Record<string, unknown>;
  /** Kiln's addition: aborting rejects the run with E_ABORTED. */
  signal?: AbortSignal;
}

const SESSION_KEYS = [
  'executionProviders', 'intraOpNumThreads', 'interOpNumThreads', 'freeDimensionOverrides', 'graphOptimizationLevel',
  'enableCpuMemArena', 'enableMemPattern', 'executionMode', 'optimizedModelFilePath', 'enableProfiling',
  'profileFilePrefix', 'logId', 'logSeverityLevel', 'logVerbosityLevel', 'preferredOutputLocation',
  'enableGraphCapture', 'extra',
] as const;
const RUN_KEYS = ['logSeverityLevel', 'logVerbosityLevel', 'terminate', 'tag', 'extra', 'signal'] as const;

const LOG_LEVEL_NAMES: readonly LogLevel[] = ['verbose', 'info', 'warning', 'error', 'fatal'];
/** Providers of onnxruntime-common that Kiln lacks: skipped as onnxruntime-node skips unavailable ones. */
const FOREIGN_PROVIDERS: ReadonlySet<string> = new Set(['coreml', 'dml', 'nnapi', 'qnn', 'wasm', 'webgl', 'webgpu', 'webnn', 'xnnpack']);
const OUTPUT_LOCATIONS: readonly OutputLocation[] = ['cpu', 'cpu-pinned'];

function providers(r: OptionReader, graphCapture: boolean): ProviderSpec[] | undefined {
  const list = r.raw('executionProviders');
  if (list === undefined) return undefined;
  if (!Array.isArray(list)) throw optionError('executionProviders', 'an array of providers', list);
  const out: ProviderSpec[] = [];
  const skipped: string[] = [];
  list.forEach((p: unknown, i) => {
    const field = `executionProviders[${i}]`;
    const name = typeof p === 'string' ? p : p !== null && typeof p === 'object' ? (p as { name?: unknown }).name : undefined;
    if (typeof name === 'string' && FOREIGN_PROVIDERS.has(name)) {
      skipped.push(name);
    } else if (name === 'cpu') {
      // Kiln's CPU provider takes no options; ORT's useArena only tunes allocation.
      if (typeof p === 'object') OptionReader.of(p, field, ['name', 'useArena']).bool('useArena');
      out.push('cpu');
    } else if (name === 'cuda' || name === 'tensorrt') {
      const spec: { [option: string]: unknown } = typeof p === 'string' ? { name } : { ...(p as ExecutionProviderOption) };
      if (name === 'cuda' && graphCapture && spec.enableCudaGraph === undefined) spec.enableCudaGraph = true;
      out.push(spec as unknown as ProviderSpec); // Session.create checks the provider's options
    } else {
      throw optionError(field, `one of cpu, cuda, tensorrt (or ${[...FOREIGN_PROVIDERS].join(', ')}, which Kiln skips)`, p);
    }
  });
  if (out.length === 0) {
    throw new KilnError('E_PROVIDER_UNAVAILABLE', `none of the execution providers ${skipped.join(', ')} is available in Kiln; it has cpu, cuda and tensorrt`);
  }
  if (skipped.length > 0) process.emitWarning(`kiln/ort: execution providers ${skipped.join(', ')} are not available in Kiln and were skipped`);
  return out;
}

/** `{ a: { b: 'x' } }` -> `{ 'a.b': 'x' }`; leaves must be strings, as onnxruntime-node requires. */
function flattenExtra(value: unknown, prefix: string, out: Record<string, string>, seen: Set<object>): void {
  const field = prefix ? `extra.${prefix}` : 'extra';
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw optionError(field, 'a string or an object of config entries', value);
  if (seen.has(value)) throw optionError(field, 'an object without cycles', value);
  seen.add(value);
  for (const [key, v] of Object.entries(value)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (typeof v === 'string') out[name] = v;
    else flattenExtra(v, name, out, seen);
  }
}

/** Checks that every value of an object option passes `check`. */
function eachValue(r: OptionReader, key: string, expected: string, check: (v: unknown) => boolean): void {
  const obj = r.raw(key);
  if (obj === undefined) return;
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw optionError(key, `an object of name -> ${expected}`, obj);
  for (const [name, v] of Object.entries(obj)) if (!check(v)) throw optionError(`${key}.${name}`, expected, v);
}

const isString = (v: unknown): boolean => typeof v === 'string';
const isLocation = (v: unknown): boolean => OUTPUT_LOCATIONS.includes(v as OutputLocation);

function checkIgnored(r: OptionReader): void {
  r.bool('enableCpuMemArena');
  r.bool('enableMemPattern');
  r.int('logVerbosityLevel', 0);
  const logId = r.raw('logId');
  if (logId !== undefined && !isString(logId)) throw optionError('logId', 'a string', logId);
  eachValue(r, 'freeDimensionOverrides', 'a non-negative integer', (v) => Number.isSafeInteger(v) && (v as number) >= 0);
  if (!isLocation(r.raw('preferredOutputLocation'))) {
    eachValue(r, 'preferredOutputLocation', `one of ${OUTPUT_LOCATIONS.join(', ')}`, isLocation);
  }
}

/** onnxruntime-node's session options as Kiln's. */
export function sessionOptions(options: unknown): KilnSessionOptions {
  const r = OptionReader.of(options, '', SESSION_KEYS);
  checkIgnored(r);
  const out: KilnSessionOptions = {
    providers: providers(r, r.bool('enableGraphCapture') ?? false),
    intraOpThreads: r.int('intraOpNumThreads', 0, 1024),
    interOpThreads: r.int('interOpNumThreads', 0, 1024),
    executionMode: r.oneOf('executionMode', ['sequential', 'parallel'] as const),
    optimizedModelPath: r.string('optimizedModelFilePath'),
  };
  out.graphOptimizationLevel = r.oneOf('graphOptimizationLevel', ['disabled', 'basic', 'extended', 'layout', 'all'] as const);
  const prefix = r.string('profileFilePrefix');
  if (r.bool('enableProfiling')) out.profiling = prefix ?? 'onnxruntime_profile_';
  const severity = r.int('logSeverityLevel', 0, 4);
  if (severity !== undefined) out.logLevel = LOG_LEVEL_NAMES[severity];
  const extra = r.raw('extra');
  if (extra !== undefined) {
    const entries: Record<string, string> = {};
    flattenExtra(extra, '', entries, new Set());
    out.configEntries = entries;
  }
  return out;
}

/** Checks onnxruntime-common's run options; only `signal` has an effect in Kiln. */
export function runSignal(options: unknown): AbortSignal | undefined {
  const r = OptionReader.of(options, 'runOptions', RUN_KEYS);
  r.int('logSeverityLevel', 0, 4);
  r.int('logVerbosityLevel', 0);
  r.bool('terminate');
  const tag = r.raw('tag');
  if (tag !== undefined && !isString(tag)) throw optionError('runOptions.tag', 'a string', tag);
  const extra = r.raw('extra');
  if (extra !== undefined && (extra === null || typeof extra !== 'object' || Array.isArray(extra))) throw optionError('runOptions.extra', 'an object', extra);
  const signal = r.raw('signal');
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw optionError('runOptions.signal', 'an AbortSignal', signal);
  return signal as AbortSignal | undefined;
}
