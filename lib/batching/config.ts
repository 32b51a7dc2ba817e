/**
 * Model configuration, mirroring Triton's model configuration in camelCase so a Triton user
 * recognises every field, plus Kiln's additions (adaptive batching, padding). Validated
 * with the same helper and message shape as session options.
 */
import { KilnError } from '../errors';
import { OptionReader, describeValue, optionError, type SessionOptions } from '../options';
import { isTensorType, type TensorLike } from '../tensor';
import { ResponseCache, defaultResponseCache } from '../cache/response-cache';
import { SemanticCache } from '../cache/semantic';
import type { EmbeddingFunction, EmbeddingModel } from '../cache/semantic/embedding';
import type { CompareHow } from '../cache/semantic/verify';

export interface QueuePolicy {
  /** What happens to a request whose timeout expires while queued. */
  timeoutAction?: 'REJECT' | 'DELAY';
  /** 0: no timeout. */
  defaultTimeoutMicroseconds?: number;
  /** Whether a request may set a shorter timeout than the default (never a longer one). */
  allowTimeoutOverride?: boolean;
  /** 0: unbounded; a full queue rejects at once with E_QUEUE_FULL. */
  maxQueueSize?: number;
}

export interface DynamicBatching {
  preferredBatchSize?: number[];
  maxQueueDelayMicroseconds?: number;
  preserveOrdering?: boolean;
  /** 0: one queue; else levels 1 (highest) .. priorityLevels. */
  priorityLevels?: number;
  defaultPriorityLevel?: number;
  defaultQueuePolicy?: QueuePolicy;
  priorityQueuePolicy?: Record<string, QueuePolicy>;
  /**
   * Adaptive batching (Kiln): a request's target latency. The batcher learns a batch's cost
   * from recent runs and dispatches when waiting longer would breach it; requests that can
   * no longer meet it are rejected with E_OVERLOADED.
   */
  maxLatencyMs?: number;
}

export interface InstanceGroup {
  count?: number;
  kind?: 'CPU' | 'GPU';
  gpus?: number[];
}

/** Per-input settings (Triton's `input` list); Kiln adds padding of ragged requests. */
export interface InputConfig {
  name: string;
  /**
   * Requests whose lengths on this input's padded axes differ may share a batch: each is
   * padded to the batch's largest (rounded up to a length bucket) and its outputs cut back to
   * its own. Safe only for padding-invariant models: see docs/padding.md.
   */
  allowPadding?: boolean;
  /** The value padded positions hold (default 0). */
  padValue?: number;
  /** Padded lengths to round up to (fewer distinct shapes for the runtime to plan); padded axes only. */
  lengthBuckets?: number[];
  /**
   * The non-batch axes padding may lengthen (Triton's ragged batching pads named axes too).
   * Default: the input's symbolic non-batch axes. Requests share a batch only when their
   * other axes agree.
   */
  padAxes?: number[];
}

/** One step of an output axis's length rule: length = ceil or floor(length × ratio). */
export interface LengthStep {
  ratio: number;
  /** Default 'ceil'. */
  rounding?: 'ceil' | 'floor';
}

/**
 * How long output axis `axis` is for a caller: a function of the caller's own length on
 * `input`'s padded axis `inputAxis` — ceil or floor(length × ratio), or `steps` applied in
 * order for a model that shortens in stages (e.g. a stride-4 stem rounding up, then a
 * stride-2 pool rounding down).
 */
export interface CropAxis {
  axis: number;
  input: string;
  inputAxis: number;
  /** Default 1. */
  ratio?: number;
  /** Default 'ceil'. */
  rounding?: 'ceil' | 'floor';
  /** Instead of ratio and rounding: several steps, applied in order. */
  steps?: LengthStep[];
}

/** Per-output settings (Triton's `output` list); Kiln adds how padded outputs are cut back. */
export interface OutputConfig {
  name: string;
  /** Axes whose length follows a padded input length (needed when their dim names differ). */
  cropAxes?: CropAxis[];
  /** Symbolic non-batch axes whose length does not depend on padding: every caller gets the batch's. */
  keepAxes?: number[];
}

