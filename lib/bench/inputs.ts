/**
 * The requests' inputs: random (or zero) data shaped by the model's metadata, or real data
 * from .npy and raw files or a JSON file in perf_analyzer's `--input-data` format. Symbolic
 * dims take their sizes from `--shape NAME:d1,d2,...` (perf_analyzer's form).
 */
import * as fs from 'fs';
import * as path from 'path';
import { KilnError } from '../errors';
import { readNpy } from '../optimize/data';
import { float16Bits } from '../optimize/fp16';
import { prng } from '../samples';
import { ARRAY_TYPE, Tensor, formatShape, type TensorType } from '../tensor';
import { decodeStrings, elements, parseRaw } from './raw';
import type { InputSet } from './types';

export interface InputSpec {
  name: string;
  type: TensorType;
  shape: (number | string | null)[];
}

const invalid = (message: string): never => {
  throw new KilnError('E_INVALID_ARGUMENT', message);
};

const isFixed = (d: number | string | null): d is number => typeof d === 'number' && d >= 0;

/** `--shape NAME:1,3,48,320` as [name, dims]. */
export function parseShapeFlag(text: string): [string, number[]] {
  const colon = text.lastIndexOf(':');
  const dims = text.slice(colon + 1).split(',').map(Number);
  if (colon <= 0 || text.slice(colon + 1).trim() === '' || dims.some((d) => !Number.isInteger(d) || d < 0)) {
    invalid(`--shape takes NAME:d1,d2,... (an input's name and its dims, integers >= 0), received ${text}`);
  }
  return [text.slice(0, colon), dims];
}

/** A --shape given for an input, checked against the model's: same rank, same fixed dims. */
function checkedShape(spec: InputSpec, dims: readonly number[]): number[] {
  if (dims.length !== spec.shape.length || spec.shape.some((d, i) => isFixed(d) && d !== dims[i])) {
    invalid(`--shape ${spec.name}:${dims.join(',')} does not fit input "${spec.name}" of shape ${formatShape(spec.shape)}`);
  }
  return [...dims];
}

/** An input's dims: its own where fixed, else the --shape given for it (undefined when none). */
export function resolveDims(spec: InputSpec, shapes: Readonly<Record<string, number[]>>): number[] | undefined {
  if (Object.hasOwn(shapes, spec.name)) return checkedShape(spec, shapes[spec.name]);
  return spec.shape.every(isFixed) ? (spec.shape as number[]) : undefined;
}

/** Every input's dims, or an error listing the inputs whose symbolic dims need a --shape. */
function allDims(specs: readonly InputSpec[], shapes: Readonly<Record<string, number[]>>): number[][] {
  for (const name of Object.keys(shapes)) {
    if (!specs.some((s) => s.name === name)) invalid(`--shape names "${name}", not one of the model's inputs (${specs.map((s) => s.name).join(', ')})`);
  }
  const dims = specs.map((s) => resolveDims(s, shapes));
  const missing = specs.filter((_, i) => !dims[i]);
  if (missing.length) {
    invalid(`${missing.map((s) => `input "${s.name}" ${formatShape(s.shape)}`).join(', ')} ${missing.length === 1 ? 'has' : 'have'} symbolic dims: ` +
      `give ${missing.length === 1 ? 'its shape' : 'their shapes'} with --shape NAME:d1,d2,... (e.g. --shape ${missing[0].name}:${missing[0].shape.map((d) => (isFixed(d) ? d : 1)).join(',')})`);
  }
  return dims as number[][];
}

/** Integers random inputs draw from: small and non-negative, so that index inputs stay in range. */
const RANDOM_INT_RANGE = 16;

