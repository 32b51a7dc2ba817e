/**
 * What an infer request means whatever protocol carried it: the inputs a model takes (each
 * once), the `priority` and `timeout` parameters, the outputs asked for, and the response
 * parameters that say how the answer was served.
 */
import type { InferOptions, InferResult } from '../batching/model';
import { KilnError } from '../errors';
import { Tensor, type TensorType } from '../tensor';
import type { ModelManager, ServedVersion } from './models';
import { v2FromConfig } from './tensors';

/** The model's inputs by name, and a check that adds one input per name. */
export function inputChecker(v: ServedVersion): { type(name: unknown): TensorType; names: string[] } {
  const types = new Map(v.model.inputs.map((i) => [i.name, i.type as TensorType]));
  const seen = new Set<string>();
  return {
    names: [...types.keys()],
    type(name) {
      if (typeof name !== 'string' || name === '') throw new KilnError('E_INVALID_ARGUMENT', 'each input needs a name');
      const type = types.get(name);
      if (!type) throw new KilnError('E_INVALID_ARGUMENT', `unexpected inference input "${name}" for model "${v.name}" (its inputs: ${[...types.keys()].join(', ')})`);
      if (seen.has(name)) throw new KilnError('E_INVALID_ARGUMENT', `input "${name}" is given twice`);
      seen.add(name);
      return type;
    },
  };
}

/**
 * The request parameters `priority` (level, 0: the model's default), `timeout` (µs, 0: none)
 * and `partition` (the tenant whose semantic cache entries the request may see).
 */
export function inferOptions(p: Record<string, unknown>): InferOptions {
  const options: InferOptions = {};
  const integer = (name: string, what: string): number | undefined => {
    const x = p[name];
    if (x === undefined) return undefined;
    const n = typeof x === 'string' && /^\d+$/.test(x) ? Number(x) : x;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new KilnError('E_INVALID_ARGUMENT', `parameter "${name}" ${what} must be an integer >= 0, received ${JSON.stringify(x)}`);
    return n;
  };
  const priority = integer('priority', '(the level, 1 highest)');
  if (priority !== undefined) options.priority = priority;
  const timeout = integer('timeout', '(µs)');
  if (timeout) options.timeoutMs = timeout / 1000;
  const partition = p.partition;
  if (partition !== undefined) {
    if (typeof partition !== 'string') throw new KilnError('E_INVALID_ARGUMENT', `parameter "partition" must be a string, received ${JSON.stringify(partition)}`);
    options.partition = partition;
  }
  return options;
}

/**
 * The response parameters that say how a request was served: `kiln_cache` is `hit` (from the
 * response cache), `semantic_hit` (from the semantic cache, with `kiln_similarity`: the
 * cosine similarity, or L2 distance, of the cached request) or `miss` (the model ran, and its
 * answer was stored); a model without a cache adds none, so its answers are Triton's as they are.
 */
export function servedParameters(cache: InferResult['cache']): Record<string, string | number> | undefined {
  if (cache.outcome === 'none') return undefined;
  if (cache.outcome === 'semantic_hit') return { kiln_cache: cache.outcome, kiln_similarity: cache.similarity ?? 0 };
  return { kiln_cache: cache.outcome };
}

/** The output asked for by `name`, checked against the model's outputs. */
export function outputName(v: ServedVersion, name: unknown): string {
  const outputs = v.model.outputs.map((o) => o.name);
  if (typeof name !== 'string' || !outputs.includes(name)) throw new KilnError('E_INVALID_ARGUMENT', `unexpected inference output ${JSON.stringify(name)} for model "${v.name}" (its outputs: ${outputs.join(', ')})`);
  return name;
}

/** Model metadata as KServe v2 gives it: shapes with -1 for the batch dim when the model batches. */
export function modelMetadata(manager: ModelManager, name: string, version?: string): { name: string; versions: string[]; platform: string; inputs: TensorMetadata[]; outputs: TensorMetadata[] } {
  const v = manager.resolve(name, version);
  const versions = manager.index().filter((s) => s.name === name && s.version !== undefined && s.state === 'READY').map((s) => String(s.version));
  const batch = (v.config.maxBatchSize ?? 0) > 0 ? [-1] : [];
  const tensors = (list: typeof v.config.input): TensorMetadata[] => (list ?? []).map((t) => ({ name: t.name, datatype: v2FromConfig(t.dataType), shape: [...batch, ...(t.dims ?? [])] }));
  return { name: v.name, versions, platform: 'onnxruntime_onnx', inputs: tensors(v.config.input), outputs: tensors(v.config.output) };
}

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

/**
 * Triton's `reshape`: a request gives an input in the config's dims, the model takes it in
 * `reshape.shape` (the batch dim, when the model batches, kept in front); an output comes
 * from the model in `reshape.shape` and is answered in the config's dims. Same data, other
 * dims; the element counts must agree.
 */
export function reshapeInput(v: ServedVersion, name: string, tensor: Tensor): Tensor {
  const c = v.config.input?.find((t) => t.name === name);
  if (!c?.reshape) return tensor;
  const batch = (v.config.maxBatchSize ?? 0) > 0 ? tensor.dims.slice(0, 1) : [];
  const given = tensor.dims.slice(batch.length);
  const want = c.dims ?? [];
  if (given.length !== want.length || given.some((d, i) => want[i] !== -1 && want[i] !== d)) {
    throw new KilnError('E_SHAPE_MISMATCH', `input "${name}": shape [${tensor.dims}] does not match the config's dims [${[...(batch.length ? [-1] : []), ...want]}]`);
  }
  const shape = c.reshape.shape ?? [];
  const count = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);
  if (shape.some((d) => d < 0) || count(shape) !== count(given)) throw new KilnError('E_SHAPE_MISMATCH', `input "${name}": dims [${given}] cannot be reshaped to [${shape}]`);
  return new Tensor(tensor.type, tensor.data as never, [...batch, ...shape]);
}

/** An output's dims as the config states them (see reshapeInput). */
export function reshapedOutputDims(v: ServedVersion, name: string, dims: readonly number[]): number[] {
  const c = v.config.output?.find((t) => t.name === name);
  if (!c?.reshape || !c.dims || c.dims.some((d) => d < 0)) return [...dims];
  const batch = (v.config.maxBatchSize ?? 0) > 0 ? dims.slice(0, 1) : [];
  return [...batch, ...c.dims];
}
