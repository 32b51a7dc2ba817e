/**
 * Triton model configurations (config.pbtxt, protobuf text format, or config.json) read into
 * Triton's own structure with the protobuf JSON mapping's camelCase names (`maxBatchSize`,
 * `dataType: 'TYPE_FP32'`), checked against Triton's schema: a field Triton does not know,
 * a value of the wrong type or an unknown enum value is an error naming the file, the line
 * and the field's path, as Triton refuses such a config too. Messages Kiln reads but does not
 * act on (optimization, batch inputs, ...) are kept as they are.
 */
import { KilnError } from '../errors';
import { parseTextFormat, type TextField, type TextMessage, type TextScalar } from './pbtxt';

export const DATA_TYPES = ['TYPE_INVALID', 'TYPE_BOOL', 'TYPE_UINT8', 'TYPE_UINT16', 'TYPE_UINT32', 'TYPE_UINT64', 'TYPE_INT8', 'TYPE_INT16',
  'TYPE_INT32', 'TYPE_INT64', 'TYPE_FP16', 'TYPE_FP32', 'TYPE_FP64', 'TYPE_STRING', 'TYPE_BF16'] as const;
export type DataType = (typeof DATA_TYPES)[number];

export interface TensorConfig {
  name: string;
  dataType?: DataType;
  dims?: number[];
  reshape?: { shape?: number[] };
  format?: string;
  optional?: boolean;
  isShapeTensor?: boolean;
  allowRaggedBatch?: boolean;
  labelFilename?: string;
}

export interface QueuePolicyConfig {
  timeoutAction?: 'REJECT' | 'DELAY';
  defaultTimeoutMicroseconds?: number;
  allowTimeoutOverride?: boolean;
  maxQueueSize?: number;
}

export interface TritonModelConfig {
  name?: string;
  platform?: string;
  backend?: string;
  runtime?: string;
  versionPolicy?: { latest?: { numVersions?: number }; all?: Record<string, never>; specific?: { versions?: number[] } };
  maxBatchSize?: number;
  input?: TensorConfig[];
  output?: TensorConfig[];
  dynamicBatching?: {
    preferredBatchSize?: number[];
    maxQueueDelayMicroseconds?: number;
    preserveOrdering?: boolean;
    priorityLevels?: number;
    defaultPriorityLevel?: number;
    defaultQueuePolicy?: QueuePolicyConfig;
    priorityQueuePolicy?: Record<string, QueuePolicyConfig>;
  };
  instanceGroup?: { name?: string; kind?: 'KIND_AUTO' | 'KIND_GPU' | 'KIND_CPU' | 'KIND_MODEL'; count?: number; gpus?: number[]; profile?: string[]; passive?: boolean; hostPolicy?: string; rateLimiter?: unknown; secondaryDevices?: unknown[] }[];
  defaultModelFilename?: string;
  parameters?: Record<string, { stringValue?: string }>;
  modelWarmup?: { name?: string; batchSize?: number; count?: number; inputs?: Record<string, { dataType?: DataType; dims?: number[]; zeroData?: boolean; randomData?: boolean; inputDataFile?: string }> }[];
  responseCache?: { enable?: boolean };
  /** Read and kept, not acted on. */
  optimization?: unknown;
  sequenceBatching?: unknown;
  ensembleScheduling?: unknown;
  batchInput?: unknown[];
  batchOutput?: unknown[];
  ccModelFilenames?: Record<string, string>;
  metricTags?: Record<string, string>;
  modelOperations?: unknown;
  modelTransactionPolicy?: unknown;
  modelRepositoryAgents?: unknown;
}

// ---------------------------------------------------------------------------------------------
// Triton's schema (model_config.proto), the part a config can hold

type Scalar = 'string' | 'int' | 'uint' | 'bool' | 'float';
type FieldType = Scalar | { enum: readonly string[] } | { message: string } | 'any' | { map: [Scalar, FieldType] };
interface FieldSpec {
  type: FieldType;
  repeated?: boolean;
}
type MessageSpec = Record<string, FieldSpec>;

