/**
 * Checks of a run's results against JS references: type, dims, class and values.
 */
import type { TensorType } from '../../lib';
import { CTORS, type Numeric, product } from './generators/tensors';
import { describeValue } from './judge';

export function sameNumber(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

export function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return sign * f * 2 ** -24;
  if (e === 31) return f ? NaN : sign * Infinity;
  return sign * (1 + f / 1024) * 2 ** (e - 15);
}

/** What an output must be: its type, dims, and a comparison of its data with the reference. */
export interface Expected {
  readonly type: TensorType;
  readonly dims: readonly number[];
  readonly compare: (data: unknown) => string | undefined;
}

function bytesOf(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** The same values, byte for byte (numeric) or string for string. */
export function exactly(type: TensorType, dims: readonly number[], values: Numeric | string[]): Expected {
  return {
    type, dims,
    compare(data) {
      if (Array.isArray(values)) {
        const got = data as string[];
        for (let i = 0; i < values.length; i++) if (got[i] !== values[i]) return `[${i}] is ${JSON.stringify(got[i])}, expected ${JSON.stringify(values[i])}`;
        return undefined;
      }
      const a = bytesOf(data as Numeric);
      const b = bytesOf(values);
      if (a.length !== b.length) return `${a.length} bytes, expected ${b.length}`;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `byte ${i} is ${a[i]}, expected ${b[i]}`;
      return undefined;
    },
  };
}

/** Numbers equal to `ref` within `tolerance` (relative above 1), NaN matching NaN and infinities exact. */
export function approximately(type: TensorType, dims: readonly number[], ref: ArrayLike<number>, tolerance: number): Expected {
  return {
    type, dims,
    compare(data) {
      const got = data as ArrayLike<number>;
      for (let i = 0; i < ref.length; i++) {
        const a = got[i];
        const b = ref[i];
        if (sameNumber(a, b) || a === b) continue;
        if (Number.isFinite(a) && Number.isFinite(b) && Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(b))) continue;
        return `[${i}] is ${a}, reference ${b}`;
      }
      return undefined;
    },
  };
}

/** Element-wise comparison with a reference function of the index. */
export function elementwise(type: TensorType, dims: readonly number[], n: number, same: (got: unknown, i: number) => string | undefined): Expected {
  return {
    type, dims,
    compare(data) {
      const got = data as ArrayLike<unknown>;
      for (let i = 0; i < n; i++) {
        const wrong = same(got[i], i);
        if (wrong !== undefined) return `[${i}] ${wrong}`;
      }
      return undefined;
    },
  };
}

/** Checks a run's results: the fetched outputs only, each of the expected type, dims, class and values. */
export function checkResults(r: unknown, names: readonly string[], expected: Readonly<Record<string, Expected>>): string | undefined {
  if (r === null || typeof r !== 'object') return `results are ${typeof r}`;
  const keys = Object.keys(r).sort();
  if (keys.join('\u0000') !== [...new Set(names)].sort().join('\u0000')) return `outputs ${JSON.stringify(keys)}, expected ${JSON.stringify(names)}`;
  for (const name of names) {
    const e = expected[name];
    const t = (r as Record<string, { type: unknown; data: unknown; dims: unknown }>)[name];
    if (t.type !== e.type) return `output "${name}": type ${String(t.type)}, expected ${e.type}`;
    if (JSON.stringify(t.dims) !== JSON.stringify(e.dims)) return `output "${name}": dims ${JSON.stringify(t.dims)}, expected ${JSON.stringify(e.dims)}`;
    const cls: Function = e.type === 'string' ? Array : CTORS[e.type];
    if (!(t.data instanceof cls)) return `output "${name}": data is ${describeValue(t.data)}, expected a ${cls.name}`;
    const length = (t.data as { length: number }).length;
    if (length !== product(e.dims)) return `output "${name}": ${length} elements for dims ${JSON.stringify(e.dims)}`;
    const wrong = e.compare(t.data);
    if (wrong !== undefined) return `output "${name}": ${wrong}`;
  }
  return undefined;
}
