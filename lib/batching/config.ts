/**
 * Model configuration, mirroring Triton's model configuration in camelCase so a Triton user
 * recognises every field, plus Kiln's additions (adaptive batching, padding). Validated
 * with the same helper and message shape as session options.
 */
import { KilnError } from '../errors';
import { OptionReader, describeValue, optionError, type SessionOptions } from '../options';

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
   * Requests whose non-batch dims of this input differ may share a batch: each is padded to
   * the batch's largest (rounded up to a length bucket) and its outputs cut back to its own.
   */
  allowPadding?: boolean;
  padValue?: number;
  /** Padded lengths to round up to (fewer distinct shapes for the runtime to plan). */
  lengthBuckets?: number[];
}

export interface ResolvedInput {
  padValue: number;
  lengthBuckets: number[];
}

export interface ModelConfig {
  /** 0 disables batching; default 64 when the model's first input dim is dynamic, else 0. */
  maxBatchSize?: number;
  /** Batching with Triton's defaults when omitted on a batchable model; false turns it off. */
  dynamicBatching?: DynamicBatching | false;
  instanceGroup?: InstanceGroup[];
  input?: InputConfig[];
  /** Options of the underlying session (providers, threads, ...). */
  session?: SessionOptions;
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
  session: SessionOptions;
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

/** Validates `config` for a model whose first input dim is dynamic (`batchable`) or not. */
function inputs(value: unknown, names: readonly string[] | undefined): Map<string, ResolvedInput> {
  const padded = new Map<string, ResolvedInput>();
  if (value === undefined) return padded;
  if (!Array.isArray(value)) throw optionError('input', 'an array of { name, allowPadding, padValue, lengthBuckets }', value);
  value.forEach((item: unknown, i: number) => {
    const r = OptionReader.of(item, `input[${i}]`, ['name', 'allowPadding', 'padValue', 'lengthBuckets']);
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
    if (r.bool('allowPadding')) padded.set(name, { padValue: pad, lengthBuckets: [...buckets].sort((a, b) => a - b) });
  });
  return padded;
}

/**
 * Validates `config` for a model whose first input dim is dynamic (`batchable`) or not;
 * `inputNames`, when known, checks the names in `input`.
 */
export function resolveConfig(config: unknown, batchable: boolean, inputNames?: readonly string[]): ResolvedConfig {
  if (config !== undefined && (config === null || typeof config !== 'object' || Array.isArray(config))) {
    throw new KilnError('E_INVALID_ARGUMENT', `model config must be an object, received ${describeValue(config)}`);
  }
  const r = OptionReader.of(config, '', ['maxBatchSize', 'dynamicBatching', 'instanceGroup', 'input', 'session']);
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
    session: session as SessionOptions,
  };
}
