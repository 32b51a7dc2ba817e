/**
 * Option validation: one helper, one message shape
 * (`option "x.y": expected <what>, received <value>`), and the mapping of Kiln's option
 * names to what the native layer and ONNX Runtime's V2 provider options take.
 */
import { KilnError } from './errors';
import type { NativeProvider, NativeSessionConfig } from './binding';

export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (Array.isArray(v)) return `array(${v.length})`;
  if (v !== null && typeof v === 'object') return v.constructor?.name ?? 'object';
  return String(v);
}

export function optionError(field: string, expected: string, received: unknown): KilnError {
  return new KilnError('E_INVALID_ARGUMENT', `option "${field}": expected ${expected}, received ${describeValue(received)}`);
}

/** Reads typed option values from a plain object, rejecting unknown keys. */
export class OptionReader {
  constructor(private readonly obj: Record<string, unknown>, private readonly prefix: string, known: readonly string[]) {
    for (const key of Object.keys(obj)) {
      if (!known.includes(key) && obj[key] !== undefined) {
        throw new KilnError('E_INVALID_ARGUMENT', `option "${this.field(key)}" is not known; known options: ${known.join(', ')}`);
      }
    }
  }

  static of(value: unknown, field: string, known: readonly string[]): OptionReader {
    if (value === undefined || value === null) return new OptionReader({}, field, known);
    if (typeof value !== 'object' || Array.isArray(value)) throw optionError(field, 'an object', value);
    return new OptionReader(value as Record<string, unknown>, field, known);
  }

  field(key: string): string {
    return this.prefix ? `${this.prefix}.${key}` : key;
  }

  raw(key: string): unknown {
    return this.obj[key];
  }

  int(key: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const v = this.obj[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
      throw optionError(this.field(key), `an integer ${range}`, v);
    }
    return v;
  }

  bool(key: string): boolean | undefined {
    const v = this.obj[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw optionError(this.field(key), 'a boolean', v);
    return v;
  }

  string(key: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.length === 0) throw optionError(this.field(key), 'a non-empty string', v);
    return v;
  }

  oneOf<T extends string>(key: string, values: readonly T[]): T | undefined {
    const v = this.obj[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !values.includes(v as T)) throw optionError(this.field(key), `one of ${values.join(', ')}`, v);
    return v as T;
  }
}

export type ProviderName = 'cpu' | 'cuda' | 'tensorrt';

export interface CudaProviderOptions {
  name: 'cuda';
  deviceId?: number;
  gpuMemLimit?: number;
  arenaExtendStrategy?: 'nextPowerOfTwo' | 'sameAsRequested';
  cudnnConvAlgoSearch?: 'exhaustive' | 'heuristic' | 'default';
  doCopyInDefaultStream?: boolean;
  enableCudaGraph?: boolean;
  useTf32?: boolean;
  /** A cudaStream_t the provider runs on, as an address. */
  userComputeStream?: bigint | number;
}

/** Shapes per input, e.g. `{ x: [1, 3, 224, 224] }`. */
export type ShapeProfile = Record<string, readonly number[]>;

export interface TensorRtProviderOptions {
  name: 'tensorrt';
  deviceId?: number;
  fp16?: boolean;
  int8?: boolean;
  int8CalibrationTable?: string;
  int8UseNativeCalibrationTable?: boolean;
  engineCachePath?: string;
  timingCachePath?: string;
  dumpEpContextModel?: boolean;
  epContextFilePath?: string;
  maxWorkspaceSize?: number;
  builderOptimizationLevel?: number;
  profileMinShapes?: ShapeProfile;
  profileOptShapes?: ShapeProfile;
  profileMaxShapes?: ShapeProfile;
}

export interface CpuProviderOptions {
  name: 'cpu';
}

export type ProviderSpec = ProviderName | CpuProviderOptions | CudaProviderOptions | TensorRtProviderOptions;

