/**
 * Tensors from raw bytes, as perf_analyzer reads raw input files: the elements back to back,
 * row-major, little-endian; strings as Triton's BYTES serialization.
 */
import { KilnError } from '../errors';
import { ARRAY_TYPE, Tensor, type TensorType } from '../tensor';

const fail = (file: string, why: string): never => {
  throw new KilnError('E_INVALID_ARGUMENT', `${file}: ${why}`);
};

/** A typed array of `type` holding a copy of `bytes` (copied so that it is aligned for its element size). */
function typedFromBytes(type: Exclude<TensorType, 'string'>, bytes: Uint8Array, count: number): Tensor['data'] {
  const ctor = ARRAY_TYPE[type];
  const copy = new Uint8Array(count * ctor.BYTES_PER_ELEMENT);
  copy.set(bytes.subarray(0, copy.length));
  return new ctor(copy.buffer, 0, count) as Tensor['data'];
}

/** Elements in `dims`. */
export const elements = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** A raw file's bytes as a tensor of `type` and `dims` (its size checked). */
export function parseRaw(bytes: Uint8Array, type: TensorType, dims: readonly number[], file: string): Tensor {
  if (type === 'string') return new Tensor('string', decodeStrings(bytes, elements(dims), file), dims);
  const count = elements(dims);
  const size = count * ARRAY_TYPE[type].BYTES_PER_ELEMENT;
  if (bytes.length !== size) fail(file, `${type} with shape [${dims.join(',')}] needs ${size} bytes, the file holds ${bytes.length}`);
  return new Tensor(type, typedFromBytes(type, bytes, count) as never, dims);
}

/** Strings as Triton's BYTES serialization: each a 4-byte little-endian length, then its bytes. */
export function decodeStrings(bytes: Uint8Array, count: number, file: string): string[] {
  const out: string[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder();
  let at = 0;
  while (at < bytes.length) {
    if (at + 4 > bytes.length) fail(file, `string ${out.length} is cut short (its 4-byte length is incomplete)`);
    const n = view.getUint32(at, true);
    if (at + 4 + n > bytes.length) fail(file, `string ${out.length} claims ${n} bytes, the data ends before`);
    out.push(decoder.decode(bytes.subarray(at + 4, at + 4 + n)));
    at += 4 + n;
  }
  if (out.length !== count) fail(file, `${count} strings expected (4-byte length, then the bytes, each), the data holds ${out.length}`);
  return out;
}