/** Kiln's load-time check that padding does not change a model's results. */
export interface PaddingCheck {
  /** 'refuse' (default): a model whose results change when padded is not loaded; 'warn': one process warning; 'off': no check. */
  action?: 'refuse' | 'warn' | 'off';
  /** Largest difference allowed, relative to the largest magnitude of the unpadded output (default 1e-4). */
  tolerance?: number;
  /** [unpadded, padded] length of every padded axis in the generated sample (default: see docs/padding.md). */
  sampleLengths?: [number, number];
  /** The sample to run instead of generated values: feeds of one row, at their unpadded lengths. */
  sample?: Record<string, TensorLike>;
}

export interface ResolvedInput {
  /** Position in the config's `input` list (for messages naming the field). */
  index: number;
  padValue: number;
  lengthBuckets: number[];
  /** undefined: the input's symbolic non-batch axes (known once the model is). */
  padAxes: number[] | undefined;
}

export interface ResolvedCropAxis {
  axis: number;
  input: string;
  inputAxis: number;
  steps: Required<LengthStep>[];
}

export interface ResolvedOutput {
  index: number;
  cropAxes: ResolvedCropAxis[];
  keepAxes: number[];
}

export interface ResolvedPaddingCheck {
  action: 'refuse' | 'warn' | 'off';
  tolerance: number;
  sampleLengths: [number, number] | undefined;
  sample: Record<string, TensorLike> | undefined;
}

export interface ModelConfig {
  /** 0 disables batching; default 64 when the model's first input dim is dynamic, else 0. */
  maxBatchSize?: number;
  /** Batching with Triton's defaults when omitted on a batchable model; false turns it off. */
  dynamicBatching?: DynamicBatching | false;
  instanceGroup?: InstanceGroup[];
  input?: InputConfig[];
  output?: OutputConfig[];
  paddingCheck?: PaddingCheck;
  /** Options of the underlying session (providers, threads, ...). */
  session?: SessionOptions;
  /**
   * The exact response cache: true uses the process-wide default (defaultResponseCache()),
   * or a cache from createResponseCache (shareable by many models). `key`: the model's
   * identity in cache keys (e.g. name@version); default: SHA-256 of the model's bytes.
   */
  responseCache?: boolean | ResponseCache | { cache?: ResponseCache; key?: string };
  /**
   * The semantic cache: a request whose vector is near enough to a cached request's gets
   * that request's answer. Looked up after validation and after the exact response cache.
   */
  semanticCache?: SemanticCacheConfig;
}

/** Where a request's vector comes from (see lib/cache/semantic/embedding.ts). */
export type SemanticEmbedding = 'input' | { input: string } | EmbeddingFunction | { model: EmbeddingModel; output: string };

export interface SemanticCacheConfig {
  /** A hit needs a cosine similarity >= threshold, or an L2 distance <= threshold (of unit vectors). Required unless `cache` is given. */
  threshold?: number;
  /** Default 'cosine'. */
  metric?: 'cosine' | 'l2';
  /** Most entries held (per vector length: a model whose inputs vary in size keeps one index per length). Default 100 000. */
  capacity?: number;
  /** Entries older than this are never returned. Default: no expiry. */
  ttlMs?: number;
  /** Default 'input': the model's only input, flattened and normalized. */
  embedding?: SemanticEmbedding;
  /** Fraction of hits re-run in the background and compared with the cached answer (default 0). */
  verifyFraction?: number;
  /** How a verified hit is compared (default { metric: 'top1' }). */
  verify?: CompareHow;
  /** A cache to share between models; its threshold, metric, capacity and TTL apply (giving them too is an error). */
  cache?: SemanticCache<Uint8Array>;
  /** The model's identity in partitions (matters for a shared cache); default: SHA-256 of the model's bytes. */
  key?: string;
}

