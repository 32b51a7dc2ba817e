import { KilnError } from '../errors';
import {
  ARRAY_TYPE, ONNX_TYPE, TYPE_FROM_ONNX, Tensor, describeData, elementCount,
  type TensorDataTypes, type TensorType,
} from '../tensor';
import { DataLocation, type TensorProto } from './types';

type NumericType = Exclude<TensorType, 'string'>;

// raw_data is little-endian by spec; typed arrays use host order, so the copies below are
// only valid on little-endian hosts (every platform Node ships prebuilt binaries for).
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A TensorProto holding `data` (row-major, `dims` shape). Numeric data goes to raw_data as a
 * copy; strings go to string_data as UTF-8. float16/bfloat16 data are raw bits; bool is 0/1 bytes.
 */
export function tensorProto<T extends TensorType>(
  type: T, dims: readonly number[], data: TensorDataTypes[T], name?: string,
): TensorProto {
  const what = name === undefined ? 'tensor' : `tensor '${name}'`;
  // The Tensor constructor checks the type name, the array class and the element count.
  const t = new Tensor(type, data, dims);
  const proto: TensorProto = { dims: dims.map(BigInt), dataType: ONNX_TYPE[type] };
  if (name !== undefined) proto.name = name;
  if (t.type === 'string') {
    const encoder = new TextEncoder();
    proto.stringData = (t.data as string[]).map((s, i) => {
      if (typeof s !== 'string') throw new KilnError('E_DTYPE_MISMATCH', `${what}: element ${i} is ${describeData(s)}, not a string`);
      return encoder.encode(s);
    });
    return proto;
  }
  const view = t.data as TensorDataTypes[NumericType];
  if (type === 'bool') {
    const bad = (view as Uint8Array).findIndex((v) => v > 1);
    if (bad >= 0) throw new KilnError('E_INVALID_ARGUMENT', `${what}: bool element ${bad} is ${view[bad]}, must be 0 or 1`);
  }
  assertLittleEndian();
  proto.rawData = new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();
  return proto;
}

/**
 * The contents of a TensorProto as a Tensor, from raw_data or from the typed *_data field that
 * the spec assigns to its element type. The data is always a fresh, aligned copy.
 */
export function tensorFromProto(proto: TensorProto): Tensor {
  const what = proto.name ? `tensor '${proto.name}'` : 'tensor';
  const type = TYPE_FROM_ONNX[proto.dataType ?? 0];
  if (type === undefined) throw new KilnError('E_DTYPE_MISMATCH', `${what}: ONNX element type ${proto.dataType ?? 'UNDEFINED'} is not supported`);
  if (proto.dataLocation === DataLocation.EXTERNAL) {
    throw new KilnError('E_INVALID_ARGUMENT', `${what}: data is stored externally; load it from external_data first`);
  }
  const dims = (proto.dims ?? []).map((d, i) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n) || n < 0) throw new KilnError('E_INVALID_ARGUMENT', `${what}: dims[${i}] is ${d}`);
    return n;
  });
  const count = elementCount(dims, what);
  if (type === 'string') {
    const decoder = new TextDecoder();
    return new Tensor('string', (proto.stringData ?? []).map((b) => decoder.decode(b)), dims);
  }
  const ctor = ARRAY_TYPE[type];
  if (proto.rawData !== undefined) {
    if (proto.rawData.byteLength !== count * ctor.BYTES_PER_ELEMENT) {
      throw new KilnError('E_INVALID_ARGUMENT', `${what}: raw_data has ${proto.rawData.byteLength} bytes, dims ${JSON.stringify(dims)} of ${type} need ${count * ctor.BYTES_PER_ELEMENT}`);
    }
    assertLittleEndian();
    const bytes = proto.rawData.slice(); // copy: the source view may be unaligned for ctor
    return new Tensor(type, new ctor(bytes.buffer, 0, count) as TensorDataTypes[typeof type], dims);
  }
  const values: readonly (number | bigint)[] = typedField(proto, type);
  const out = new ctor(new ArrayBuffer(count * ctor.BYTES_PER_ELEMENT), 0, count);
  if (values.length !== count) throw new KilnError('E_INVALID_ARGUMENT', `${what}: has ${values.length} elements, dims ${JSON.stringify(dims)} need ${count}`);
  // Element-wise assignment applies the typed array's own conversion (e.g. uint64 -> uint32).
  const sink = out as unknown as (number | bigint)[];
  const big = out instanceof BigInt64Array || out instanceof BigUint64Array;
  for (let i = 0; i < count; i++) sink[i] = big ? BigInt(values[i]) : Number(values[i]);
  return new Tensor(type, out as TensorDataTypes[typeof type], dims);
}

/** The typed *_data field that onnx.proto assigns to `type`. */
function typedField(proto: TensorProto, type: NumericType): readonly (number | bigint)[] {
  switch (type) {
    case 'float32': return proto.floatData ?? [];
    case 'float64': return proto.doubleData ?? [];
    case 'int64': return proto.int64Data ?? [];
    case 'uint32': case 'uint64': return proto.uint64Data ?? [];
    default: return proto.int32Data ?? []; // int8..int32, uint8, uint16, bool, float16/bfloat16 bits
  }
}

function assertLittleEndian(): void {
  if (!LITTLE_ENDIAN) throw new KilnError('E_INVALID_ARGUMENT', 'ONNX raw tensor data needs a little-endian host');
}
