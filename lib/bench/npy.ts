/**
 * Tensors from bytes: NumPy's .npy format (versions 1 to 3, little-endian, C order) and raw
 * files (the elements back to back, row-major, little-endian), as perf_analyzer reads them.
 */
import * as fs from 'fs';
import { KilnError } from '../errors';
import { ARRAY_TYPE, Tensor, type TensorType } from '../tensor';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

/** NumPy's kind and item size -> the tensor type holding it. */
const NPY_TYPES: Readonly<Record<string, Exclude<TensorType, 'string'>>> = {
  f2: 'float16', f4: 'float32', f8: 'float64',
  i1: 'int8', i2: 'int16', i4: 'int32', i8: 'int64',
  u1: 'uint8', u2: 'uint16', u4: 'uint32', u8: 'uint64',
  b1: 'bool',
};

const fail = (file: string, why: string): never => {
  throw new KilnError('E_INVALID_ARGUMENT', `${file}: ${why}`);
};

/** A typed array of `type` holding a copy of `bytes` (copied so that it is aligned for its element size). */
export function typedFromBytes(type: Exclude<TensorType, 'string'>, bytes: Uint8Array, count: number): Tensor['data'] {
  const ctor = ARRAY_TYPE[type];
  const copy = new Uint8Array(count * ctor.BYTES_PER_ELEMENT);
  copy.set(bytes.subarray(0, copy.length));
  return new ctor(copy.buffer, 0, count) as Tensor['data'];
}

/** Elements in `dims`. */
export const elements = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** Parses an .npy header's Python dict literal: descr, fortran_order and shape. */
function parseHeader(text: string, file: string): { descr: string; fortran: boolean; shape: number[] } {
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shape === undefined) fail(file, `not an .npy header (needs 'descr', 'fortran_order' and 'shape'): ${text.trim()}`);
  const dims = (shape as string).split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => {
    const n = Number(s.replace(/L$/, ''));
    return Number.isSafeInteger(n) && n >= 0 ? n : fail(file, `shape (${shape}) holds ${s}, not a size`);
  });
  return { descr: descr as string, fortran: fortran === 'True', shape: dims };
}

/** An .npy file's bytes as a tensor; `file` names it in errors. */
export function parseNpy(bytes: Uint8Array, file: string): Tensor {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) fail(file, 'not an .npy file (it does not start with \\x93NUMPY)');
  const major = bytes[6];
  if (major < 1 || major > 3) fail(file, `.npy format version ${major}.${bytes[7]} is not one of 1.0, 2.0, 3.0`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerStart = major === 1 ? 10 : 12;
  if (bytes.length < headerStart) fail(file, 'the file ends inside its header');
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataStart = headerStart + headerLength;
  if (dataStart > bytes.length) fail(file, `the header claims ${headerLength} bytes, the file ends before`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, dataStart));
  const { descr, fortran, shape } = parseHeader(header, file);
  if (fortran) fail(file, 'the array is in Fortran order; save it in C order (numpy.ascontiguousarray)');
  const order = descr[0];
  if (order === '>') fail(file, `the array is big-endian (${descr}); save it little-endian (array.astype('<${descr.slice(1)}'))`);
  const kind = '<|='.includes(order) ? descr.slice(1) : descr;
  const type = NPY_TYPES[kind];
  if (!type) fail(file, `dtype ${descr} is not supported (${Object.keys(NPY_TYPES).join(', ')})`);
  const count = elements(shape);
  const size = count * ARRAY_TYPE[type].BYTES_PER_ELEMENT;
  if (bytes.length - dataStart !== size) fail(file, `shape (${shape.join(', ')}) of ${descr} needs ${size} bytes of data, the file holds ${bytes.length - dataStart}`);
  return new Tensor(type, typedFromBytes(type, bytes.subarray(dataStart), count) as never, shape);
}

export function readNpy(file: string): Tensor {
  return parseNpy(fs.readFileSync(file), file);
}

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