export interface ResolvedSemanticCache {
  /** Present when shared; else the model makes its own, one per vector length. */
  cache: SemanticCache<Uint8Array> | undefined;
  threshold: number;
  metric: 'cosine' | 'l2';
  capacity: number | undefined;
  ttlMs: number | undefined;
  embedding: SemanticEmbedding;
  verifyFraction: number;
  verify: CompareHow;
  key: string | undefined;
}

export interface ResolvedResponseCache {
  cache: ResponseCache;
  /** undefined: the model's bytes decide (hashed at load). */
  key: string | undefined;
}

export interface ResolvedPolicy {
  timeoutAction: 'REJECT' | 'DELAY';
  defaultTimeoutUs: number;
  allowTimeoutOverride: boolean;
  maxQueueSize: number;
}

export interface ResolvedConfig {
  maxBatchSize: number;
  batching: boolean;
  preferredBatchSize: number[];
  maxQueueDelayUs: number;
  preserveOrdering: boolean;
  priorityLevels: number;
  defaultPriorityLevel: number;
  /** Index 0 is the single queue when priorityLevels is 0, else level N at index N - 1. */
  policies: ResolvedPolicy[];
  maxLatencyMs: number | undefined;
  instances: number;
  kind: 'CPU' | 'GPU';
  gpus: number[];
  /** Inputs whose requests may be padded, by name. */
  padded: Map<string, ResolvedInput>;
  /** Outputs with cut-back settings, by name. */
  outputs: Map<string, ResolvedOutput>;
  paddingCheck: ResolvedPaddingCheck;
  session: SessionOptions;
  responseCache: ResolvedResponseCache | undefined;
  semanticCache: ResolvedSemanticCache | undefined;
}

const DEFAULT_MAX_BATCH = 64;

function policy(value: unknown, field: string): ResolvedPolicy {
  const r = OptionReader.of(value, field, ['timeoutAction', 'defaultTimeoutMicroseconds', 'allowTimeoutOverride', 'maxQueueSize']);
  return {
    timeoutAction: r.oneOf('timeoutAction', ['REJECT', 'DELAY'] as const) ?? 'REJECT',
    defaultTimeoutUs: r.int('defaultTimeoutMicroseconds', 0) ?? 0,
    allowTimeoutOverride: r.bool('allowTimeoutOverride') ?? false,
    maxQueueSize: r.int('maxQueueSize', 0) ?? 0,
  };
}

/** A list of distinct integer axes >= 1 (ranks are checked once the model is known). */
function axisList(value: unknown, field: string, what: string): number[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((a) => Number.isInteger(a) && a >= 1) || new Set(value).size !== value.length) {
    throw optionError(field, `an array of distinct ${what} (integers >= 1; axis 0 is the batch)`, value);
  }
  return [...(value as number[])].sort((a, b) => a - b);
}

function inputs(value: unknown, names: readonly string[] | undefined): Map<string, ResolvedInput> {
  const padded = new Map<string, ResolvedInput>();
  if (value === undefined) return padded;
  if (!Array.isArray(value)) throw optionError('input', 'an array of { name, allowPadding, padValue, lengthBuckets, padAxes }', value);
  value.forEach((item: unknown, i: number) => {
    const r = OptionReader.of(item, `input[${i}]`, ['name', 'allowPadding', 'padValue', 'lengthBuckets', 'padAxes']);
    const name = r.string('name');
    if (name === undefined || (names && !names.includes(name))) {
      throw optionError(`input[${i}].name`, names ? `one of the model's inputs (${names.join(', ')})` : 'an input name', name);
    }
    const pad = r.raw('padValue') ?? 0;
    if (typeof pad !== 'number' || !Number.isFinite(pad)) throw optionError(`input[${i}].padValue`, 'a finite number', pad);
    const buckets = r.raw('lengthBuckets') ?? [];
    if (!Array.isArray(buckets) || !buckets.every((b) => Number.isInteger(b) && b > 0)) {
      throw optionError(`input[${i}].lengthBuckets`, 'an array of positive integers', buckets);
    }
    const padAxes = axisList(r.raw('padAxes'), `input[${i}].padAxes`, 'non-batch axes to pad');
    if (padAxes?.length === 0) throw optionError(`input[${i}].padAxes`, 'at least one axis (or allowPadding: false)', padAxes);
    if (r.bool('allowPadding')) {
      if (padded.has(name)) throw optionError(`input[${i}].name`, 'an input not listed before', name);
      padded.set(name, { index: i, padValue: pad, lengthBuckets: [...buckets].sort((a, b) => a - b), padAxes });
    }
  });
  return padded;
}

