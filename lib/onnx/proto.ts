import { parse, type Type } from 'protobufjs';
import { KilnError } from '../errors';
import { ONNX_PROTO } from './schema';
import type { ModelProto } from './types';

let modelType: Type | undefined;

/** The reflected ModelProto type, parsed from the schema text on first use (a few ms). */
function modelProtoType(): Type {
  modelType ??= parse(ONNX_PROTO).root.lookupType('onnx.ModelProto');
  return modelType;
}

/**
 * Serializes a model. Fields are written in field-number order, so encoding a decoded model
 * reproduces the bytes of any model this module wrote. 64-bit fields also accept numbers.
 */
export function encodeModel(model: ModelProto): Uint8Array {
  const type = modelProtoType();
  let out: Uint8Array;
  try {
    out = type.encode(type.fromObject(model)).finish();
  } catch (e) {
    throw new KilnError('E_INVALID_ARGUMENT', `cannot encode ONNX model: ${(e as Error).message}`, { cause: e });
  }
  // protobufjs hands back a Buffer, small ones carved from Node's shared pool. Callers get a
  // plain Uint8Array that owns its whole ArrayBuffer, so passing `.buffer` on is safe.
  if (out.byteOffset === 0 && out.byteLength === out.buffer.byteLength) {
    return new Uint8Array(out.buffer, 0, out.byteLength);
  }
  const copy = new Uint8Array(out.byteLength);
  copy.set(out);
  return copy;
}

/**
 * Parses ModelProto bytes. `bytes` fields of the result (raw_data, string attributes) are views
 * into `bytes`, not copies: large initializers cost nothing to decode, but the input must not be
 * modified while the model is in use. Fields unknown to schema.ts are dropped.
 */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const type = modelProtoType();
  try {
    return type.toObject(type.decode(bytes), { longs: BigInt }) as ModelProto;
  } catch (e) {
    throw new KilnError('E_MODEL_LOAD', `not a valid ONNX model: ${(e as Error).message}`, { cause: e });
  }
}
