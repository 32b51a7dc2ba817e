/**
 * Sample inputs for calibration and evaluation, from files:
 *
 * - a folder of .npy files (NumPy's format): for a single-input model each file, in name
 *   order, is one sample; for a model with several inputs each sub-folder is one sample,
 *   holding `<input>.npy` for every input (a single-input model may use sub-folders too);
 * - .raw files, in the same layouts: the input's element type, little-endian, with the dims
 *   of the model's input and the first (batch) dim worked out from the file's size;
 * - a JavaScript module (.js, .cjs, .mjs) whose `samples` or default export is an array, an
 *   iterable or async iterable, or a function (possibly async, called with the model's
 *   inputs) returning one, of feeds ({ [input]: { type, data, dims } });
 * - a single .npy or .raw file: one sample of a single-input model.
 *
 * Sample tensors must have the model's element type, except that float64 and float16 data
 * for a float32 input become float32, float32 and float64 data for a float16 input become
 * float16, and integer data for an int64 or int32 input is converted when every value fits
 * (NumPy writes float64 and int64 unless told otherwise).
 */
import * as fs from 'fs';
import * as path from 'path';
import { pathToFileURL } from 'url';
import { KilnError } from '../errors';
import { prng } from '../samples';
import type { Feeds, ValueInfo } from '../session';
import { ARRAY_TYPE, Tensor, elementCount, formatShape, isTensorType, type TensorDataTypes, type TensorType } from '../tensor';
import { float16Bits, float16Value } from './fp16';

type NumericType = Exclude<TensorType, 'string'>;

export interface SampleOptions {
  /** Sizes for named symbolic dims (used by .raw files and randomFeeds). */
  dims?: Readonly<Record<string, number>>;
}

// ---------------------------------------------------------------------------------------------
// .npy

const NPY_TYPES: Readonly<Record<string, NumericType>> = {
  f2: 'float16', f4: 'float32', f8: 'float64',
  i1: 'int8', i2: 'int16', i4: 'int32', i8: 'int64',
  u1: 'uint8', u2: 'uint16', u4: 'uint32', u8: 'uint64',
  b1: 'bool',
};

/** A Python literal from a .npy header: the subset NumPy writes (dict, tuple, str, int, bool). */
type PyValue = string | number | boolean | null | PyValue[] | { [key: string]: PyValue };

function parsePython(text: string, file: string): PyValue {
  let i = 0;
  const fail = (what: string): never => {
    throw new KilnError('E_INVALID_ARGUMENT', `${file}: cannot read the .npy header (${what} at character ${i}): ${text.trim()}`);
  };
  const space = (): void => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const value = (): PyValue => {
    space();
    const c = text[i];
    if (c === '{' || c === '(' || c === '[') {
      const close = c === '{' ? '}' : c === '(' ? ')' : ']';
      i++;
      const items: PyValue[] = [];
      const dict: Record<string, PyValue> = {};
      for (;;) {
        space();
        if (text[i] === close) {
          i++;
          break;
        }
        const item = value();
        if (c === '{') {
          space();
          if (text[i] !== ':') fail('expected ":"');
          i++;
          if (typeof item !== 'string') fail('a dict key that is not a string');
          dict[item as string] = value();
        } else {
          items.push(item);
        }
        space();
        if (text[i] === ',') i++;
        else if (text[i] !== close) fail(`expected "," or "${close}"`);
      }
      return c === '{' ? dict : items;
    }
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) fail('an unterminated string');
      const s = text.slice(i + 1, end);
      i = end + 1;
      return s;
    }
    const word = /^[A-Za-z0-9_+-]+/.exec(text.slice(i))?.[0];
    if (!word) return fail('an unexpected character');
    i += word.length;
    if (word === 'True') return true;
    if (word === 'False') return false;
    if (word === 'None') return null;
    const n = Number(word.replace(/L$/, ''));
    if (!Number.isInteger(n)) fail(`"${word}"`);
    return n;
  };
  const v = value();
  space();
  if (i !== text.length) fail('trailing text');
  return v;
}