const one = (type: FieldType): FieldSpec => ({ type });
const many = (type: FieldType): FieldSpec => ({ type, repeated: true });
const msg = (name: string): FieldType => ({ message: name });

const SCHEMA: Record<string, MessageSpec> = {
  ModelConfig: {
    name: one('string'), platform: one('string'), backend: one('string'), runtime: one('string'),
    version_policy: one(msg('ModelVersionPolicy')), max_batch_size: one('int'),
    input: many(msg('ModelInput')), output: many(msg('ModelOutput')),
    batch_input: many('any'), batch_output: many('any'), optimization: one('any'),
    dynamic_batching: one(msg('ModelDynamicBatching')), sequence_batching: one('any'), ensemble_scheduling: one('any'),
    instance_group: many(msg('ModelInstanceGroup')), default_model_filename: one('string'),
    cc_model_filenames: one({ map: ['string', 'string'] }), metric_tags: one({ map: ['string', 'string'] }),
    parameters: one({ map: ['string', msg('ModelParameter')] }), model_warmup: many(msg('ModelWarmup')),
    model_operations: one('any'), model_transaction_policy: one('any'), model_repository_agents: one('any'),
    response_cache: one(msg('ModelResponseCache')),
  },
  ModelInput: {
    name: one('string'), data_type: one({ enum: DATA_TYPES }), format: one({ enum: ['FORMAT_NONE', 'FORMAT_NHWC', 'FORMAT_NCHW'] }),
    dims: many('int'), reshape: one(msg('ModelTensorReshape')), is_shape_tensor: one('bool'), allow_ragged_batch: one('bool'),
    optional: one('bool'), is_non_linear_format_io: one('bool'),
  },
  ModelOutput: {
    name: one('string'), data_type: one({ enum: DATA_TYPES }), dims: many('int'), reshape: one(msg('ModelTensorReshape')),
    label_filename: one('string'), is_shape_tensor: one('bool'), is_non_linear_format_io: one('bool'),
  },
  ModelTensorReshape: { shape: many('int') },
  ModelVersionPolicy: { latest: one(msg('Latest')), all: one(msg('All')), specific: one(msg('Specific')) },
  Latest: { num_versions: one('uint') },
  All: {},
  Specific: { versions: many('int') },
  ModelInstanceGroup: {
    name: one('string'), kind: one({ enum: ['KIND_AUTO', 'KIND_GPU', 'KIND_CPU', 'KIND_MODEL'] }), count: one('int'),
    rate_limiter: one('any'), gpus: many('int'), secondary_devices: many('any'), profile: many('string'), passive: one('bool'),
    host_policy: one('string'),
  },
  ModelDynamicBatching: {
    preferred_batch_size: many('int'), max_queue_delay_microseconds: one('uint'), preserve_ordering: one('bool'),
    priority_levels: one('uint'), default_priority_level: one('uint'), default_queue_policy: one(msg('ModelQueuePolicy')),
    priority_queue_policy: one({ map: ['uint', msg('ModelQueuePolicy')] }),
  },
  ModelQueuePolicy: {
    timeout_action: one({ enum: ['REJECT', 'DELAY'] }), default_timeout_microseconds: one('uint'),
    allow_timeout_override: one('bool'), max_queue_size: one('uint'),
  },
  ModelParameter: { string_value: one('string') },
  ModelWarmup: { name: one('string'), batch_size: one('uint'), inputs: one({ map: ['string', msg('WarmupInput')] }), count: one('uint') },
  WarmupInput: {
    data_type: one({ enum: DATA_TYPES }), dims: many('int'), zero_data: one('bool'), random_data: one('bool'), input_data_file: one('string'),
  },
  ModelResponseCache: { enable: one('bool') },
};

const camel = (name: string): string => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const snake = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Where a value sits, for messages: the file, the line when known, the field's path. */
interface Place {
  file: string;
  line?: number;
  path: string;
}

function configError(at: Place, what: string): KilnError {
  return new KilnError('E_INVALID_ARGUMENT', `${at.file}${at.line ? `:${at.line}` : ''}: ${at.path}: ${what}`);
}