function ratioOf(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw optionError(field, 'a positive number', value);
  return value;
}

function cropAxis(value: unknown, field: string): ResolvedCropAxis {
  const r = OptionReader.of(value, field, ['axis', 'input', 'inputAxis', 'ratio', 'rounding', 'steps']);
  const axis = r.int('axis', 1);
  if (axis === undefined) throw optionError(r.field('axis'), 'the output axis (an integer >= 1)', axis);
  const input = r.string('input');
  if (input === undefined) throw optionError(r.field('input'), 'the name of a padded input', input);
  const inputAxis = r.int('inputAxis', 1);
  if (inputAxis === undefined) throw optionError(r.field('inputAxis'), 'one of the input\'s padded axes', inputAxis);
  const stepsRaw = r.raw('steps');
  if (stepsRaw !== undefined) {
    if (r.raw('ratio') !== undefined || r.raw('rounding') !== undefined) {
      throw optionError(r.field('steps'), 'steps, or ratio and rounding, not both', stepsRaw);
    }
    if (!Array.isArray(stepsRaw) || stepsRaw.length === 0) throw optionError(r.field('steps'), 'a non-empty array of { ratio, rounding }', stepsRaw);
    const steps = stepsRaw.map((s: unknown, k: number) => {
      const sr = OptionReader.of(s, `${r.field('steps')}[${k}]`, ['ratio', 'rounding']);
      return { ratio: ratioOf(sr.raw('ratio'), sr.field('ratio')), rounding: sr.oneOf('rounding', ['ceil', 'floor'] as const) ?? 'ceil' };
    });
    return { axis, input, inputAxis, steps };
  }
  const ratio = r.raw('ratio') === undefined ? 1 : ratioOf(r.raw('ratio'), r.field('ratio'));
  return { axis, input, inputAxis, steps: [{ ratio, rounding: r.oneOf('rounding', ['ceil', 'floor'] as const) ?? 'ceil' }] };
}

function outputs(value: unknown): Map<string, ResolvedOutput> {
  const out = new Map<string, ResolvedOutput>();
  if (value === undefined) return out;
  if (!Array.isArray(value)) throw optionError('output', 'an array of { name, cropAxes, keepAxes }', value);
  value.forEach((item: unknown, i: number) => {
    const r = OptionReader.of(item, `output[${i}]`, ['name', 'cropAxes', 'keepAxes']);
    const name = r.string('name');
    if (name === undefined) throw optionError(`output[${i}].name`, 'an output name', name);
    if (out.has(name)) throw optionError(`output[${i}].name`, 'an output not listed before', name);
    const raw = r.raw('cropAxes') ?? [];
    if (!Array.isArray(raw)) throw optionError(`output[${i}].cropAxes`, 'an array of { axis, input, inputAxis, ratio, rounding }', raw);
    const cropAxes = raw.map((c: unknown, j: number) => cropAxis(c, `output[${i}].cropAxes[${j}]`));
    const keepAxes = axisList(r.raw('keepAxes'), `output[${i}].keepAxes`, 'output axes') ?? [];
    const seen = new Set<number>();
    for (const [j, axis] of [...cropAxes.map((c) => c.axis), ...keepAxes].entries()) {
      if (seen.has(axis)) {
        const field = j < cropAxes.length ? `output[${i}].cropAxes[${j}].axis` : `output[${i}].keepAxes`;
        throw optionError(field, 'an axis that no other rule of this output names', axis);
      }
      seen.add(axis);
    }
    out.set(name, { index: i, cropAxes, keepAxes });
  });
  return out;
}