function randomTensor(type: TensorType, dims: number[], next: () => number, zero: boolean): Tensor {
  const n = elements(dims);
  const u = (): number => (zero ? 0 : (next() + 1) / 2);
  if (type === 'string') return new Tensor('string', Array.from({ length: n }, () => (zero ? '' : `kiln ${Math.floor(u() * 1000)}`)), dims);
  const data = new ARRAY_TYPE[type](new ArrayBuffer(n * ARRAY_TYPE[type].BYTES_PER_ELEMENT), 0, n);
  for (let i = 0; i < n; i++) {
    const v = u();
    if (type === 'float32' || type === 'float64') data[i] = zero ? 0 : v - 0.5;
    else if (type === 'float16') data[i] = float16Bits(zero ? 0 : v - 0.5);
    else if (type === 'bfloat16') data[i] = new Uint32Array(new Float32Array([zero ? 0 : v - 0.5]).buffer)[0] >>> 16;
    else if (type === 'bool') data[i] = v < 0.5 ? 0 : 1;
    else if (type === 'int64' || type === 'uint64') data[i] = BigInt(Math.floor(v * RANDOM_INT_RANGE)) as never;
    else data[i] = Math.floor(v * RANDOM_INT_RANGE);
  }
  return new Tensor(type, data as never, dims);
}

/**
 * `count` input sets of seeded random values: floats uniform in [-0.5, 0.5), integers in
 * [0, 16), booleans, and strings. Symbolic dims come from `shapes` (full shapes by input
 * name); an input left symbolic is an error naming it.
 */
export function randomInputs(specs: { name: string; type: TensorType; shape: (number | string | null)[] }[], shapes: Record<string, number[]>, count: number, seed = 1): InputSet[] {
  const dims = allDims(specs, shapes);
  const next = prng(seed);
  return Array.from({ length: count }, () => Object.fromEntries(specs.map((s, i) => [s.name, randomTensor(s.type, dims[i], next, false)])));
}

/** One input set of zeros (perf_analyzer's `--input-data zero`). */
export function zeroInputs(specs: InputSpec[], shapes: Record<string, number[]>): InputSet[] {
  const dims = allDims(specs, shapes);
  return [Object.fromEntries(specs.map((s, i) => [s.name, randomTensor(s.type, dims[i], () => 0, true)]))];
}

/**
 * The dims of data holding `count` elements for `spec`: the resolved dims, or the model's
 * shape with its one symbolic dim sized to fit.
 */
function dimsForCount(spec: InputSpec, shapes: Readonly<Record<string, number[]>>, count: number, where: string): number[] {
  const dims = resolveDims(spec, shapes);
  if (dims) {
    if (elements(dims) !== count) invalid(`${where}: input "${spec.name}" of shape [${dims.join(',')}] needs ${elements(dims)} elements, the data holds ${count}`);
    return dims;
  }
  const free = spec.shape.filter((d) => !isFixed(d)).length;
  const fixed = elements(spec.shape.filter(isFixed));
  if (free !== 1 || fixed === 0 || count % fixed !== 0) {
    return invalid(`${where}: input "${spec.name}" ${formatShape(spec.shape)} holds ${count} elements; give its shape with --shape ${spec.name}:d1,d2,...`);
  }
  return spec.shape.map((d) => (isFixed(d) ? d : count / fixed));
}

/** Checks data read for `spec` against the model's shape and type. */
function fits(spec: InputSpec, t: Tensor, where: string): Tensor {
  if (t.type !== spec.type) invalid(`${where}: input "${spec.name}" is ${spec.type}, the data is ${t.type}`);
  if (t.dims.length !== spec.shape.length || spec.shape.some((d, i) => isFixed(d) && d !== t.dims[i])) {
    invalid(`${where}: input "${spec.name}" has shape ${formatShape(spec.shape)}, the data has [${t.dims.join(',')}]`);
  }
  return t;
}