/** A scalar from the text format or JSON, checked against `type`. */
function scalarValue(type: Scalar | { enum: readonly string[] }, raw: TextScalar | unknown, at: Place): unknown {
  const text = (raw as TextScalar)?.kind !== undefined ? (raw as TextScalar) : undefined;
  const value = text ? text.value : raw;
  if (typeof type === 'object') {
    if (typeof value === 'string' && type.enum.includes(value)) return value;
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < type.enum.length) return type.enum[value];
    throw configError(at, `${JSON.stringify(value)} is not one of ${type.enum.join(', ')}`);
  }
  switch (type) {
    case 'string':
      if (typeof value === 'string' && (!text || text.kind === 'string')) return value;
      throw configError(at, `expected a string, found ${text?.kind === 'identifier' ? value : JSON.stringify(value)}`);
    case 'bool':
      if (typeof value === 'boolean') return value;
      if (text?.kind === 'identifier' && /^(true|false|True|False|t|f)$/.test(value as string)) return /^[tT]/.test(value as string);
      if (text?.kind === 'number' && (value === 0 || value === 1)) return value === 1;
      throw configError(at, `expected true or false, found ${JSON.stringify(value)}`);
    case 'float':
      if (typeof value === 'number' && (!text || text.kind === 'number')) return value;
      throw configError(at, `expected a number, found ${JSON.stringify(value)}`);
    default: {
      // int / uint: JSON may carry 64-bit integers as strings (the protobuf JSON mapping).
      const n = typeof value === 'string' && !text && /^-?\d+$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || (text && text.kind !== 'number')) throw configError(at, `expected an integer, found ${JSON.stringify(value)}`);
      if (type === 'uint' && n < 0) throw configError(at, `expected an integer >= 0, found ${n}`);
      return n;
    }
  }
}

/** A generic message (a field Kiln keeps but does not act on): fields by camelCase name, repeats as arrays. */
function anyValue(m: TextMessage): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of m.fields) {
    const v = f.value.kind === 'message' ? anyValue(f.value) : f.value.value;
    const k = camel(f.name);
    if (k in out) out[k] = Array.isArray(out[k]) ? [...(out[k] as unknown[]), v] : [out[k], v];
    else out[k] = v;
  }
  return out;
}

function fromText(m: TextMessage, spec: string, at: Place): Record<string, unknown> {
  const fields = SCHEMA[spec];
  const out: Record<string, unknown> = {};
  const counts = new Map<string, number>();
  for (const f of m.fields) {
    const field = fields[f.name];
    const index = counts.get(f.name) ?? 0;
    counts.set(f.name, index + 1);
    const place: Place = { file: at.file, line: f.line, path: `${at.path ? `${at.path}.` : ''}${f.name}${field?.repeated ? `[${index}]` : ''}` };
    if (!field) throw configError(place, `no such field in Triton's ${spec} (its fields: ${Object.keys(fields).join(', ') || 'none'})`);
    const key = camel(f.name);
    if (!field.repeated && index > 0 && !(typeof field.type === 'object' && 'map' in field.type)) throw configError(place, 'given twice');
    const value = textValue(field.type, f, place);
    if (typeof field.type === 'object' && 'map' in field.type) {
      const [k, v] = value as [string, unknown];
      out[key] = { ...((out[key] as Record<string, unknown>) ?? {}), [k]: v };
    } else if (field.repeated) {
      out[key] = [...((out[key] as unknown[]) ?? []), value];
    } else {
      out[key] = value;
    }
  }
  return out;
}