export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'layout' | 'all';
export type LogLevel = 'verbose' | 'info' | 'warning' | 'error' | 'fatal';

export interface SessionOptions {
  /** Execution providers in preference order; one that cannot be had falls back to the next. Default ['cpu']. */
  providers?: ProviderSpec[];
  /** Threads of the session's own intra-op pool; unset: the process-wide pool (see configure()). */
  intraOpThreads?: number;
  interOpThreads?: number;
  /** Spinning of the session's own pools; off by default. */
  spinning?: boolean;
  executionMode?: 'sequential' | 'parallel';
  graphOptimizationLevel?: GraphOptimizationLevel;
  /** Where ORT writes the optimized graph. */
  optimizedModelPath?: string;
  /** true, or a file prefix for ORT's profile JSON. */
  profiling?: boolean | string;
  logLevel?: LogLevel;
  /** ORT session config entries (AddSessionConfigEntry). */
  configEntries?: Record<string, string>;
  /** Kiln executor threads running this session's asynchronous runs (default 1). */
  executorThreads?: number;
  /**
   * How long an idle executor thread polls for work before it sleeps (default 50): a busy
   * caller's next run then starts without a futex wake-up.
   */
  executorSpinMicroseconds?: number;
  /**
   * Runs whose compute time is up to this many microseconds are awaited by polling instead
   * of parking the JS thread, which saves the wake-up (tens of µs on a VM). Default 1000
   * when a core is left over by the session's intra-op threads, else 50: with every core
   * computing, a polling JS thread would slow longer runs down.
   */
  completionPollMicroseconds?: number;
  /**
   * run() executes on the calling thread when this session's recent runs predict a run
   * shorter than handing it to an executor thread costs (both learned; at most 100 µs): the
   * event loop is then blocked about as long as the hand-off would have taken. Runs with an
   * AbortSignal and sessions with several executor threads always use the executor. Default
   * true; false sends every run() to the executor.
   */
  inlineRuns?: boolean;
  /**
   * On a GPU provider (default true): Kiln copies inputs to the device on a CUDA stream of
   * the session's own (the one the provider computes on), binds outputs on the device, copies
   * them back into pinned host memory and synchronises once per run; batches are assembled in
   * pinned memory. False leaves the copies to ONNX Runtime.
   */
  deviceIo?: boolean;
  /**
   * Progress of a slow load (TensorRT building its engines): called every 5 s while the load
   * runs and once when it ends. Default: a line on stderr.
   */
  onProgress?: (message: string) => void;
}

/**
 * Completion polling for a session whose runs each occupy `intraThreads` of `cores`: the
 * budget (µs), and how many runs may be in flight while the JS thread polls without taking
 * a core from them (past that, the short default budget only).
 */
export function completionPolling(intraThreads: number, cores: number): { budgetUs: number; maxInFlight: number } {
  const spare = Math.floor((cores - 1) / intraThreads);
  return spare >= 1 ? { budgetUs: 1000, maxInFlight: spare } : { budgetUs: 50, maxInFlight: 1 };
}

export const LOG_LEVELS: Readonly<Record<LogLevel, number>> = { verbose: 0, info: 1, warning: 2, error: 3, fatal: 4 };
const GRAPH_LEVELS: Readonly<Record<GraphOptimizationLevel, number>> = { disabled: 0, basic: 1, extended: 2, layout: 3, all: 99 };

const SESSION_KEYS = [
  'providers', 'intraOpThreads', 'interOpThreads', 'spinning', 'executionMode', 'graphOptimizationLevel',
  'optimizedModelPath', 'profiling', 'logLevel', 'configEntries', 'executorThreads', 'executorSpinMicroseconds',
  'completionPollMicroseconds', 'inlineRuns', 'deviceIo', 'onProgress',
] as const;

