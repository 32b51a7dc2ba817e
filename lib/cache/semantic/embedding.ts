/**
 * Where a semantic cache's vector comes from: the request's input tensor itself (feature
 * inputs, near-duplicate images and frames), a function of the feeds, or another model's
 * output (an embedding model run on the same feeds). Every source yields a float32 vector,
 * unit length unless asked otherwise (the cosine metric wants direction only).
 */
import { KilnError } from '../../errors';
import { float16Value } from '../../optimize/fp16';
import type { TensorLike } from '../../tensor';

/** What a source reads: the request's tensors by input name (host tensors only). */
export type EmbeddingFeeds = Readonly<Record<string, TensorLike | object>>;

/** A vector computed in-process from the feeds. */
export type EmbeddingFunction = (feeds: EmbeddingFeeds) => Float32Array | Promise<Float32Array>;

/** The part of a served model (Kiln's Model) that an embedding source needs. */
export interface EmbeddingModel {
  infer(feeds: EmbeddingFeeds): Promise<Readonly<Record<string, TensorLike>>>;
}

/**
 * 'input': the only input (or `{ input: name }`: the named one), flattened; a function; or
 * `{ model, output }`: that output of that model run on the same feeds.
 */
export type EmbeddingSource = 'input' | { input: string } | EmbeddingFunction | { model: EmbeddingModel; output: string };

export interface EmbeddingOptions {
  /** Scale to unit length (default true: what the cosine metric expects). */
  normalize?: boolean;
}

function invalid(message: string): KilnError {
  return new KilnError('E_INVALID_ARGUMENT', `semantic cache embedding: ${message}`);
}

/**
 * The elements of a numeric tensor as float32, in order (int64 as Number, float16/bfloat16
 * decoded): written into `into` when it has the right length, else into a new array.
 */
export function tensorVector(tensor: TensorLike, what: string, into?: Float32Array): Float32Array {
  const { type, data } = tensor;
  if (type === 'string' || !ArrayBuffer.isView(data)) {
    throw new KilnError('E_DTYPE_MISMATCH', `semantic cache embedding: ${what} must be a numeric tensor in host memory, received ${type === 'string' ? 'a string tensor' : 'no host data'}`);
  }
  const n = data.length;
  const out = into?.length === n ? into : new Float32Array(n);
  if (type === 'float16') {
    for (let i = 0; i < n; i++) out[i] = float16Value(data[i] as number);
  } else if (type === 'bfloat16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = (data[i] as number) << 16;
  } else if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let i = 0; i < n; i++) out[i] = Number(data[i]);
  } else {
    out.set(data as ArrayLike<number>);
  }
  return out;
}

/** `v` scaled to unit length, in place; a zero or non-finite vector is an error naming `what`. */
export function normalizeVector(v: Float32Array, what: string): Float32Array {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i] * v[i];
  if (!Number.isFinite(sum)) throw invalid(`${what} has a non-finite element`);
  if (sum === 0) throw invalid(`${what} is all zeros, which has no direction for cosine similarity`);
  const scale = 1 / Math.sqrt(sum);
  for (let i = 0; i < v.length; i++) v[i] *= scale;
  return v;
}

function asTensor(t: unknown, what: string): TensorLike {
  if (t === null || typeof t !== 'object' || !('type' in t) || !('data' in t)) throw invalid(`${what} is not a tensor in host memory`);
  return t as TensorLike;
}

/**
 * The input tensor `input` (default: the only one) flattened to float32, unit length unless
 * `normalize: false`; written into `into` when it has the right length (see tensorVector).
 */
export function inputEmbedding(feeds: EmbeddingFeeds, input?: string, options: EmbeddingOptions = {}, into?: Float32Array): Float32Array {
  const names = Object.keys(feeds);
  let name = input;
  if (name === undefined) {
    if (names.length !== 1) throw invalid(`name the input to embed: the feeds have ${names.length} inputs (${names.join(', ')})`);
    name = names[0];
  } else if (!Object.prototype.hasOwnProperty.call(feeds, name)) {
    throw invalid(`input "${name}" is not among the feeds (${names.join(', ')})`);
  }
  const what = `input "${name}"`;
  const v = tensorVector(asTensor(feeds[name], what), what, into);
  return options.normalize === false ? v : normalizeVector(v, what);
}

/**
 * For the sources computed from the feeds alone ('input', { input }): the vector written into
 * `into` when it has the right length, synchronously (a lookup can then reuse one scratch
 * array: a fresh one per request is a large allocation for an image input). Undefined for
 * the other sources.
 */
export function inputEmbedder(source: EmbeddingSource, options: EmbeddingOptions = {}): ((feeds: EmbeddingFeeds, into?: Float32Array) => Float32Array) | undefined {
  if (source === 'input') return (feeds, into) => inputEmbedding(feeds, undefined, options, into);
  if (source !== null && typeof source === 'object' && !('model' in source) && typeof source.input === 'string') {
    const name = source.input;
    return (feeds, into) => inputEmbedding(feeds, name, options, into);
  }
  return undefined;
}

/** Output `output` of `model` run on the feeds, flattened to float32, unit length unless `normalize: false`. */
export async function modelEmbedding(model: EmbeddingModel, output: string, feeds: EmbeddingFeeds, options: EmbeddingOptions = {}): Promise<Float32Array> {
  const results = await model.infer(feeds);
  if (!Object.prototype.hasOwnProperty.call(results, output)) {
    throw new KilnError('E_NOT_FOUND', `semantic cache embedding: the embedding model has no output "${output}" (outputs: ${Object.keys(results).join(', ')})`);
  }
  const what = `embedding output "${output}"`;
  const v = tensorVector(asTensor(results[output], what), what);
  return options.normalize === false ? v : normalizeVector(v, what);
}

/** The function computing the vector of a request's feeds from `source`. */
export function embedder(source: EmbeddingSource, options: EmbeddingOptions = {}): (feeds: EmbeddingFeeds) => Promise<Float32Array> {
  if (source === 'input') return async (feeds) => inputEmbedding(feeds, undefined, options);
  if (typeof source === 'function') {
    return async (feeds) => {
      const v = await source(feeds);
      if (!(v instanceof Float32Array)) throw invalid(`the embedding function must return a Float32Array, received ${v === null ? 'null' : typeof v}`);
      return options.normalize === false ? v : normalizeVector(v.slice(), 'the embedding function\'s vector');
    };
  }
  if (source !== null && typeof source === 'object') {
    if ('model' in source) {
      if (typeof source.model?.infer !== 'function' || typeof source.output !== 'string') throw invalid('{ model, output } needs a model with infer() and an output name');
      return (feeds) => modelEmbedding(source.model, source.output, feeds, options);
    }
    if (typeof source.input === 'string') return async (feeds) => inputEmbedding(feeds, source.input, options);
  }
  throw invalid(`source must be 'input', { input }, a function or { model, output }, received ${String(source)}`);
}