function paddingCheck(value: unknown): ResolvedPaddingCheck {
  const r = OptionReader.of(value, 'paddingCheck', ['action', 'tolerance', 'sampleLengths', 'sample']);
  const tolerance = r.raw('tolerance') ?? 1e-4;
  if (typeof tolerance !== 'number' || !Number.isFinite(tolerance) || tolerance < 0) {
    throw optionError('paddingCheck.tolerance', 'a non-negative number (relative to the output\'s largest magnitude)', tolerance);
  }
  const lengths = r.raw('sampleLengths');
  if (lengths !== undefined && !(Array.isArray(lengths) && lengths.length === 2 && lengths.every((l) => Number.isInteger(l) && l >= 1) && lengths[0] < lengths[1])) {
    throw optionError('paddingCheck.sampleLengths', '[unpadded, padded]: integers with 1 <= unpadded < padded', lengths);
  }
  const sample = r.raw('sample');
  if (sample !== undefined) {
    if (typeof sample !== 'object' || sample === null || Array.isArray(sample)) throw optionError('paddingCheck.sample', 'an object of input name -> tensor', sample);
    for (const [name, t] of Object.entries(sample)) {
      if (typeof t !== 'object' || t === null || !isTensorType((t as TensorLike).type) || !Array.isArray((t as TensorLike).dims)) {
        throw optionError(`paddingCheck.sample.${name}`, 'a tensor ({ type, data, dims })', t);
      }
    }
  }
  return {
    action: r.oneOf('action', ['refuse', 'warn', 'off'] as const) ?? 'refuse',
    tolerance,
    sampleLengths: lengths as [number, number] | undefined,
    sample: sample as Record<string, TensorLike> | undefined,
  };
}

function responseCache(value: unknown): ResolvedResponseCache | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return { cache: defaultResponseCache(), key: undefined };
  if (value instanceof ResponseCache) return { cache: value, key: undefined };
  const r = OptionReader.of(value, 'responseCache', ['cache', 'key']);
  const cache = r.raw('cache') ?? defaultResponseCache();
  if (!(cache instanceof ResponseCache)) throw optionError('responseCache.cache', 'a ResponseCache (from createResponseCache)', cache);
  return { cache, key: r.string('key') };
}

function embedding(value: unknown): SemanticEmbedding {
  const field = 'semanticCache.embedding';
  if (value === undefined || value === 'input') return 'input';
  if (typeof value === 'function') return value as EmbeddingFunction;
  const expected = "'input', { input: name }, a function of the feeds or { model, output }";
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw optionError(field, expected, value);
  if ('model' in value) {
    const r = OptionReader.of(value, field, ['model', 'output']);
    const model = r.raw('model') as { infer?: unknown } | undefined;
    if (typeof model?.infer !== 'function') throw optionError(`${field}.model`, 'a model (with infer())', model);
    const output = r.string('output');
    if (output === undefined) throw optionError(`${field}.output`, 'the name of the embedding model\'s output', output);
    return { model: model as EmbeddingModel, output };
  }
  const r = OptionReader.of(value, field, ['input']);
  const input = r.string('input');
  if (input === undefined) throw optionError(field, expected, value);
  return { input };
}