/** One JSON value of perf_analyzer's format as a tensor for `spec`. */
function jsonTensor(spec: InputSpec, value: unknown, shapes: Readonly<Record<string, number[]>>, where: string): Tensor {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && typeof (value as { b64?: unknown }).b64 === 'string') {
    const bytes = Buffer.from((value as { b64: string }).b64, 'base64');
    if (spec.type === 'string') {
      const dims = resolveDims(spec, shapes) ?? invalid(`${where}: input "${spec.name}" ${formatShape(spec.shape)}: give its shape with --shape ${spec.name}:d1,d2,...`);
      return new Tensor('string', decodeStrings(bytes, elements(dims), where), dims);
    }
    const size = ARRAY_TYPE[spec.type].BYTES_PER_ELEMENT;
    if (bytes.length % size !== 0) invalid(`${where}: input "${spec.name}" is ${spec.type} (${size} bytes each), the b64 data holds ${bytes.length} bytes`);
    return parseRaw(bytes, spec.type, dimsForCount(spec, shapes, bytes.length / size, where), where);
  }
  let content: unknown = value;
  let dims: number[] | undefined;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const v = value as { content?: unknown; shape?: unknown };
    if (!Array.isArray(v.content)) invalid(`${where}: input "${spec.name}" must be an array, {"content": [...], "shape": [...]} or {"b64": "..."}`);
    if (v.shape !== undefined && (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isInteger(d) && d >= 0))) invalid(`${where}: input "${spec.name}": "shape" must be an array of integers >= 0`);
    content = v.content;
    dims = v.shape as number[] | undefined;
  }
  if (!Array.isArray(content)) return invalid(`${where}: input "${spec.name}" must be an array, {"content": [...], "shape": [...]} or {"b64": "..."}`);
  const flat = (content as unknown[]).flat(Infinity);
  dims ??= dimsForCount(spec, shapes, flat.length, where);
  if (elements(dims) !== flat.length) invalid(`${where}: input "${spec.name}" of shape [${dims.join(',')}] needs ${elements(dims)} elements, the data holds ${flat.length}`);
  return fits(spec, fromValues(spec, flat, dims, where), where);
}

/** JSON values (numbers, booleans, strings) as a tensor of `spec.type`. */
function fromValues(spec: InputSpec, values: unknown[], dims: number[], where: string): Tensor {
  const bad = (i: number, what: string): never => invalid(`${where}: input "${spec.name}" element ${i} is ${JSON.stringify(values[i])}, expected ${what}`);
  if (spec.type === 'string') return new Tensor('string', values.map((v, i) => (typeof v === 'string' ? v : bad(i, 'a string'))), dims);
  const data = new ARRAY_TYPE[spec.type](new ArrayBuffer(values.length * ARRAY_TYPE[spec.type].BYTES_PER_ELEMENT), 0, values.length);
  values.forEach((v, i) => {
    if (spec.type === 'bool') data[i] = typeof v === 'boolean' || v === 0 || v === 1 ? Number(v) : bad(i, 'true, false, 0 or 1');
    else if (spec.type === 'int64' || spec.type === 'uint64') {
      const ok = (typeof v === 'number' && Number.isInteger(v)) || (typeof v === 'string' && /^-?[0-9]+$/.test(v));
      data[i] = (ok ? BigInt(v as number | string) : bad(i, 'an integer')) as never;
    } else if (typeof v !== 'number') bad(i, 'a number');
    else if (spec.type === 'float16') data[i] = float16Bits(v as number);
    else if (spec.type === 'bfloat16') data[i] = new Uint32Array(new Float32Array([v as number]).buffer)[0] >>> 16;
    else data[i] = v as number;
  });
  return new Tensor(spec.type, data as never, dims);
}