/** Reads a .npy file (format versions 1 to 3, C order, little-endian or single-byte types). */
export function readNpy(file: string): Tensor {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new KilnError('E_NOT_FOUND', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
  if (bytes.length < magic.length || magic.some((b, i) => bytes[i] !== b)) throw new KilnError('E_INVALID_ARGUMENT', `${file} is not a .npy file (no \\x93NUMPY magic)`);
  if (bytes.length < 10) throw new KilnError('E_INVALID_ARGUMENT', `${file}: truncated .npy header`);
  const major = bytes[6];
  let headerLength: number;
  let start: number;
  if (major === 1) {
    headerLength = bytes.readUInt16LE(8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new KilnError('E_INVALID_ARGUMENT', `${file}: truncated .npy header`);
    headerLength = bytes.readUInt32LE(8);
    start = 12;
  } else {
    throw new KilnError('E_INVALID_ARGUMENT', `${file}: .npy format version ${major}.${bytes[7]} is not supported (1.0 to 3.0 are)`);
  }
  if (start + headerLength > bytes.length) throw new KilnError('E_INVALID_ARGUMENT', `${file}: truncated .npy header`);
  const text = bytes.subarray(start, start + headerLength).toString(major === 3 ? 'utf8' : 'latin1');
  const header = parsePython(text, file);
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw new KilnError('E_INVALID_ARGUMENT', `${file}: the .npy header is not a dict`);
  for (const key of ['descr', 'fortran_order', 'shape']) {
    if (!(key in header)) throw new KilnError('E_INVALID_ARGUMENT', `${file}: the .npy header has no '${key}': ${text.trim()}`);
  }
  const { descr, fortran_order: fortran, shape } = header as Record<string, PyValue>;
  if (typeof descr !== 'string') throw new KilnError('E_INVALID_ARGUMENT', `${file}: structured NumPy dtypes are not supported (descr ${JSON.stringify(descr)})`);
  if (fortran !== false) throw new KilnError('E_INVALID_ARGUMENT', `${file}: Fortran-order arrays are not supported; save with np.ascontiguousarray(a)`);
  if (!Array.isArray(shape) || shape.some((d) => typeof d !== 'number' || d < 0)) throw new KilnError('E_INVALID_ARGUMENT', `${file}: the .npy shape ${JSON.stringify(shape)} is not a tuple of sizes`);
  const order = descr[0];
  const type = NPY_TYPES[descr.slice(1)];
  if (!type || !'<>|='.includes(order)) throw new KilnError('E_INVALID_ARGUMENT', `${file}: NumPy dtype '${descr}' is not supported (float16/32/64, int8..64, uint8..64 and bool are)`);
  const ctor = ARRAY_TYPE[type];
  if (order === '>' && ctor.BYTES_PER_ELEMENT > 1) throw new KilnError('E_INVALID_ARGUMENT', `${file}: big-endian data ('${descr}') is not supported; save with a.astype(a.dtype.newbyteorder('<'))`);
  const dims = shape as number[];
  const count = elementCount(dims, file);
  const offset = start + headerLength;
  const size = count * ctor.BYTES_PER_ELEMENT;
  if (bytes.length - offset !== size) {
    throw new KilnError('E_INVALID_ARGUMENT', `${file}: shape ${formatShape(dims)} of '${descr}' needs ${size} bytes of data, the file has ${bytes.length - offset}`);
  }
  const data = new ctor(bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + size), 0, count);
  if (type === 'bool') {
    const bad = (data as Uint8Array).findIndex((v) => v > 1);
    if (bad >= 0) throw new KilnError('E_INVALID_ARGUMENT', `${file}: bool element ${bad} is ${data[bad]}`);
  }
  return new Tensor(type, data as TensorDataTypes[NumericType], dims);
}

/** Writes `tensor` as a version 1.0 .npy file (what NumPy reads with np.load). */
export function writeNpy(file: string, tensor: { type: TensorType; data: ArrayLike<unknown>; dims: readonly number[] }): void {
  const code = Object.entries(NPY_TYPES).find(([, t]) => t === tensor.type)?.[0];
  if (!code || !ArrayBuffer.isView(tensor.data)) throw new KilnError('E_INVALID_ARGUMENT', `.npy: cannot write ${tensor.type} tensors`);
  const shape = tensor.dims.length === 1 ? `(${tensor.dims[0]},)` : `(${tensor.dims.join(', ')})`;
  let header = `{'descr': '${code[1] === '1' ? '|' : '<'}${code}', 'fortran_order': False, 'shape': ${shape}, }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n'; // data aligned to 64 bytes
  const head = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(head);
  head.writeUInt16LE(header.length, 8);
  const view = tensor.data as ArrayBufferView;
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(view.buffer, view.byteOffset, view.byteLength)]));
}

// ---------------------------------------------------------------------------------------------
// .raw

function readRaw(file: string, input: ValueInfo, options: SampleOptions): Tensor {
  const type = input.type;
  if (!isTensorType(type) || type === 'string') throw new KilnError('E_INVALID_ARGUMENT', `${file}: input "${input.name}" is ${type}; .raw files hold numeric tensors only`);
  const ctor = ARRAY_TYPE[type];
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new KilnError('E_NOT_FOUND', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  const dims = input.shape.map((d, i) => {
    if (typeof d === 'number') return d;
    if (i === 0) return -1; // from the file's size
    const size = d === '?' ? undefined : options.dims?.[d];
    if (size === undefined) {
      throw new KilnError('E_INVALID_ARGUMENT', `${file}: input "${input.name}" has the shape ${formatShape(input.shape)}; a .raw file gives only the first dim, ` +
        (d === '?' ? 'and dims[' + i + '] has no name to size: use .npy files' : `give the size of '${d}' (--dim ${d}=N) or use .npy files`));
    }
    return size;
  });
  if (bytes.length % ctor.BYTES_PER_ELEMENT !== 0) throw new KilnError('E_INVALID_ARGUMENT', `${file}: ${bytes.length} bytes is not a whole number of ${type} values`);
  const count = bytes.length / ctor.BYTES_PER_ELEMENT;
  const inner = dims.slice(1).reduce((a, b) => a * b, 1);
  if (dims.length === 0) {
    if (count !== 1) throw new KilnError('E_INVALID_ARGUMENT', `${file}: input "${input.name}" is a scalar, the file holds ${count} ${type} values`);
  } else if (inner === 0 || count % inner !== 0 || (dims[0] >= 0 && dims[0] * inner !== count)) {
    throw new KilnError('E_INVALID_ARGUMENT', `${file}: ${count} ${type} values do not fill input "${input.name}" of shape ${formatShape(input.shape)} (a multiple of ${inner} values${dims[0] >= 0 ? `, exactly ${dims[0] * inner}` : ''})`);
  } else {
    dims[0] = count / inner;
  }
  const data = new ctor(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), 0, count);
  return new Tensor(type, data as TensorDataTypes[NumericType], dims);
}

// ---------------------------------------------------------------------------------------------
// Checking samples against the model

const INTEGER_TYPES: ReadonlySet<TensorType> = new Set(['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'bool']);
const INTEGER_RANGE = { int32: [-(2n ** 31n), 2n ** 31n - 1n], int64: [-(2n ** 63n), 2n ** 63n - 1n] } as const;

/** `t` as the input's type where the conversion is safe (float64/float16 -> float32, integers that fit). */
function convert(t: Tensor, to: TensorType, what: string): Tensor {
  if (t.type === to) return t;
  const n = t.size;
  if (to === 'float32' && (t.type === 'float64' || t.type === 'float16')) {
    const src = t.data as Float64Array | Uint16Array;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = t.type === 'float16' ? float16Value(src[i]) : src[i];
    return new Tensor('float32', out, t.dims);
  }
  if (to === 'float16' && (t.type === 'float32' || t.type === 'float64')) {
    const src = t.data as Float32Array;
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = float16Bits(src[i]);
    return new Tensor('float16', out, t.dims);
  }
  if ((to === 'int64' || to === 'int32') && INTEGER_TYPES.has(t.type)) {
    const src = t.data as ArrayLike<number | bigint>;
    const [min, max] = INTEGER_RANGE[to];
    const out = to === 'int64' ? new BigInt64Array(n) : new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const v = BigInt(src[i]);
      if (v < min || v > max) throw new KilnError('E_DTYPE_MISMATCH', `${what}: element ${i} is ${v}, beyond ${to} (the model's input type)`);
      out[i] = to === 'int64' ? v : Number(v);
    }
    return new Tensor(to, out, t.dims);
  }
  throw new KilnError('E_DTYPE_MISMATCH', `${what}: the data is ${t.type}, the model's input is ${to}`);
}