function textValue(type: FieldType, f: TextField, at: Place): unknown {
  if (type === 'any') {
    if (f.value.kind !== 'message') return f.value.value;
    return anyValue(f.value);
  }
  if (typeof type === 'object' && 'message' in type) {
    if (f.value.kind !== 'message') throw configError(at, `expected a message ({ ... }), found ${JSON.stringify(f.value.value)}`);
    return fromText(f.value, type.message, at);
  }
  if (typeof type === 'object' && 'map' in type) {
    if (f.value.kind !== 'message') throw configError(at, 'expected a map entry { key: ... value: ... }');
    const key = f.value.fields.find((x) => x.name === 'key');
    const value = f.value.fields.find((x) => x.name === 'value');
    const extra = f.value.fields.find((x) => x.name !== 'key' && x.name !== 'value');
    if (!key || extra) throw configError({ ...at, line: extra?.line ?? at.line }, 'a map entry holds "key" and "value" only');
    const k = String(scalarValue(type.map[0], key.value, { ...at, line: key.line, path: `${at.path}.key` }));
    const entry: Place = { ...at, line: value?.line ?? at.line, path: `${at.path}["${k}"]` };
    if (!value) return [k, typeof type.map[1] === 'object' && 'message' in type.map[1] ? {} : undefined];
    return [k, textValue(type.map[1], value, entry)];
  }
  if (f.value.kind === 'message') throw configError(at, `expected a value, found a message`);
  return scalarValue(type as Scalar | { enum: readonly string[] }, f.value, at);
}

/**
 * Kiln's own fields a config.json may add to Triton's messages (loadModel's options: see
 * lib/batching/config.ts), passed through unchecked here and checked by loadModel.
 */
const KILN_FIELDS: Readonly<Record<string, readonly string[]>> = {
  ModelConfig: ['paddingCheck', 'session', 'semanticCache'],
  ModelInput: ['allowPadding', 'padValue', 'lengthBuckets', 'padAxes'],
  ModelOutput: ['cropAxes', 'keepAxes'],
  ModelDynamicBatching: ['maxLatencyMs'],
};

/** The same checks on a config.json object (camelCase or snake_case names). */
function fromJson(value: unknown, spec: string, at: Place): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw configError(at, `expected an object, found ${JSON.stringify(value)}`);
  const fields = SCHEMA[spec];
  const out: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
    if (KILN_FIELDS[spec]?.includes(name)) {
      out[name] = v;
      continue;
    }
    const field = fields[name] ?? fields[snake(name)];
    const path = `${at.path ? `${at.path}.` : ''}${name}`;
    if (!field) throw configError({ ...at, path }, `no such field in Triton's ${spec}`);
    const type = field.type;
    const convert = (x: unknown, p: string): unknown => {
      const place = { ...at, path: p };
      if (type === 'any') return x;
      if (typeof type === 'object' && 'message' in type) return fromJson(x, type.message, place);
      if (typeof type === 'object' && 'map' in type) {
        if (x === null || typeof x !== 'object' || Array.isArray(x)) throw configError(place, 'expected an object (a map)');
        const entries: Record<string, unknown> = {};
        for (const [k, item] of Object.entries(x as Record<string, unknown>)) {
          scalarValue(type.map[0], type.map[0] === 'string' ? k : Number(k), { ...place, path: `${p}["${k}"]` });
          const vt = type.map[1];
          entries[k] = typeof vt === 'object' && 'message' in vt ? fromJson(item, vt.message, { ...place, path: `${p}["${k}"]` }) : vt === 'any' ? item : scalarValue(vt as Scalar, item, { ...place, path: `${p}["${k}"]` });
        }
        return entries;
      }
      return scalarValue(type as Scalar | { enum: readonly string[] }, x, place);
    };
    if (field.repeated) {
      if (!Array.isArray(v)) throw configError({ ...at, path }, 'expected an array');
      out[camel(snake(name))] = v.map((x, i) => convert(x, `${path}[${i}]`));
    } else {
      out[camel(snake(name))] = convert(v, path);
    }
  }
  return out;
}

/** A config.pbtxt's text as Triton's ModelConfig. */
export function parseModelConfigText(text: string, file: string): TritonModelConfig {
  return fromText(parseTextFormat(text, file), 'ModelConfig', { file, path: '' }) as TritonModelConfig;
}

/**
 * A config.json: Triton's fields (protobuf JSON names, camelCase or snake_case) checked the
 * same way, Kiln's additions (KILN_FIELDS) kept as given for loadModel to check.
 */
export function parseModelConfigJson(text: string, file: string): TritonModelConfig {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new KilnError('E_INVALID_ARGUMENT', `${file}: not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  return fromJson(value, 'ModelConfig', { file, path: '' }) as TritonModelConfig;
}
