/**
 * onnxruntime-common's Tensor, over Kiln's tensor model: the same constructors and fields,
 * CPU data only. Typed arrays are used as given; plain arrays are converted as
 * onnxruntime-common converts them.
 */
import { KilnError } from '../errors';
import {
  ARRAY_TYPE, describeData, elementCount, formatShape, isTensorType,
  type TensorData, type TensorDataTypes, type TensorLike, type TensorType,
} from '../tensor';

/** 'none' once disposed. */
export type TensorLocation = 'none' | 'cpu';

type NumericType = Exclude<TensorType, 'string'>;
type NumericData = Exclude<TensorData, string[]>;

/** Plain arrays accepted for a type, as onnxruntime-common accepts them. */
export type ArrayInput<T extends TensorType> =
  T extends 'string' ? readonly string[]
  : T extends 'bool' ? readonly boolean[]
  : T extends 'int64' | 'uint64' ? readonly (bigint | number)[]
  : readonly number[];

/** Element type inferred from the data's class; uint16 for Uint16Array, as in onnxruntime-common. */
const TYPE_OF_ARRAY = new Map<Function, TensorType>([
  [Float32Array, 'float32'], [Float64Array, 'float64'], [Int8Array, 'int8'], [Int16Array, 'int16'],
  [Int32Array, 'int32'], [BigInt64Array, 'int64'], [Uint8Array, 'uint8'], [Uint16Array, 'uint16'],
  [Uint32Array, 'uint32'], [BigUint64Array, 'uint64'],
]);

function toBigInt(v: unknown): bigint {
  try {
    return BigInt(v as bigint | number);
  } catch {
    throw new KilnError('E_INVALID_ARGUMENT', `tensor data: ${String(v)} is not an integer`);
  }
}

function fromArray(type: NumericType, values: readonly unknown[]): NumericData {
  switch (type) {
    case 'int64': return BigInt64Array.from(values, toBigInt);
    case 'uint64': return BigUint64Array.from(values, toBigInt);
    case 'bool': return Uint8Array.from(values, (v) => (v ? 1 : 0));
    case 'float16':
    case 'bfloat16':
      throw new KilnError('E_DTYPE_MISMATCH', `a ${type} tensor needs its bits in a Uint16Array, received Array`);
    default:
      return (ARRAY_TYPE[type] as unknown as { from(v: readonly unknown[]): NumericData }).from(values);
  }
}

/** Data for an explicitly typed tensor; typed arrays are kept, never copied. */
function typedData(type: TensorType, data: unknown): TensorData {
  if (type === 'string') {
    if (!Array.isArray(data) || !data.every((s) => typeof s === 'string')) {
      throw new KilnError('E_DTYPE_MISMATCH', `a string tensor needs a string[], received ${describeData(data)}`);
    }
    return data;
  }
  if (Array.isArray(data)) return fromArray(type, data);
  const ctor = ARRAY_TYPE[type];
  if (data instanceof (ctor as unknown as Function)) return data as NumericData;
  // onnxruntime-common copies a Uint8ClampedArray; a view of the same bytes does as well.
  if (type === 'uint8' && data instanceof Uint8ClampedArray) return new Uint8Array(data.buffer, data.byteOffset, data.length);
  throw new KilnError('E_DTYPE_MISMATCH', `a ${type} tensor needs a ${ctor.name}, received ${describeData(data)}`);
}

/** Type and data for `new Tensor(data)`. */
function inferred(data: unknown): [TensorType, TensorData] {
  if (Array.isArray(data)) {
    if (data.length === 0) throw new KilnError('E_INVALID_ARGUMENT', 'tensor type cannot be inferred from an empty array');
    if (typeof data[0] === 'string') return ['string', typedData('string', data)];
    if (typeof data[0] === 'boolean') return ['bool', fromArray('bool', data)];
    throw new KilnError('E_INVALID_ARGUMENT', `tensor type cannot be inferred from an array of ${typeof data[0]}; name the type`);
  }
  if (data instanceof Uint8ClampedArray) return ['uint8', typedData('uint8', data)];
  const type = data !== null && typeof data === 'object' ? TYPE_OF_ARRAY.get(data.constructor) : undefined;
  if (type === undefined) throw new KilnError('E_INVALID_ARGUMENT', `tensor data must be a typed array, string[] or boolean[], received ${describeData(data)}`);
  return [type, data as TensorData];
}

export class Tensor<T extends TensorType = TensorType> implements TensorLike {
  readonly type: T;
  readonly dims: readonly number[];
  readonly size: number;
  #data: TensorDataTypes[T] | undefined;

  constructor(type: T, data: TensorDataTypes[T] | ArrayInput<T> | (T extends 'uint8' ? Uint8ClampedArray : never), dims?: readonly number[]);
  constructor(data: TensorData | Uint8ClampedArray | readonly string[] | readonly boolean[], dims?: readonly number[]);
  constructor(typeOrData: unknown, dataOrDims?: unknown, maybeDims?: readonly number[]) {
    let type: TensorType;
    let data: TensorData;
    let dims: unknown;
    if (typeof typeOrData === 'string') {
      if (!isTensorType(typeOrData)) throw new KilnError('E_INVALID_ARGUMENT', `unsupported tensor type ${JSON.stringify(typeOrData)}`);
      type = typeOrData;
      data = typedData(type, dataOrDims);
      dims = maybeDims;
    } else {
      [type, data] = inferred(typeOrData);
      dims = dataOrDims;
    }
    if (dims === undefined) dims = [data.length];
    if (!Array.isArray(dims)) throw new KilnError('E_INVALID_ARGUMENT', `tensor dims must be an array of integers, received ${describeData(dims)}`);
    const size = elementCount(dims, 'tensor');
    if (size !== data.length) {
      throw new KilnError('E_INVALID_ARGUMENT', `tensor with dims ${formatShape(dims)} needs ${size} elements, data has ${data.length}`);
    }
    this.type = type as T;
    this.dims = Object.freeze(dims.slice());
    this.size = size;
    this.#data = data as TensorDataTypes[T];
  }

  get data(): TensorDataTypes[T] {
    if (this.#data === undefined) throw new KilnError('E_DISPOSED', 'tensor is disposed');
    return this.#data;
  }

  get location(): TensorLocation {
    return this.#data === undefined ? 'none' : 'cpu';
  }

  /** The data is already on the CPU; `releaseData` has nothing to release. */
  async getData(_releaseData?: boolean): Promise<TensorDataTypes[T]> {
    return this.data;
  }

  /** Drops this tensor's reference to its data, so the memory can be collected early. */
  dispose(): void {
    this.#data = undefined;
  }

  /** A tensor of the same data (shared, not copied) with other dims. */
  reshape(dims: readonly number[]): Tensor<T> {
    return new Tensor(this.type as TensorType, this.data as TensorData, dims) as Tensor<T>;
  }
}

/** onnxruntime-common's type names, e.g. Tensor.Type. */
export declare namespace Tensor {
  type Type = TensorType;
  type DataTypeMap = TensorDataTypes;
  type DataType = TensorData;
  type DataLocation = TensorLocation;
}