/** Checks (and converts) one sample tensor for `input`. */
function fit(t: Tensor, input: ValueInfo, what: string): Tensor {
  if (!isTensorType(input.type)) throw new KilnError('E_INVALID_ARGUMENT', `${what}: input "${input.name}" is ${input.type}, not a tensor`);
  const out = convert(t, input.type, what);
  if (input.shape.length !== out.dims.length) {
    throw new KilnError('E_SHAPE_MISMATCH', `${what}: dims ${formatShape(out.dims)} do not match input "${input.name}" of shape ${formatShape(input.shape)} (rank ${out.dims.length}, expected ${input.shape.length})`);
  }
  input.shape.forEach((d, i) => {
    if (typeof d === 'number' && d !== out.dims[i]) {
      throw new KilnError('E_SHAPE_MISMATCH', `${what}: dims ${formatShape(out.dims)} do not match input "${input.name}" of shape ${formatShape(input.shape)} (dims[${i}] must be ${d})`);
    }
  });
  return out;
}

/** A feeds-like object from a module, as Tensors of the inputs' types. */
function fromObject(value: unknown, inputs: readonly ValueInfo[], what: string): Feeds {
  if (value === null || typeof value !== 'object') throw new KilnError('E_INVALID_ARGUMENT', `${what}: expected a feeds object ({ input: { type, data, dims } }), received ${value === null ? 'null' : typeof value}`);
  const record = value as Record<string, unknown>;
  const names = new Set(inputs.map((i) => i.name));
  const extra = Object.keys(record).filter((k) => !names.has(k));
  if (extra.length) throw new KilnError('E_INVALID_ARGUMENT', `${what}: the model has no input ${extra.map((k) => `"${k}"`).join(', ')} (its inputs: ${[...names].join(', ')})`);
  const feeds: Record<string, Tensor> = {};
  for (const input of inputs) {
    const raw = record[input.name] as { type?: unknown; data?: unknown; dims?: unknown } | undefined;
    const label = `${what}, input "${input.name}"`;
    if (raw === undefined || raw === null || typeof raw !== 'object') throw new KilnError('E_INVALID_ARGUMENT', `${label}: missing`);
    const type = raw.type ?? input.type;
    if (!isTensorType(type)) throw new KilnError('E_INVALID_ARGUMENT', `${label}: type ${String(type)} is not a tensor type`);
    let data = raw.data;
    if (Array.isArray(data) && type !== 'string') {
      const ctor = ARRAY_TYPE[type] as unknown as { from(a: unknown[], f?: (v: unknown) => unknown): unknown };
      data = type === 'int64' || type === 'uint64' ? ctor.from(data, (v) => BigInt(v as number)) : ctor.from(data);
    }
    if (!Array.isArray(raw.dims)) throw new KilnError('E_INVALID_ARGUMENT', `${label}: dims must be an array of sizes`);
    let t: Tensor;
    try {
      t = new Tensor(type, data as TensorDataTypes[typeof type], raw.dims as number[]);
    } catch (e) {
      throw new KilnError((e as KilnError).code ?? 'E_INVALID_ARGUMENT', `${label}: ${(e as Error).message}`, { cause: e });
    }
    feeds[input.name] = fit(t, input, label);
  }
  return feeds;
}

