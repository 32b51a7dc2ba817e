/**
 * Tensors of the KServe v2 (Open Inference) protocol as JSON: `{ name, shape, datatype, data }`
 * with `data` flat or nested in row-major order, and the datatypes BOOL, UINT8–64, INT8–64,
 * FP16, FP32, FP64, BF16 and BYTES, turned into Kiln tensors and back. Every check comes
 * before the allocation it guards: the element count is bounded first.
 */
import { KilnError } from '../errors';
import { float16Bits, float16Value } from '../optimize/fp16';
import { ARRAY_TYPE, Tensor, type TensorType } from '../tensor';
import type { DataType } from './triton-config';

/** KServe v2 datatype names and Kiln's tensor types. */
export const V2_TYPES: Readonly<Record<string, TensorType>> = {
  BOOL: 'bool', UINT8: 'uint8', UINT16: 'uint16', UINT32: 'uint32', UINT64: 'uint64',
  INT8: 'int8', INT16: 'int16', INT32: 'int32', INT64: 'int64',
  FP16: 'float16', FP32: 'float32', FP64: 'float64', BF16: 'bfloat16', BYTES: 'string',
};

const V2_NAMES: ReadonlyMap<TensorType, string> = new Map(Object.entries(V2_TYPES).map(([name, type]) => [type, name]));
export const v2TypeOf = (type: TensorType): string => V2_NAMES.get(type) ?? 'INVALID';

/** Triton config data type (TYPE_FP32) as a v2 datatype (FP32); TYPE_STRING is BYTES. */
export const v2FromConfig = (t: DataType | undefined): string => (t === 'TYPE_STRING' ? 'BYTES' : (t ?? 'TYPE_INVALID').replace(/^TYPE_/, ''));

/** Triton config data type of a Kiln tensor type (TYPE_INVALID for none). */
export const configTypeOf = (type: string): DataType => {
  const v2 = V2_NAMES.get(type as TensorType);
  return (v2 === undefined ? 'TYPE_INVALID' : v2 === 'BYTES' ? 'TYPE_STRING' : `TYPE_${v2}`) as DataType;
};

/** Kiln tensor type of a Triton config data type (undefined for TYPE_INVALID or none). */
export const tensorTypeOfConfig = (t: DataType | undefined): TensorType | undefined => V2_TYPES[v2FromConfig(t)];

export interface JsonTensor {
  name: string;
  shape: number[];
  datatype: string;
  data: unknown[];
  parameters?: Record<string, unknown>;
}

const bad = (what: string): KilnError => new KilnError('E_INVALID_ARGUMENT', what);

/** The bfloat16 nearest `x` (ties to even; NaN stays NaN). */
function bfloat16Bits(x: number): number {
  const bits = new Uint32Array(Float32Array.of(x).buffer)[0];
  if (Number.isNaN(x)) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Checks a shape and returns its element count, refusing more than `maxElements`. */
export function checkedCount(shape: unknown, what: string, maxElements: number): number {
  if (!Array.isArray(shape)) throw bad(`${what}: "shape" must be an array of sizes`);
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) throw bad(`${what}: shape ${JSON.stringify(shape)} holds ${JSON.stringify(d)}, not a size`);
    n *= d;
    if (n > maxElements) throw bad(`${what}: shape ${JSON.stringify(shape)} has more than ${maxElements} elements (the server's limit)`);
  }
  return n;
}

/** `data` flattened (nested arrays in row-major order), at most `limit` values. */
function flatten(data: unknown, limit: number, what: string): unknown[] {
  if (!Array.isArray(data)) throw bad(`${what}: "data" must be an array`);
  if (!data.some(Array.isArray)) return data;
  const out: unknown[] = [];
  const walk = (d: unknown[]): void => {
    for (const x of d) {
      if (Array.isArray(x)) walk(x);
      else if (out.push(x) > limit) throw bad(`${what}: "data" holds more values than its shape`);
    }
  };
  walk(data);
  return out;
}

/**
 * A JSON input tensor as a Kiln tensor of `expected` type (the model's input), checked:
 * datatype, element count against shape, every value against the datatype's range.
 */
export function fromJson(t: JsonTensor, expected: TensorType | undefined, maxElements: number): Tensor {
  const what = `input "${t.name}"`;
  const type = V2_TYPES[t.datatype];
  if (!type) throw bad(`${what}: unknown datatype ${JSON.stringify(t.datatype)} (one of ${Object.keys(V2_TYPES).join(', ')})`);
  if (expected && expected !== type) throw bad(`${what}: the model expects ${v2TypeOf(expected)}, received ${t.datatype}`);
  const n = checkedCount(t.shape, what, maxElements);
  const values = flatten(t.data, n, what);
  if (values.length !== n) throw bad(`${what}: shape ${JSON.stringify(t.shape)} needs ${n} values, "data" holds ${values.length}`);
  const dims = t.shape;
  if (type === 'string') {
    for (const v of values) if (typeof v !== 'string') throw bad(`${what}: BYTES data must be strings, found ${JSON.stringify(v)}`);
    return new Tensor('string', values as string[], dims);
  }
  if (type === 'bool') {
    const data = new Uint8Array(n);
    values.forEach((v, i) => {
      if (typeof v !== 'boolean') throw bad(`${what}: BOOL data must be true or false, found ${JSON.stringify(v)}`);
      data[i] = v ? 1 : 0;
    });
    return new Tensor('bool', data, dims);
  }
  const number = (v: unknown, i: number): number => {
    if (typeof v !== 'number') throw bad(`${what}: ${t.datatype} data must be numbers, found ${JSON.stringify(v)} at ${i}`);
    return v;
  };
  if (type === 'float16' || type === 'bfloat16') {
    const data = new Uint16Array(n);
    values.forEach((v, i) => {
      const x = number(v, i);
      data[i] = type === 'float16' ? float16Bits(x) : bfloat16Bits(x);
    });
    return new Tensor(type, data, dims);
  }
  if (type === 'int64' || type === 'uint64') {
    const data = type === 'int64' ? new BigInt64Array(n) : new BigUint64Array(n);
    values.forEach((v, i) => {
      const x = number(v, i);
      if (!Number.isSafeInteger(x) || (type === 'uint64' && x < 0)) throw bad(`${what}: ${t.datatype} value ${x} at ${i} is not an integer in range (JSON numbers carry integers up to 2^53 exactly)`);
      data[i] = BigInt(x);
    });
    return new Tensor(type, data, dims);
  }
  const ctor = ARRAY_TYPE[type];
  const data = new ctor(new ArrayBuffer(n * ctor.BYTES_PER_ELEMENT), 0, n);
  const integer = !type.startsWith('float');
  const bits = integer ? ctor.BYTES_PER_ELEMENT * 8 : 0;
  const [lo, hi] = type.startsWith('uint') ? [0, 2 ** bits - 1] : [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1];
  values.forEach((v, i) => {
    const x = number(v, i);
    if (integer && (!Number.isInteger(x) || x < lo || x > hi)) throw bad(`${what}: ${t.datatype} value ${x} at ${i} is out of range [${lo}, ${hi}]`);
    (data as Float32Array)[i] = x;
  });
  return new Tensor(type, data as never, dims);
}