function shapeProfile(r: OptionReader, key: string): string | undefined {
  const v = r.raw(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw optionError(r.field(key), 'an object of input name -> dims', v);
  const parts: string[] = [];
  for (const [name, dims] of Object.entries(v as Record<string, unknown>)) {
    if (!Array.isArray(dims) || dims.length === 0 || !dims.every((d) => Number.isInteger(d) && d > 0)) {
      throw optionError(`${r.field(key)}.${name}`, 'an array of positive integers', dims);
    }
    parts.push(`${name}:${dims.join('x')}`);
  }
  return parts.join(',');
}

function providerOptions(spec: Exclude<ProviderSpec, ProviderName>, field: string): NativeProvider {
  const out: [string, string][] = [];
  const put = (key: string, v: string | number | boolean | undefined): void => {
    if (v !== undefined) out.push([key, typeof v === 'boolean' ? (v ? '1' : '0') : String(v)]);
  };
  if (spec.name === 'cpu') {
    OptionReader.of(spec, field, ['name']);
    return { name: 'cpu', options: out };
  }
  if (spec.name === 'cuda') {
    const r = OptionReader.of(spec, field, [
      'name', 'deviceId', 'gpuMemLimit', 'arenaExtendStrategy', 'cudnnConvAlgoSearch', 'doCopyInDefaultStream',
      'enableCudaGraph', 'useTf32', 'userComputeStream',
    ]);
    put('device_id', r.int('deviceId', 0));
    put('gpu_mem_limit', r.int('gpuMemLimit', 1));
    const arena = r.oneOf('arenaExtendStrategy', ['nextPowerOfTwo', 'sameAsRequested'] as const);
    put('arena_extend_strategy', arena && (arena === 'nextPowerOfTwo' ? 'kNextPowerOfTwo' : 'kSameAsRequested'));
    put('cudnn_conv_algo_search', r.oneOf('cudnnConvAlgoSearch', ['exhaustive', 'heuristic', 'default'] as const)?.toUpperCase());
    put('do_copy_in_default_stream', r.bool('doCopyInDefaultStream'));
    put('enable_cuda_graph', r.bool('enableCudaGraph'));
    put('use_tf32', r.bool('useTf32'));
    const stream = r.raw('userComputeStream');
    if (stream !== undefined) {
      if (!((typeof stream === 'bigint' && stream > 0n) || (typeof stream === 'number' && Number.isSafeInteger(stream) && stream > 0))) {
        throw optionError(r.field('userComputeStream'), 'a cudaStream_t address (bigint or positive integer)', stream);
      }
      put('user_compute_stream', String(stream));
    }
    return { name: 'cuda', options: out };
  }
  if (spec.name === 'tensorrt') {
    const r = OptionReader.of(spec, field, [
      'name', 'deviceId', 'fp16', 'int8', 'int8CalibrationTable', 'int8UseNativeCalibrationTable', 'engineCachePath',
      'timingCachePath', 'dumpEpContextModel', 'epContextFilePath', 'maxWorkspaceSize', 'builderOptimizationLevel',
      'profileMinShapes', 'profileOptShapes', 'profileMaxShapes',
    ]);
    put('device_id', r.int('deviceId', 0));
    put('trt_fp16_enable', r.bool('fp16'));
    put('trt_int8_enable', r.bool('int8'));
    put('trt_int8_calibration_table_name', r.string('int8CalibrationTable'));
    put('trt_int8_use_native_calibration_table', r.bool('int8UseNativeCalibrationTable'));
    const engine = r.string('engineCachePath');
    if (engine) put('trt_engine_cache_enable', true);
    put('trt_engine_cache_path', engine);
    const timing = r.string('timingCachePath');
    if (timing) put('trt_timing_cache_enable', true);
    put('trt_timing_cache_path', timing);
    put('trt_dump_ep_context_model', r.bool('dumpEpContextModel'));
    put('trt_ep_context_file_path', r.string('epContextFilePath'));
    put('trt_max_workspace_size', r.int('maxWorkspaceSize', 1));
    put('trt_builder_optimization_level', r.int('builderOptimizationLevel', 0, 5));
    const min = shapeProfile(r, 'profileMinShapes');
    const opt = shapeProfile(r, 'profileOptShapes');
    const max = shapeProfile(r, 'profileMaxShapes');
    if ((min || opt || max) && !(min && opt && max)) {
      throw optionError(field, 'profileMinShapes, profileOptShapes and profileMaxShapes together', 'only some of them');
    }
    put('trt_profile_min_shapes', min);
    put('trt_profile_opt_shapes', opt);
    put('trt_profile_max_shapes', max);
    return { name: 'tensorrt', options: out };
  }
  throw optionError(`${field}.name`, 'one of cpu, cuda, tensorrt', (spec as { name?: unknown }).name);
}

export function providerList(value: unknown, field = 'providers'): NativeProvider[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length === 0) throw optionError(field, 'a non-empty array of providers', value);
  return value.map((p: unknown, i) => {
    const f = `${field}[${i}]`;
    if (p === 'cpu' || p === 'cuda' || p === 'tensorrt') return { name: p, options: [] };
    if (typeof p !== 'object' || p === null) throw optionError(f, "'cpu', 'cuda', 'tensorrt' or a provider object", p);
    return providerOptions(p as Exclude<ProviderSpec, ProviderName>, f);
  });
}