// ---------------------------------------------------------------------------------------------
// Loading

const byName = (a: string, b: string): number => a.localeCompare(b, 'en', { numeric: true });
const SAMPLE_FILE = /\.(npy|raw)$/i;
const MODULE_FILE = /\.(js|cjs|mjs)$/i;

function readTensorFile(file: string, input: ValueInfo, options: SampleOptions): Tensor {
  const t = /\.npy$/i.test(file) ? readNpy(file) : readRaw(file, input, options);
  return fit(t, input, file);
}

/** The file for `input` in a sample folder: `<name>.npy` or `<name>.raw` (characters a file name cannot hold as '_'). */
function inputFile(dir: string, input: ValueInfo): string {
  const names = [input.name, input.name.replace(/[/\\:*?"<>|]/g, '_')];
  for (const name of names) for (const ext of ['.npy', '.raw']) {
    const file = path.join(dir, name + ext);
    if (fs.existsSync(file)) return file;
  }
  throw new KilnError('E_NOT_FOUND', `${dir}: no ${input.name}.npy or ${input.name}.raw for input "${input.name}"`);
}

// TypeScript compiles import() to require() for CommonJS output; this keeps a real import(),
// which loads ES modules as well as CommonJS ones.
const importModule = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<Record<string, unknown>>;

async function fromModule(file: string, inputs: readonly ValueInfo[]): Promise<Feeds[]> {
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(pathToFileURL(path.resolve(file)).href);
  } catch (e) {
    throw new KilnError('E_INVALID_ARGUMENT', `cannot load the samples module ${file}: ${(e as Error).message}`, { cause: e });
  }
  let source: unknown = mod.samples ?? mod.default;
  // A CommonJS module imported: its exports object is the default export.
  if (source && typeof source === 'object' && !isIterable(source) && 'samples' in source) source = (source as { samples: unknown }).samples;
  if (typeof source === 'function') source = await (source as (inputs: readonly ValueInfo[]) => unknown)(inputs);
  if (!isIterable(source)) {
    throw new KilnError('E_INVALID_ARGUMENT', `${file}: export \`samples\` (or a default export): an array, an iterable or a function returning one, of feeds objects`);
  }
  const out: Feeds[] = [];
  for await (const item of source as AsyncIterable<unknown>) out.push(fromObject(item, inputs, `${file}: sample ${out.length}`));
  return out;
}

function isIterable(v: unknown): boolean {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && (Symbol.iterator in (v as object) || Symbol.asyncIterator in (v as object));
}

/**
 * The samples `spec` names (see the module comment) as feeds for a model with `inputs`
 * (Session.inputs), each checked against the inputs' types and fixed dims.
 */
export async function loadSamples(spec: string, inputs: readonly ValueInfo[], options: SampleOptions = {}): Promise<Feeds[]> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(spec);
  } catch (e) {
    throw new KilnError('E_NOT_FOUND', `samples: no such file or folder ${spec}`, { cause: e });
  }
  if (inputs.length === 0) throw new KilnError('E_INVALID_ARGUMENT', 'the model has no inputs to feed samples to');
  if (stat.isFile()) {
    if (MODULE_FILE.test(spec)) return nonEmpty(await fromModule(spec, inputs), spec);
    if (SAMPLE_FILE.test(spec)) {
      if (inputs.length !== 1) throw new KilnError('E_INVALID_ARGUMENT', `${spec}: a single file feeds a single-input model; this one has ${inputs.length} inputs (use a folder with a sub-folder per sample)`);
      return [{ [inputs[0].name]: readTensorFile(spec, inputs[0], options) }];
    }
    throw new KilnError('E_INVALID_ARGUMENT', `samples: ${spec} is neither a folder, a .npy/.raw file nor a .js/.cjs/.mjs module`);
  }
  const entries = fs.readdirSync(spec, { withFileTypes: true }).sort((a, b) => byName(a.name, b.name));
  const files = entries.filter((e) => e.isFile() && SAMPLE_FILE.test(e.name));
  const folders = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  if (inputs.length === 1 && files.length > 0) {
    return files.map((f) => ({ [inputs[0].name]: readTensorFile(path.join(spec, f.name), inputs[0], options) }));
  }
  if (folders.length === 0) {
    throw new KilnError('E_NOT_FOUND', inputs.length === 1
      ? `samples: ${spec} holds no .npy or .raw files`
      : `samples: ${spec} holds no sub-folders; for a model with ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}) each sample is a sub-folder holding <input>.npy or <input>.raw`);
  }
  return folders.map((f) => {
    const dir = path.join(spec, f.name);
    const feeds: Record<string, Tensor> = {};
    for (const input of inputs) feeds[input.name] = readTensorFile(inputFile(dir, input), input, options);
    return feeds;
  });
}

