/**
 * Model bytes for the load target: the corpus of sample models, byte-level mutations and
 * protobuf-shaped random bytes.
 */
import { ALL_TYPES, addModel, convModel, identityModel, mlpModel, multiIOModel, slowModel, symbolicDimsModel } from '../../../lib/samples';
import { Rng } from '../random';
import { randomString } from './tensors';

export interface CorpusModel {
  readonly name: string;
  readonly bytes: Uint8Array;
  /** Whether a model derived from it may be run with random inputs: no input sizes a loop or an allocation. */
  readonly runnable: boolean;
}

export function loadCorpus(): CorpusModel[] {
  const out: CorpusModel[] = [
    { name: 'add', bytes: addModel(), runnable: true },
    { name: 'multi_io', bytes: multiIOModel(), runnable: true },
    { name: 'symbolic_dims', bytes: symbolicDimsModel(), runnable: true },
    { name: 'conv', bytes: convModel(), runnable: true },
    { name: 'mlp', bytes: mlpModel(), runnable: true },
    // Its `iterations` input counts Loop steps: random values would run for ever.
    { name: 'slow', bytes: slowModel(), runnable: false },
  ];
  for (const t of ALL_TYPES) out.push({ name: `identity_${t}`, bytes: identityModel(t), runnable: true });
  // bigOutputModel is left out on purpose: its Range is constant-folded at load, so a flipped
  // exponent bit in `limit` makes the load allocate gigabytes, which is ONNX Runtime doing
  // what the model says rather than anything Kiln decides.
  return out;
}

/** A model of the corpus: the 8 MB MLP rarely, it is slow to load and mostly weights. */
export function pickCorpus(rng: Rng, corpus: readonly CorpusModel[]): CorpusModel {
  return rng.weighted(corpus.map((m) => [m.name === 'mlp' ? 0.3 : m.name === 'conv' ? 0.7 : 1, m] as const));
}

/** A byte position, half the time near either end, where a big model keeps its structure. */
function position(rng: Rng, length: number): number {
  if (length === 0) return 0;
  if (length > 2048 && rng.chance(0.5)) return rng.chance(0.5) ? rng.int(512) : length - 1 - rng.int(512);
  return rng.int(length);
}

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x08, 0x0a, 0x12, 0x1a, 0x3a];

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function varint(value: bigint): Uint8Array {
  const out: number[] = [];
  let v = BigInt.asUintN(64, value);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Uint8Array.from(out);
}

/** Protobuf-shaped bytes: fields with ModelProto-like numbers, nested messages, lengths that lie. */
function protobufish(rng: Rng, depth: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let k = rng.range(1, 8); k > 0; k--) {
    const field = rng.chance(0.85) ? rng.range(1, 20) : rng.int(2 ** 29);
    const wire = rng.weighted([[3, 2], [3, 0], [1, 1], [1, 5], [0.5, 3], [0.5, 4], [0.3, 6], [0.3, 7]] as const);
    parts.push(varint(BigInt(field) << 3n | BigInt(wire)));
    switch (wire) {
      case 0: parts.push(varint(rng.chance(0.3) ? rng.bigint64() : BigInt(rng.int(300)))); break;
      case 1: parts.push(rng.bytes(8)); break;
      case 5: parts.push(rng.bytes(4)); break;
      case 2: {
        const body = depth < 4 && rng.chance(0.6) ? protobufish(rng, depth + 1) : rng.chance(0.5) ? new TextEncoder().encode(randomString(rng)) : rng.bytes(rng.int(40));
        const lie = rng.chance(0.15);
        parts.push(varint(lie ? rng.pick([BigInt(body.length + rng.range(1, 100)), 2n ** 31n, 2n ** 63n, -1n]) : BigInt(body.length)), body);
        break;
      }
      default: break;
    }
  }
  return concat(...parts);
}

/** Byte-level mutations of a model's bytes. */
export const BYTE_MUTATIONS: readonly (readonly [number, string, (rng: Rng, bytes: Uint8Array, other: Uint8Array) => Uint8Array])[] = [
  [4, 'load-bitflip', (rng, bytes) => {
    const out = bytes.slice();
    for (let k = rng.range(1, 8); k > 0 && out.length > 0; k--) out[position(rng, out.length)] ^= 1 << rng.int(8);
    return out;
  }],
  [2, 'load-bytes', (rng, bytes) => {
    const out = bytes.slice();
    for (let k = rng.range(1, 4); k > 0 && out.length > 0; k--) out[position(rng, out.length)] = rng.chance(0.6) ? rng.pick(INTERESTING_BYTES) : rng.int(256);
    return out;
  }],
  [2, 'load-insert', (rng, bytes) => {
    const at = position(rng, bytes.length);
    const insert = rng.chance(0.5) ? rng.bytes(rng.range(1, 16)) : protobufish(rng, 2);
    return concat(bytes.subarray(0, at), insert, bytes.subarray(at));
  }],
  [2, 'load-delete', (rng, bytes) => {
    const at = position(rng, bytes.length);
    return concat(bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + rng.range(1, 64))));
  }],
  [2, 'load-truncate', (rng, bytes) => bytes.slice(0, rng.chance(0.3) ? rng.int(Math.min(bytes.length, 64)) : position(rng, bytes.length))],
  [2, 'load-splice', (rng, bytes, other) => concat(bytes.subarray(0, position(rng, bytes.length)), other.subarray(position(rng, other.length)))],
  [1, 'load-duplicate', (rng, bytes) => {
    const at = position(rng, bytes.length);
    const chunk = bytes.subarray(at, at + rng.range(1, 256));
    return concat(bytes.subarray(0, at), chunk, chunk, bytes.subarray(at + chunk.length));
  }],
  [2, 'load-protobuf', (rng) => protobufish(rng, 0)],
  [0.5, 'load-random', (rng) => rng.bytes(rng.int(512))],
];