/** A Kiln output tensor as a JSON tensor: numbers (64-bit integers beyond 2^53 lose precision, as in Triton), booleans, strings. */
export function toJson(name: string, t: { type: TensorType; data: ArrayLike<unknown>; dims: readonly number[] }): JsonTensor {
  let data: unknown[];
  if (t.type === 'float16') data = Array.from(t.data as Uint16Array, float16Value);
  else if (t.type === 'bfloat16') data = Array.from(t.data as Uint16Array, (h) => new Float32Array(Uint32Array.of(h << 16).buffer)[0]);
  else if (t.type === 'bool') data = Array.from(t.data as Uint8Array, (v) => v !== 0);
  else if (t.type === 'int64' || t.type === 'uint64') data = Array.from(t.data as BigInt64Array, (v) => Number(v));
  else data = Array.from(t.data);
  return { name, shape: [...t.dims], datatype: v2TypeOf(t.type), data };
}

// ---------------------------------------------------------------------------------------------
// Triton's binary tensor extension: raw little-endian values; BYTES elements as a 4-byte
// little-endian length then the bytes.

/**
 * An input tensor whose values arrived as `bytes` (binary_data_size of them), checked like
 * fromJson: the datatype, the shape's element count (bounded first), and the byte count.
 */
export function fromBinary(t: JsonTensor, bytes: Buffer, expected: TensorType | undefined, maxElements: number): Tensor {
  const what = `input "${t.name}"`;
  const type = V2_TYPES[t.datatype];
  if (!type) throw bad(`${what}: unknown datatype ${JSON.stringify(t.datatype)} (one of ${Object.keys(V2_TYPES).join(', ')})`);
  if (expected && expected !== type) throw bad(`${what}: the model expects ${v2TypeOf(expected)}, received ${t.datatype}`);
  const n = checkedCount(t.shape, what, maxElements);
  if (type === 'string') {
    const values: string[] = [];
    let at = 0;
    while (at < bytes.length) {
      if (at + 4 > bytes.length) throw bad(`${what}: BYTES element ${values.length} is cut short (its 4-byte length is incomplete)`);
      const len = bytes.readUInt32LE(at);
      if (at + 4 + len > bytes.length) throw bad(`${what}: BYTES element ${values.length} claims ${len} bytes, ${bytes.length - at - 4} remain`);
      values.push(bytes.toString('utf8', at + 4, at + 4 + len));
      at += 4 + len;
      if (values.length > n) break;
    }
    if (values.length !== n) throw bad(`${what}: shape ${JSON.stringify(t.shape)} needs ${n} BYTES elements, the binary data holds ${values.length}`);
    return new Tensor('string', values, t.shape);
  }
  const ctor = ARRAY_TYPE[type];
  const size = n * ctor.BYTES_PER_ELEMENT;
  if (bytes.length !== size) throw bad(`${what}: shape ${JSON.stringify(t.shape)} of ${t.datatype} needs ${size} bytes, binary_data_size is ${bytes.length}`);
  // A view when the bytes are aligned for the type, else a copy.
  const aligned = bytes.byteOffset % ctor.BYTES_PER_ELEMENT === 0;
  const buffer = aligned ? bytes.buffer : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + size);
  const data = new ctor(buffer as ArrayBuffer, aligned ? bytes.byteOffset : 0, n);
  if (type === 'bool') {
    const bad8 = (data as Uint8Array).findIndex((v) => v > 1);
    if (bad8 >= 0) throw bad(`${what}: BOOL element ${bad8} is ${(data as Uint8Array)[bad8]}, not 0 or 1`);
  }
  return new Tensor(type, data as never, t.shape);
}

/** A Kiln output tensor's values in the binary layout. */
export function toBinary(t: { type: TensorType; data: ArrayLike<unknown>; dims: readonly number[] }): Buffer {
  if (t.type === 'string') {
    const parts: Buffer[] = [];
    for (const s of Array.from(t.data as ArrayLike<string>)) {
      const b = Buffer.from(s, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length, 0);
      parts.push(len, b);
    }
    return Buffer.concat(parts);
  }
  const view = t.data as unknown as ArrayBufferView;
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}