function nonEmpty(samples: Feeds[], spec: string): Feeds[] {
  if (samples.length === 0) throw new KilnError('E_INVALID_ARGUMENT', `samples: ${spec} gave no samples`);
  return samples;
}

// ---------------------------------------------------------------------------------------------
// Random inputs

/**
 * Seeded inputs for a model: symbolic dims are 1 unless `options.dims` sizes them, floats
 * roughly standard normal, integers and bools zero (safe as indices), strings "kiln".
 */
export function randomFeeds(inputs: readonly ValueInfo[], options: SampleOptions & { seed?: number } = {}): Record<string, Tensor> {
  const next = prng(options.seed ?? 1);
  const normal = (): number => (next() + next() + next() + next()) * 0.866; // sum of 4 uniforms: variance 4/3 -> ~1
  const feeds: Record<string, Tensor> = {};
  for (const input of inputs) {
    const dims = input.shape.map((d) => (typeof d === 'number' ? d : (options.dims?.[d] ?? 1)));
    const n = elementCount(dims, `input "${input.name}"`);
    const type = input.type;
    if (!isTensorType(type)) throw new KilnError('E_INVALID_ARGUMENT', `input "${input.name}" is a ${type}: only tensor inputs can be generated`);
    if (type === 'string') {
      feeds[input.name] = new Tensor('string', Array.from({ length: n }, () => 'kiln'), dims);
      continue;
    }
    const data = new ARRAY_TYPE[type](new ArrayBuffer(n * ARRAY_TYPE[type].BYTES_PER_ELEMENT), 0, n);
    if (type === 'float32' || type === 'float64') for (let i = 0; i < n; i++) (data as Float32Array)[i] = normal();
    else if (type === 'float16' || type === 'bfloat16') {
      for (let i = 0; i < n; i++) {
        const v = normal();
        (data as Uint16Array)[i] = type === 'float16' ? float16Bits(v) : new Uint32Array(Float32Array.of(v).buffer)[0] >>> 16;
      }
    }
    feeds[input.name] = new Tensor(type, data as TensorDataTypes[NumericType], dims);
  }
  return feeds;
}
