/**
 * Reading and writing ONNX models for the optimization tools: external data files (large
 * initializers stored beside the model), and a size-aware writer that can move large
 * initializers out again. Models that need neither round-trip bit-identically.
 */
import * as fs from 'fs';
import * as path from 'path';
import { KilnError } from '../errors';
import { decodeModel, encodeModel } from '../onnx';
import { DataLocation, type ModelProto, type TensorProto } from '../onnx/types';

/** A model read from a file or from bytes, with its external data loaded. */
export function readModel(source: string | Uint8Array, baseDir?: string): ModelProto {
  const bytes = typeof source === 'string' ? readFile(source) : source;
  const model = decodeModel(bytes);
  // A Constant's value is often unnamed: errors name the node's output instead.
  const constantNames = new Map<TensorProto, string>();
  for (const n of model.graph?.node ?? []) {
    for (const a of n.attribute ?? []) if (a.t && n.opType === 'Constant' && n.output?.[0]) constantNames.set(a.t, n.output[0]);
  }
  const dir = baseDir ?? (typeof source === 'string' ? path.dirname(source) : undefined);
  for (const t of initializersOf(model)) {
    if (t.dataLocation === DataLocation.EXTERNAL) loadExternal(t, dir, constantNames.get(t));
  }
  return model;
}

function readFile(file: string): Uint8Array {
  try {
    return new Uint8Array(fs.readFileSync(file));
  } catch (e) {
    throw new KilnError('E_NOT_FOUND', `cannot read model ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** Every TensorProto holding weights: graph initializers and Constant nodes' values. */
export function initializersOf(model: ModelProto): TensorProto[] {
  const out: TensorProto[] = [...(model.graph?.initializer ?? [])];
  for (const n of model.graph?.node ?? []) {
    if (n.opType === 'Constant' && (n.domain ?? '') === '') {
      for (const a of n.attribute ?? []) if (a.t) out.push(a.t);
    }
  }
  return out;
}

function entry(t: TensorProto, key: string): string | undefined {
  return t.externalData?.find((e) => e.key === key)?.value;
}

/** Reads an external tensor's bytes into raw_data (ONNX's external data: location, offset, length). */
function loadExternal(t: TensorProto, dir: string | undefined, constant: string | undefined): void {
  const what = t.name ? `initializer '${t.name}'` : `the value of Constant '${constant ?? '?'}'`;
  const location = entry(t, 'location');
  if (!location) throw new KilnError('E_MODEL_LOAD', `${what}: external data without a location`);
  if (dir === undefined) throw new KilnError('E_MODEL_LOAD', `${what}: its data is in the file ${location}; read the model from a path (or give its folder)`);
  if (path.isAbsolute(location) || location.split(/[\\/]/).includes('..')) {
    throw new KilnError('E_MODEL_LOAD', `${what}: external data location ${JSON.stringify(location)} must be a relative path inside the model's folder`);
  }
  const file = path.join(dir, location);
  const offset = Number(entry(t, 'offset') ?? 0);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new KilnError('E_MODEL_LOAD', `${what}: cannot open its external data ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const size = fs.fstatSync(fd).size;
    const length = entry(t, 'length') !== undefined ? Number(entry(t, 'length')) : size - offset;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
      throw new KilnError('E_MODEL_LOAD', `${what}: external data range ${offset}+${length} lies outside ${file} (${size} bytes)`);
    }
    const raw = new Uint8Array(length);
    fs.readSync(fd, raw, 0, length, offset);
    t.rawData = raw;
  } finally {
    fs.closeSync(fd);
  }
  delete t.externalData;
  delete t.dataLocation;
}

export interface WriteOptions {
  /**
   * Store initializers of at least this many bytes in one external data file beside the
   * model (ONNX's external data format), e.g. for models over protobuf's 2 GiB limit.
   */
  externalDataThreshold?: number;
  /** The external data file's name, relative to the model's folder (default `<model>.data`). */
  externalDataFile?: string;
}

/** Writes `model` to `file`; returns the bytes written (model file plus external data). */
export function writeModel(model: ModelProto, file: string, options: WriteOptions = {}): number {
  const threshold = options.externalDataThreshold;
  if (threshold === undefined) {
    const bytes = encodeModel(model);
    fs.writeFileSync(file, bytes);
    return bytes.byteLength;
  }
  const location = options.externalDataFile ?? `${path.basename(file)}.data`;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  // Written as a copy whose large tensors point at the data file; `model` is left as it was.
  const restore: [TensorProto, Uint8Array][] = [];
  for (const t of initializersOf(model)) {
    if (!t.rawData || t.rawData.byteLength < threshold) continue;
    const pad = (64 - (offset % 64)) % 64; // aligned, so the data can be mapped
    if (pad) chunks.push(new Uint8Array(pad));
    offset += pad;
    chunks.push(t.rawData);
    restore.push([t, t.rawData]);
    t.externalData = [{ key: 'location', value: location }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(t.rawData.byteLength) }];
    t.dataLocation = DataLocation.EXTERNAL;
    delete t.rawData;
    offset += chunks[chunks.length - 1].byteLength;
  }
  try {
    const bytes = encodeModel(model);
    fs.writeFileSync(file, bytes);
    fs.writeFileSync(path.join(path.dirname(file), location), Buffer.concat(chunks));
    return bytes.byteLength + offset;
  } finally {
    for (const [t, raw] of restore) {
      t.rawData = raw;
      delete t.externalData;
      delete t.dataLocation;
    }
  }
}
