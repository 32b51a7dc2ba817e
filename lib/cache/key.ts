/**
 * The exact response cache's key: SHA-256 over everything that decides a model's answer.
 * Every field is length-prefixed, so no two different requests serialize alike (the same
 * bytes under another shape, datatype or input name hash differently).
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { TensorType } from '../tensor';

/** Bumped when the key's layout or the value codec changes: old entries then miss. */
const KEY_VERSION = 'kiln-response-v2';

export interface KeyInput {
  readonly name: string;
  readonly type: TensorType;
}

const scratch = new DataView(new ArrayBuffer(8));

function number(hash: Hash, n: number): void {
  scratch.setFloat64(0, n, true);
  hash.update(new Uint8Array(scratch.buffer, 0, 8));
}

function text(hash: Hash, s: string): void {
  number(hash, Buffer.byteLength(s));
  hash.update(s, 'utf8');
}

/**
 * The key (hex) of a request to model `model` (its identity: name@version, or a hash of its
 * bytes): `inputs` in the model's order, `pairs` the validated (data, dims) per input in
 * that order (as the batcher holds them), `outputs` the requested output names (none: all),
 * `partition` the tenant (a tenant never hits another's entries: the answer would be the same,
 * but a hit's speed would tell it that someone else sent these bytes).
 */
export function responseKey(model: string, inputs: readonly KeyInput[], pairs: readonly unknown[], outputs: readonly string[] = [], partition = ''): string {
  const hash = createHash('sha256');
  text(hash, KEY_VERSION);
  text(hash, model);
  text(hash, partition);
  number(hash, inputs.length);
  for (let i = 0; i < inputs.length; i++) {
    text(hash, inputs[i].name);
    text(hash, inputs[i].type);
    const data = pairs[2 * i] as ArrayBufferView | readonly string[];
    const dims = pairs[2 * i + 1] as readonly number[];
    number(hash, dims.length);
    for (const d of dims) number(hash, d);
    if (ArrayBuffer.isView(data)) {
      number(hash, data.byteLength);
      hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } else {
      number(hash, data.length);
      for (const s of data) text(hash, s);
    }
  }
  const wanted = [...outputs].sort();
  number(hash, wanted.length);
  for (const name of wanted) text(hash, name);
  return hash.digest('hex');
}

/** A model's identity for cache keys when none is given: SHA-256 of its bytes (a path's file, streamed). */
export async function modelDigest(model: string | Uint8Array | ArrayBuffer): Promise<string> {
  const hash = createHash('sha256');
  if (typeof model === 'string') {
    for await (const chunk of createReadStream(model)) hash.update(chunk as Buffer);
  } else {
    hash.update(model instanceof ArrayBuffer ? new Uint8Array(model) : model);
  }
  return `sha256:${hash.digest('hex')}`;
}