/** perf_analyzer's `--input-data` JSON: `{"data": [{NAME: value, ...}, ...]}`, one input set per entry. */
export function parseInputData(text: string, file: string, specs: InputSpec[], shapes: Record<string, number[]>): InputSet[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return invalid(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  const data = (doc as { data?: unknown } | null)?.data;
  if (!Array.isArray(data) || data.length === 0) return invalid(`${file}: expected {"data": [{"INPUT": [...]}, ...]} with at least one entry`);
  return data.map((entry: unknown, i) => {
    const where = `${file}: data[${i}]`;
    if (Array.isArray(entry)) return invalid(`${where} is a list: sequence streams are not supported, give one object per request`);
    if (entry === null || typeof entry !== 'object') return invalid(`${where} must be an object mapping input names to data`);
    const names = Object.keys(entry);
    const unknown = names.filter((n) => !specs.some((s) => s.name === n));
    if (unknown.length) invalid(`${where} names ${unknown.map((n) => `"${n}"`).join(', ')}, not among the model's inputs (${specs.map((s) => s.name).join(', ')})`);
    const missing = specs.filter((s) => !names.includes(s.name));
    if (missing.length) invalid(`${where} lacks input ${missing.map((s) => `"${s.name}"`).join(', ')}`);
    return Object.fromEntries(specs.map((s) => [s.name, jsonTensor(s, (entry as Record<string, unknown>)[s.name], shapes, where)]));
  });
}

/** A file of data for one input: .npy, else raw bytes of the model's type. */
function readInputFile(spec: InputSpec, file: string, shapes: Record<string, number[]>): Tensor {
  if (file.endsWith('.npy')) return fits(spec, readNpy(file), file);
  const bytes = fs.readFileSync(file);
  if (spec.type === 'string') {
    const dims = resolveDims(spec, shapes) ?? invalid(`${file}: input "${spec.name}" ${formatShape(spec.shape)}: give its shape with --shape ${spec.name}:d1,d2,...`);
    return parseRaw(bytes, 'string', dims, file);
  }
  const size = ARRAY_TYPE[spec.type].BYTES_PER_ELEMENT;
  if (bytes.length % size !== 0) invalid(`${file}: input "${spec.name}" is ${spec.type} (${size} bytes each), the file holds ${bytes.length} bytes`);
  return parseRaw(bytes, spec.type, dimsForCount(spec, shapes, bytes.length / size, file), file);
}

export interface InputOptions {
  /** Random input sets made (default 4). */
  count?: number;
  seed?: number;
  /** Sizes of symbolic dims for random data where no --shape is given (e.g. the batch). */
  defaults?: Record<string, number[]>;
}

/**
 * The input sets `--input-data` asks for: 'random' (default) or 'zero'; a .json file in
 * perf_analyzer's format; a folder holding a file per input (NAME.npy or NAME, raw); or,
 * for a model with one input, an .npy or raw file.
 */
export function loadInputs(source: string | undefined, specs: InputSpec[], shapes: Record<string, number[]>, o: InputOptions = {}): InputSet[] {
  if (source === undefined || source === 'random') return randomInputs(specs, { ...o.defaults, ...shapes }, o.count ?? 4, o.seed);
  if (source === 'zero') return zeroInputs(specs, { ...o.defaults, ...shapes });
  if (!fs.existsSync(source)) throw new KilnError('E_NOT_FOUND', `--input-data: no such file or folder: ${source} (or give random or zero)`);
  if (fs.statSync(source).isDirectory()) {
    const set: InputSet = {};
    const missing: string[] = [];
    for (const spec of specs) {
      const file = [path.join(source, `${spec.name}.npy`), path.join(source, spec.name)].find((f) => fs.existsSync(f));
      if (file) set[spec.name] = readInputFile(spec, file, shapes);
      else missing.push(spec.name);
    }
    if (missing.length) invalid(`${source}: no file for input ${missing.map((n) => `"${n}" (${n}.npy or ${n}, raw)`).join(', ')}`);
    return [set];
  }
  if (source.endsWith('.json')) return parseInputData(fs.readFileSync(source, 'utf8'), source, specs, shapes);
  if (specs.length !== 1) invalid(`${source}: one data file feeds a model with one input; this one has ${specs.length} (${specs.map((s) => s.name).join(', ')}): give a folder with a file per input, or a .json file`);
  return [{ [specs[0].name]: readInputFile(specs[0], source, shapes) }];
}
