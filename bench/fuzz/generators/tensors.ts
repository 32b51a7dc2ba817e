/**
 * Random tensor data and the buffers it lives in (plain, offset, shared, resizable, pooled).
 */
import type { TensorType } from '../../../lib';
import { Rng } from '../random';

export type NumericType = Exclude<TensorType, 'string'>;
export type Numeric = Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array | Uint32Array | BigUint64Array;

export interface NumericCtor {
  new (length: number): Numeric;
  new (buffer: ArrayBufferLike, byteOffset: number, length?: number): Numeric;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
}

/** The TypedArray class of each element type (lib/tensor.ts TensorDataTypes). */
export const CTORS = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, bfloat16: Uint16Array,
  int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array, bool: Uint8Array,
} as unknown as Readonly<Record<NumericType, NumericCtor>>;

export const EVERY_CTOR = [
  Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, BigInt64Array, Uint8Array, Uint8ClampedArray,
  Uint16Array, Uint32Array, BigUint64Array,
] as unknown as readonly NumericCtor[];

type ResizableBuffer = ArrayBuffer & { resize(byteLength: number): void };
export const ResizableArrayBuffer = ArrayBuffer as unknown as new (byteLength: number, options: { maxByteLength: number }) => ResizableBuffer;

export const gc = (globalThis as { gc?: () => void }).gc;

/** Detaches `buffer` (ArrayBuffer.prototype.transfer where Node has it, else structuredClone); false when it cannot be. */
export function detach(buffer: ArrayBufferLike): boolean {
  if (buffer instanceof SharedArrayBuffer) return false;
  try {
    const transfer = (buffer as unknown as { transfer?: () => ArrayBuffer }).transfer;
    if (typeof transfer === 'function') transfer.call(buffer);
    else structuredClone(buffer, { transfer: [buffer as ArrayBuffer] });
  } catch {
    return false;
  }
  return true;
}

const SPECIAL_FLOATS = [0, -0, 1, -1, Infinity, -Infinity, NaN, 3.4028234663852886e38, -3.4028234663852886e38, 1.401298464324817e-45, 1.1754943508222875e-38, 65504, 1e-7];
const STRING_PIECES = ['', 'a', 'kiln', '\0', 'a\0b', 'é', '日本語', '😀', 'e\u0301', ' ', '\n', '\uffff', '\u2028', 'x'.repeat(300)];

export function randomString(rng: Rng): string {
  let s = '';
  for (let k = rng.int(4); k > 0; k--) s += rng.pick(STRING_PIECES);
  return s;
}

/** `n` random values of `type`; `special` mixes in signed zeros, infinities, NaN and extremes. */
export function randomValues(rng: Rng, type: TensorType, n: number, special: boolean): Numeric | string[] {
  if (type === 'string') return Array.from({ length: n }, () => randomString(rng));
  const out = new CTORS[type](n);
  const sink = out as unknown as (number | bigint)[];
  for (let i = 0; i < n; i++) {
    switch (type) {
      case 'float32': case 'float64':
        sink[i] = special && rng.chance(0.15) ? rng.pick(SPECIAL_FLOATS) : (rng.float() * 2 - 1) * rng.pick([1, 1e3, 1e-3]);
        break;
      case 'bool': sink[i] = rng.int(2); break;
      case 'float16': case 'bfloat16': sink[i] = rng.int(65536); break;
      case 'int64': sink[i] = rng.bigint64(); break;
      case 'uint64': sink[i] = BigInt.asUintN(64, rng.bigint64()); break;
      default: sink[i] = rng.int(2 ** 32); // the typed array wraps it to its range
    }
  }
  return out;
}

/** Where a tensor's data lives: kinds of ArrayBuffer and view Kiln must accept (or refuse cleanly). */
export type Storage = 'plain' | 'offset' | 'shared' | 'resizable' | 'tracking' | 'pooled';

export function randomStorage(rng: Rng, type: TensorType): Storage {
  if (type === 'string') return 'plain';
  const kinds: (readonly [number, Storage])[] = [[6, 'plain'], [2, 'offset'], [1, 'shared'], [1, 'resizable'], [1, 'tracking']];
  if (type === 'uint8' || type === 'bool') kinds.push([1, 'pooled']);
  return rng.weighted(kinds);
}

/** A copy of `values` in `storage`. */
export function place(rng: Rng, values: Numeric, ctor: NumericCtor, storage: Storage): Numeric {
  const n = values.length;
  const size = ctor.BYTES_PER_ELEMENT;
  let out: Numeric;
  switch (storage) {
    case 'plain': out = new ctor(n); break;
    case 'offset': {
      // For 1-byte types the offset is odd half of the time.
      const before = rng.range(1, 3);
      out = new ctor(new ArrayBuffer((before + n + rng.int(3)) * size), before * size, n);
      break;
    }
    case 'shared': out = new ctor(new SharedArrayBuffer(n * size), 0, n); break;
    case 'resizable': out = new ctor(new ResizableArrayBuffer(n * size, { maxByteLength: n * size + 64 }), 0, n); break;
    case 'tracking': out = new ctor(new ResizableArrayBuffer(n * size, { maxByteLength: n * size + 64 }), 0); break;
    case 'pooled': out = Buffer.allocUnsafe(n); break; // small Buffers are views into Node's shared pool
  }
  (out as unknown as { set(v: ArrayLike<unknown>): void }).set(values as ArrayLike<unknown>);
  return out;
}

export function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}