function semanticCache(value: unknown): ResolvedSemanticCache | undefined {
  if (value === undefined) return undefined;
  const r = OptionReader.of(value, 'semanticCache', ['threshold', 'metric', 'capacity', 'ttlMs', 'embedding', 'verifyFraction', 'verify', 'cache', 'key']);
  const cache = r.raw('cache');
  if (cache !== undefined && !(cache instanceof SemanticCache)) throw optionError('semanticCache.cache', 'a SemanticCache', cache);
  if (cache) {
    for (const own of ['threshold', 'metric', 'capacity', 'ttlMs']) {
      if (r.raw(own) !== undefined) throw optionError(`semanticCache.${own}`, 'nothing: with semanticCache.cache the shared cache\'s setting applies', r.raw(own));
    }
  }
  const metric = cache ? cache.metric : r.oneOf('metric', ['cosine', 'l2'] as const) ?? 'cosine';
  const threshold = cache ? cache.threshold : r.raw('threshold');
  if (typeof threshold !== 'number' || (metric === 'cosine' ? !(threshold >= -1 && threshold <= 1) : !(threshold >= 0 && threshold < Infinity))) {
    throw optionError('semanticCache.threshold', metric === 'cosine' ? 'a cosine similarity in [-1, 1]' : 'an L2 distance >= 0', threshold);
  }
  const ttlMs = r.raw('ttlMs');
  if (ttlMs !== undefined && (typeof ttlMs !== 'number' || !(ttlMs > 0))) throw optionError('semanticCache.ttlMs', 'a positive number of milliseconds', ttlMs);
  const verifyFraction = r.raw('verifyFraction') ?? 0;
  if (typeof verifyFraction !== 'number' || !(verifyFraction >= 0 && verifyFraction <= 1)) throw optionError('semanticCache.verifyFraction', 'a fraction in [0, 1]', verifyFraction);
  const v = OptionReader.of(r.raw('verify'), 'semanticCache.verify', ['metric', 'tolerance', 'blank']);
  const tolerance = v.raw('tolerance');
  if (tolerance !== undefined && (typeof tolerance !== 'number' || !(tolerance >= 0))) throw optionError('semanticCache.verify.tolerance', 'a number >= 0', tolerance);
  const blank = v.int('blank', 0);
  const verify: CompareHow = {
    metric: v.oneOf('metric', ['top1', 'cosine', 'maxError', 'ctc'] as const) ?? 'top1',
    ...(tolerance !== undefined ? { tolerance: tolerance as number } : {}),
    ...(blank !== undefined ? { blank } : {}),
  };
  return {
    cache: cache as SemanticCache<Uint8Array> | undefined,
    threshold,
    metric,
    capacity: r.int('capacity', 1),
    ttlMs: ttlMs as number | undefined,
    embedding: embedding(r.raw('embedding')),
    verifyFraction,
    verify,
    key: r.string('key'),
  };
}

/**
 * Validates `config` for a model whose first input dim is dynamic (`batchable`) or not;
 * `inputNames`, when known, checks the names in `input`.
 */
