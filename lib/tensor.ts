import { native } from './binding';
import { KilnError } from './errors';

/** Element types, named as ONNX Runtime's JavaScript API names them. */
export type TensorType =
  | 'float32' | 'float64' | 'float16' | 'bfloat16'
  | 'int8' | 'int16' | 'int32' | 'int64'
  | 'uint8' | 'uint16' | 'uint32' | 'uint64'
  | 'bool' | 'string';

export interface TensorDataTypes {
  float32: Float32Array; float64: Float64Array; float16: Uint16Array; bfloat16: Uint16Array;
  int8: Int8Array; int16: Int16Array; int32: Int32Array; int64: BigInt64Array;
  uint8: Uint8Array; uint16: Uint16Array; uint32: Uint32Array; uint64: BigUint64Array;
  bool: Uint8Array; string: string[];
}

export type TensorData = TensorDataTypes[TensorType];
type NumericData = Exclude<TensorData, string[]>;
type TypedArrayCtor = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): NumericData; BYTES_PER_ELEMENT: number; name: string };

/** The shape of a tensor as Kiln accepts it: a plain object with these fields is a valid feed. */
export interface TensorLike {
  readonly type: TensorType;
  readonly data: TensorData;
  readonly dims: readonly number[];
}

/** ONNX element type numbers (TensorProto.DataType), as the native layer speaks them. */
export const ONNX_TYPE: Readonly<Record<TensorType, number>> = {
  float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, string: 8,
  bool: 9, float16: 10, float64: 11, uint32: 12, uint64: 13, bfloat16: 16,
};

export const TYPE_FROM_ONNX: ReadonlyArray<TensorType | undefined> = (() => {
  const out: (TensorType | undefined)[] = [];
  for (const [name, id] of Object.entries(ONNX_TYPE)) out[id] = name as TensorType;
  return out;
})();

export const ARRAY_TYPE: Readonly<Record<Exclude<TensorType, 'string'>, TypedArrayCtor>> = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, bfloat16: Uint16Array,
  int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  bool: Uint8Array,
} as unknown as Record<Exclude<TensorType, 'string'>, TypedArrayCtor>;

export function isTensorType(t: unknown): t is TensorType {
  return typeof t === 'string' && Object.prototype.hasOwnProperty.call(ONNX_TYPE, t);
}

/** Number of elements of `dims`, or a KilnError naming `what` when a dim is not a valid size. */
export function elementCount(dims: readonly number[], what: string): number {
  let n = 1;
  for (let i = 0; i < dims.length; i++) {
    const d = dims[i];
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new KilnError('E_INVALID_ARGUMENT', `${what}: dims[${i}] must be a non-negative integer, received ${String(d)}`);
    }
    n *= d;
    if (!Number.isSafeInteger(n)) {
      throw new KilnError('E_INVALID_ARGUMENT', `${what}: dims [${dims.join(',')}] overflow the addressable element count`);
    }
  }
  return n;
}

export function formatShape(dims: readonly (number | string | null)[]): string {
  return `[${dims.map((d) => (d === null || d === -1 ? '?' : String(d))).join(',')}]`;
}

/**
 * A tensor: element type, data and dims. `data` is used as given (never copied); outputs
 * returned by Kiln are views of native memory.
 */
export class Tensor<T extends TensorType = TensorType> implements TensorLike {
  readonly type: T;
  readonly data: TensorDataTypes[T];
  readonly dims: readonly number[];

  constructor(type: T, data: TensorDataTypes[T], dims?: readonly number[]) {
    if (!isTensorType(type)) throw new KilnError('E_INVALID_ARGUMENT', `tensor type must be one of ${Object.keys(ONNX_TYPE).join(', ')}, received ${String(type)}`);
    const shape = dims ?? [(data as { length: number }).length];
    const n = elementCount(shape, 'tensor');
    if (type === 'string') {
      if (!Array.isArray(data)) throw new KilnError('E_DTYPE_MISMATCH', `tensor of type string needs a string[], received ${describeData(data)}`);
    } else {
      const ctor = ARRAY_TYPE[type as Exclude<TensorType, 'string'>];
      if (!(data instanceof (ctor as unknown as Function))) {
        throw new KilnError('E_DTYPE_MISMATCH', `tensor of type ${type} needs a ${ctor.name}, received ${describeData(data)}`);
      }
    }
    if ((data as { length: number }).length !== n) {
      throw new KilnError('E_INVALID_ARGUMENT', `tensor with dims ${formatShape(shape)} needs ${n} elements, received ${(data as { length: number }).length}`);
    }
    this.type = type;
    this.data = data;
    this.dims = Object.freeze(shape.slice());
  }

  get size(): number {
    return (this.data as { length: number }).length;
  }
}

export function describeData(data: unknown): string {
  if (data === null || data === undefined) return String(data);
  if (Array.isArray(data)) return 'Array';
  if (ArrayBuffer.isView(data)) return data.constructor.name;
  return typeof data;
}

/** A Tensor over data the runtime produced; skips the checks the constructor makes. */
export function wrapTensor<T extends TensorType>(type: T, data: TensorDataTypes[T], dims: readonly number[]): Tensor<T> {
  const t = Object.create(Tensor.prototype) as { type: T; data: TensorDataTypes[T]; dims: readonly number[] };
  t.type = type;
  t.data = data;
  t.dims = dims;
  return t as unknown as Tensor<T>;
}

/**
 * A copy of the block of `t` that starts at row `row` and has dims `dims` (same rank as
 * t.dims, each at most t's): a request's own part of a padded batch output. Numeric tensors only.
 */
export function cropTensor(t: Tensor, row: number, dims: readonly number[]): Tensor {
  const data = native().crop(t.data as Exclude<Tensor['data'], string[]>, t.dims, row, dims);
  return wrapTensor(t.type, data as Tensor['data'], dims);
}
