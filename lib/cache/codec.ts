/**
 * The response cache's value format: a request's outputs in one byte array, so a store
 * (in-process or Redis) holds plain bytes and every hit decodes into fresh tensors that no
 * other caller shares.
 *
 * Layout (little-endian): magic "KRC1", u32 output count; per output: name (u32 length,
 * UTF-8), u8 ONNX element type, u32 rank, f64 dims; then numeric data as f64 byte length
 * and the bytes, or string data as f64 count and each string (u32 length, UTF-8).
 * Element bytes are the platform's order, little-endian on every platform Kiln builds for.
 */
import { KilnError } from '../errors';
import type { Results } from '../session';
import { ARRAY_TYPE, ONNX_TYPE, TYPE_FROM_ONNX, wrapTensor, type Tensor, type TensorType } from '../tensor';

const MAGIC = 0x3143524b; // "KRC1"

type Numeric = Exclude<TensorType, 'string'>;

/** Encodes `results` into one new byte array. */
export function encodeResults(results: Results): Uint8Array {
  const names = Object.keys(results);
  const nameBytes = names.map((n) => Buffer.from(n, 'utf8'));
  let size = 8;
  const strings: Buffer[][] = [];
  names.forEach((name, i) => {
    const t = results[name];
    size += 4 + nameBytes[i].length + 1 + 4 + 8 * t.dims.length + 8;
    if (t.type === 'string') {
      const encoded = (t.data as string[]).map((s) => Buffer.from(s, 'utf8'));
      strings[i] = encoded;
      for (const b of encoded) size += 4 + b.length;
    } else {
      size += (t.data as ArrayBufferView).byteLength;
    }
  });
  const out = Buffer.alloc(size);
  let at = out.writeUInt32LE(MAGIC, 0);
  at = out.writeUInt32LE(names.length, at);
  names.forEach((name, i) => {
    const t = results[name];
    at = out.writeUInt32LE(nameBytes[i].length, at);
    at += nameBytes[i].copy(out, at);
    at = out.writeUInt8(ONNX_TYPE[t.type], at);
    at = out.writeUInt32LE(t.dims.length, at);
    for (const d of t.dims) at = out.writeDoubleLE(d, at);
    if (t.type === 'string') {
      at = out.writeDoubleLE(strings[i].length, at);
      for (const b of strings[i]) {
        at = out.writeUInt32LE(b.length, at);
        at += b.copy(out, at);
      }
    } else {
      const data = t.data as ArrayBufferView;
      at = out.writeDoubleLE(data.byteLength, at);
      out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
      at += data.byteLength;
    }
  });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Decodes bytes from encodeResults into new tensors (each call copies: callers never share data). */
export function decodeResults(bytes: Uint8Array): Results {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 8 || b.readUInt32LE(0) !== MAGIC) throw new KilnError('E_INVALID_ARGUMENT', 'cached response is not in the response cache format');
  const count = b.readUInt32LE(4);
  let at = 8;
  const out: Results = {};
  for (let i = 0; i < count; i++) {
    const nameLength = b.readUInt32LE(at);
    const name = b.toString('utf8', at + 4, at + 4 + nameLength);
    at += 4 + nameLength;
    const type = TYPE_FROM_ONNX[b.readUInt8(at)];
    if (type === undefined) throw new KilnError('E_INVALID_ARGUMENT', `cached response: output "${name}" has an unknown element type`);
    const rank = b.readUInt32LE(at + 1);
    at += 5;
    const dims: number[] = [];
    for (let d = 0; d < rank; d++, at += 8) dims.push(b.readDoubleLE(at));
    const length = b.readDoubleLE(at);
    at += 8;
    let data: Tensor['data'];
    if (type === 'string') {
      const strings: string[] = [];
      for (let s = 0; s < length; s++) {
        const n = b.readUInt32LE(at);
        strings.push(b.toString('utf8', at + 4, at + 4 + n));
        at += 4 + n;
      }
      data = strings;
    } else {
      const ctor = ARRAY_TYPE[type as Numeric];
      // slice() copies into a new, aligned ArrayBuffer.
      const copy = bytes.buffer.slice(bytes.byteOffset + at, bytes.byteOffset + at + length) as ArrayBuffer;
      data = new ctor(copy, 0, length / ctor.BYTES_PER_ELEMENT) as Tensor['data'];
      at += length;
    }
    out[name] = wrapTensor(type, data, Object.freeze(dims));
  }
  return out;
}