export function resolveConfig(config: unknown, batchable: boolean, inputNames?: readonly string[]): ResolvedConfig {
  if (config !== undefined && (config === null || typeof config !== 'object' || Array.isArray(config))) {
    throw new KilnError('E_INVALID_ARGUMENT', `model config must be an object, received ${describeValue(config)}`);
  }
  const r = OptionReader.of(config, '', ['maxBatchSize', 'dynamicBatching', 'instanceGroup', 'input', 'output', 'paddingCheck', 'session', 'responseCache', 'semanticCache']);
  const maxBatchSize = r.int('maxBatchSize', 0) ?? (batchable ? DEFAULT_MAX_BATCH : 0);
  if (maxBatchSize > 0 && !batchable) {
    throw optionError('maxBatchSize', '0: the model\'s first input dimension is fixed, so it cannot batch', maxBatchSize);
  }
  const db = r.raw('dynamicBatching');
  const batching = maxBatchSize > 0 && db !== false;
  const d = OptionReader.of(db === false ? undefined : db, 'dynamicBatching', [
    'preferredBatchSize', 'maxQueueDelayMicroseconds', 'preserveOrdering', 'priorityLevels', 'defaultPriorityLevel',
    'defaultQueuePolicy', 'priorityQueuePolicy', 'maxLatencyMs',
  ]);
  const preferredRaw = d.raw('preferredBatchSize') ?? [];
  if (!Array.isArray(preferredRaw)) throw optionError('dynamicBatching.preferredBatchSize', 'an array of batch sizes', preferredRaw);
  const preferredBatchSize = preferredRaw.map((v: unknown, i: number) => {
    if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > Math.max(maxBatchSize, 1)) {
      throw optionError(`dynamicBatching.preferredBatchSize[${i}]`, `an integer in [1, maxBatchSize = ${maxBatchSize}]`, v);
    }
    return v as number;
  }).sort((a, b) => a - b);
  const priorityLevels = d.int('priorityLevels', 0, 1_000_000) ?? 0;
  const defaultPriorityLevel = d.int('defaultPriorityLevel', 0, 1_000_000) ?? (priorityLevels > 0 ? priorityLevels : 0);
  if (priorityLevels > 0 && (defaultPriorityLevel < 1 || defaultPriorityLevel > priorityLevels)) {
    throw optionError('dynamicBatching.defaultPriorityLevel', `a level in [1, priorityLevels = ${priorityLevels}]`, defaultPriorityLevel);
  }
  const base = policy(d.raw('defaultQueuePolicy'), 'dynamicBatching.defaultQueuePolicy');
  const policies = Array.from({ length: Math.max(priorityLevels, 1) }, () => ({ ...base }));
  const perLevel = d.raw('priorityQueuePolicy');
  if (perLevel !== undefined) {
    if (typeof perLevel !== 'object' || perLevel === null || Array.isArray(perLevel)) {
      throw optionError('dynamicBatching.priorityQueuePolicy', 'an object of priority level -> queue policy', perLevel);
    }
    for (const [key, value] of Object.entries(perLevel)) {
      const level = Number(key);
      if (!Number.isInteger(level) || level < 1 || level > priorityLevels) {
        throw optionError(`dynamicBatching.priorityQueuePolicy.${key}`, `a key in [1, priorityLevels = ${priorityLevels}]`, key);
      }
      policies[level - 1] = policy(value, `dynamicBatching.priorityQueuePolicy.${key}`);
    }
  }
  const maxLatencyRaw = d.raw('maxLatencyMs');
  if (maxLatencyRaw !== undefined && (typeof maxLatencyRaw !== 'number' || !(maxLatencyRaw > 0))) {
    throw optionError('dynamicBatching.maxLatencyMs', 'a positive number of milliseconds', maxLatencyRaw);
  }
  const groups = r.raw('instanceGroup') ?? [{}];
  if (!Array.isArray(groups) || groups.length !== 1) {
    throw optionError('instanceGroup', 'an array with one group ({ count, kind, gpus })', groups);
  }
  const g = OptionReader.of(groups[0], 'instanceGroup[0]', ['count', 'kind', 'gpus']);
  const kind = g.oneOf('kind', ['CPU', 'GPU'] as const) ?? 'CPU';
  const gpusRaw = g.raw('gpus') ?? [];
  if (!Array.isArray(gpusRaw) || !gpusRaw.every((x) => Number.isInteger(x) && x >= 0)) {
    throw optionError('instanceGroup[0].gpus', 'an array of device ids', gpusRaw);
  }
  if (kind === 'CPU' && gpusRaw.length > 0) throw optionError('instanceGroup[0].gpus', 'no devices for kind CPU', gpusRaw);
  const session = r.raw('session') ?? {};
  if (typeof session !== 'object' || session === null) throw optionError('session', 'session options', session);
  if (batching === false && db !== undefined && db !== false && maxBatchSize === 0) {
    throw new KilnError('E_INVALID_ARGUMENT', 'option "dynamicBatching": needs maxBatchSize > 0');
  }
  return {
    maxBatchSize,
    batching,
    preferredBatchSize,
    maxQueueDelayUs: d.int('maxQueueDelayMicroseconds', 0) ?? 0,
    preserveOrdering: d.bool('preserveOrdering') ?? false,
    priorityLevels,
    defaultPriorityLevel,
    policies,
    maxLatencyMs: maxLatencyRaw as number | undefined,
    instances: g.int('count', 1, 256) ?? 1,
    kind,
    gpus: gpusRaw as number[],
    padded: inputs(r.raw('input'), inputNames),
    outputs: outputs(r.raw('output')),
    paddingCheck: paddingCheck(r.raw('paddingCheck')),
    session: session as SessionOptions,
    responseCache: responseCache(r.raw('responseCache')),
    semanticCache: semanticCache(r.raw('semanticCache')),
  };
}