export type SessionConfig = NativeSessionConfig & { completionPollMicroseconds?: number; inlineRuns: boolean };

/** Validated native configuration; an unset completion poll is filled by completionPolling(). */
export function sessionConfig(options: unknown): SessionConfig {
  const r = OptionReader.of(options, '', SESSION_KEYS);
  const config: SessionConfig = {
    providers: providerList(r.raw('providers')),
    executorThreads: r.int('executorThreads', 1, 256) ?? 1,
    executorSpinMicroseconds: r.int('executorSpinMicroseconds', 0, 1_000_000) ?? 50,
    completionPollMicroseconds: r.int('completionPollMicroseconds', 0, 1_000_000),
    inlineRuns: r.bool('inlineRuns') ?? true,
  };
  config.intraOpThreads = r.int('intraOpThreads', 0, 1024);
  config.interOpThreads = r.int('interOpThreads', 0, 1024);
  config.spinning = r.bool('spinning');
  config.deviceIo = r.bool('deviceIo');
  const progress = r.raw('onProgress');
  if (progress !== undefined && typeof progress !== 'function') throw optionError('onProgress', 'a function', progress);
  config.parallelExecution = r.oneOf('executionMode', ['sequential', 'parallel'] as const) === 'parallel';
  const level = r.oneOf('graphOptimizationLevel', Object.keys(GRAPH_LEVELS) as GraphOptimizationLevel[]);
  if (level) config.graphOptimizationLevel = GRAPH_LEVELS[level];
  config.optimizedModelPath = r.string('optimizedModelPath');
  const profiling = r.raw('profiling');
  if (profiling !== undefined && typeof profiling !== 'boolean' && (typeof profiling !== 'string' || !profiling)) {
    throw optionError('profiling', 'a boolean or a file prefix', profiling);
  }
  if (profiling) config.profilePrefix = profiling === true ? 'kiln_profile' : profiling;
  const log = r.oneOf('logLevel', Object.keys(LOG_LEVELS) as LogLevel[]);
  if (log) config.logLevel = LOG_LEVELS[log];
  const entries = r.raw('configEntries');
  if (entries !== undefined) {
    if (typeof entries !== 'object' || entries === null || Array.isArray(entries)) throw optionError('configEntries', 'an object of string -> string', entries);
    config.configEntries = Object.entries(entries).map(([k, v]) => {
      if (typeof v !== 'string') throw optionError(`configEntries.${k}`, 'a string', v);
      return [k, v] as [string, string];
    });
  }
  return config;
}
