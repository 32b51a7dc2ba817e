/**
 * Mutations of a valid run call for the feed target: of its feeds and of its options.
 */
import { Session, type KilnErrorCode, type TensorType } from '../../../lib';
import { ALL_TYPES } from '../../../lib/samples';
import { describeValue } from '../judge';
import { Rng } from '../random';
import type { Expected } from '../results';
import { CTORS, detach, EVERY_CTOR, gc, type Numeric, type NumericType, place, product, randomStorage, type Storage } from './tensors';

export interface FeedTensor {
  type: unknown;
  data: unknown;
  dims: unknown;
}

/** A model input as the fuzzer knows it: its dims, null where symbolic, or null for any rank. */
interface PortSpec {
  readonly name: string;
  readonly type: TensorType;
  readonly dims: readonly (number | string | null)[] | null;
}

/** A valid call drawn for a subject: feeds (mutable, so that a mutation can break them) and the reference outputs. */
interface Draft {
  feeds: Record<string, unknown>;
  readonly expected: Readonly<Record<string, Expected>>;
  /** The storage of each numeric input: resizable ones are for runSync only. */
  readonly storages: Storage[];
}

export interface FeedSubject {
  readonly name: string;
  readonly session: Session;
  readonly inputs: readonly PortSpec[];
  readonly outputs: readonly string[];
  draft(rng: Rng): Draft;
}

// --- feed mutations ----------------------------------------------------------------------------

/** What a mutation did to a call and what that makes of it. */
export interface Mutation {
  readonly family: string;
  readonly label: string;
  readonly valid: 'yes' | 'no' | 'maybe';
  readonly want?: KilnErrorCode;
  /** The reference no longer applies (the data changed): a success is not checked. */
  readonly unchecked?: boolean;
}

type FeedMutation = (rng: Rng, s: FeedSubject, d: Draft) => Mutation | undefined;

const BAD_TYPE_NAMES: readonly unknown[] = ['float', 'Float32', '', 'float32 ', 'FLOAT', 'tensor', 'int', 'complex64', null, undefined, 1, {}, ['float32']];
const BAD_DIMS: readonly unknown[] = [-1, -0.5, NaN, Infinity, -Infinity, 1.5, 2 ** 53, 2 ** 64, -(2 ** 31), '2', 2n, null, undefined, true, {}, []];

/** The tensor the draft feeds to `name` (after a mutation: maybe not a tensor at all). */
function tensorOf(d: Draft, name: string): FeedTensor | undefined {
  const feeds = d.feeds as Record<string, unknown> | null | undefined;
  const t = feeds !== null && typeof feeds === 'object' ? feeds[name] : undefined;
  return t !== null && typeof t === 'object' ? (t as FeedTensor) : undefined;
}

/** Replaces a tensor of the draft by a plain object copy, so its fields can be changed. */
function mutable(d: Draft, name: string): FeedTensor {
  const t = tensorOf(d, name) as FeedTensor;
  const copy = { type: t.type, data: t.data, dims: t.dims };
  d.feeds[name] = copy;
  return copy;
}

export const FEED_MUTATIONS: readonly (readonly [number, string, FeedMutation])[] = [
  [2, 'dtype-name', (rng, s, d) => {
    const p = rng.pick(s.inputs);
    const t = mutable(d, p.name);
    t.type = rng.chance(0.5) ? rng.pick(ALL_TYPES.filter((x) => x !== p.type)) : rng.pick(BAD_TYPE_NAMES);
    return { family: 'dtype-name', label: `input ${p.name} type ${JSON.stringify(t.type) ?? String(t.type)}`, valid: 'no', want: 'E_DTYPE_MISMATCH' };
  }],
  [2, 'data-class', (rng, s, d) => {
    const p = rng.pick(s.inputs);
    const t = mutable(d, p.name);
    const n = product(t.dims as number[]);
    if (p.type === 'string') {
      if (n === 0) return undefined; // an empty array of anything is a valid empty string tensor
      t.data = rng.pick([new Float32Array(n), Array.from({ length: n }, (_, i) => i), new Set(t.data as string[]), (t.data as string[]).join('')]);
    } else {
      const own = CTORS[p.type as NumericType];
      const wrong = EVERY_CTOR.filter((c) => !(new c(0) instanceof own));
      t.data = rng.pick([
        () => new (rng.pick(wrong))(n), () => new DataView(new ArrayBuffer(n * own.BYTES_PER_ELEMENT)), () => Array.from({ length: n }, () => 0),
        () => new ArrayBuffer(n * own.BYTES_PER_ELEMENT), () => null, () => undefined, () => 'data', () => ({ length: n }),
      ])();
    }
    return { family: 'data-class', label: `input ${p.name} data ${describeValue(t.data)}`, valid: 'no', want: 'E_DTYPE_MISMATCH' };
  }],
  [0.7, 'fake-typed-array', (rng, s, d) => {
    const p = rng.pick(s.inputs.filter((x) => x.type !== 'string'));
    if (!p) return undefined;
    const t = mutable(d, p.name);
    const own = CTORS[p.type as NumericType];
    const real = new own(product(t.dims as number[]));
    const what = rng.pick(['prototype', 'proxy']);
    // Both pass `instanceof`; neither is a TypedArray to V8 or N-API.
    t.data = what === 'prototype' ? Object.setPrototypeOf({ length: real.length }, own.prototype) : new Proxy(real, {});
    return { family: 'fake-typed-array', label: `input ${p.name} data is a ${what === 'prototype' ? `plain object with ${own.name}.prototype` : `Proxy of a ${own.name}`}`, valid: 'no' };
  }],
  [2, 'length', (rng, s, d) => {
    const p = rng.pick(s.inputs);
    const t = mutable(d, p.name);
    const n = product(t.dims as number[]);
    const m = n + rng.pick([-1, 1, 7, -n, n + 1]);
    if (m < 0 || m === n) return undefined;
    t.data = p.type === 'string' ? Array.from({ length: m }, () => 'x') : new CTORS[p.type as NumericType](m);
    return { family: 'length', label: `input ${p.name} has ${m} elements for dims ${JSON.stringify(t.dims)}`, valid: 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [2, 'dims-value', (rng, s, d) => {
    const p = rng.pick(s.inputs);
    const t = mutable(d, p.name);
    const dims = [...(t.dims as number[])];
    const bad = rng.pick(BAD_DIMS);
    if (dims.length === 0) dims.push(bad as number);
    else dims[rng.int(dims.length)] = bad as number;
    t.dims = dims;
    return { family: 'dims-value', label: `input ${p.name} dims [${dims.map((x) => (typeof x === 'bigint' ? `${x}n` : JSON.stringify(x) ?? String(x))).join(',')}]`, valid: 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [1, 'dims-type', (rng, s, d) => {
    const p = rng.pick(s.inputs);
    const t = mutable(d, p.name);
    const dims = t.dims as number[];
    t.dims = rng.pick([null, undefined, product(dims), String(dims), { ...Object.fromEntries(dims.map((v, i) => [i, v])), length: dims.length }, Int32Array.from(dims), new Set(dims)]);
    return { family: 'dims-type', label: `input ${p.name} dims is ${describeValue(t.dims)}`, valid: 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [0.5, 'dims-overflow', (rng, s, d) => {
    const p = rng.pick(s.inputs);
    const t = mutable(d, p.name);
    t.dims = rng.pick([[2 ** 26, 2 ** 26, 2 ** 26], [2 ** 53 - 1, 2], [2 ** 31, 2 ** 31, 2 ** 31, 0]]);
    // A zero among huge dims is 0 elements, which an empty array matches.
    const zero = (t.dims as number[]).includes(0);
    return { family: 'dims-overflow', label: `input ${p.name} dims ${JSON.stringify(t.dims)}`, valid: zero ? 'maybe' : 'no', want: 'E_INVALID_ARGUMENT', unchecked: true };
  }],
  [1, 'dims-rank', (rng, s, d) => {
    const p = rng.pick(s.inputs.filter((x) => x.dims !== null && x.dims.length > 0));
    if (!p) return undefined;
    const t = mutable(d, p.name);
    const dims = t.dims as number[];
    t.dims = rng.chance(0.5) ? [...dims, 1] : [product(dims)];
    if ((t.dims as number[]).length === dims.length) return undefined;
    return { family: 'dims-rank', label: `input ${p.name} dims ${JSON.stringify(t.dims)} (rank ${(p.dims as unknown[]).length})`, valid: 'no', want: 'E_SHAPE_MISMATCH' };
  }],
  [1, 'dims-fixed', (rng, s, d) => {
    const candidates = s.inputs.filter((x) => x.dims?.some((v) => typeof v === 'number'));
    if (candidates.length === 0) return undefined;
    const p = rng.pick(candidates);
    const t = mutable(d, p.name);
    const dims = [...(t.dims as number[])];
    const fixed = (p.dims as (number | string | null)[]).flatMap((v, i) => (typeof v === 'number' ? [i] : []));
    const i = rng.pick(fixed);
    dims[i] += rng.pick([1, -1, 5]);
    if (dims[i] < 0) return undefined;
    t.dims = dims;
    t.data = new CTORS[p.type as NumericType](product(dims));
    return { family: 'dims-fixed', label: `input ${p.name} dims ${JSON.stringify(dims)}, fixed dim ${i} is ${String((p.dims as unknown[])[i])}`, valid: 'no', want: 'E_SHAPE_MISMATCH' };
  }],
  [1, 'dims-symbolic', (rng, s, d) => {
    // Two inputs sharing a symbolic dim given different sizes: ONNX Runtime does not check
    // symbolic dims across inputs, only what the ops need (Add broadcasts, so 1 row passes).
    if (s.name !== 'add' && s.name !== 'multi_io') return undefined;
    const p = rng.pick(s.inputs);
    const t = mutable(d, p.name);
    const dims = [...(t.dims as number[])];
    dims[0] += rng.range(1, 3);
    t.dims = dims;
    t.data = new CTORS[p.type as NumericType](product(dims));
    return { family: 'dims-symbolic', label: `input ${p.name} has ${dims[0]} rows, the other input fewer`, valid: 'maybe', unchecked: true };
  }],
  [1.5, 'missing-input', (rng, s, d) => {
    const p = rng.pick(s.inputs);
    if (rng.chance(0.5)) delete d.feeds[p.name];
    else d.feeds[p.name] = undefined;
    return { family: 'missing-input', label: `input ${p.name} missing`, valid: 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [1.5, 'extra-input', (rng, s, d) => {
    const name = rng.pick(['bogus', '__proto__', 'constructor', 'toString', '', s.inputs[0].name.toUpperCase()]);
    const t = { type: 'float32', data: new Float32Array(1), dims: [1] };
    Object.defineProperty(d.feeds, name, { value: t, enumerable: true, configurable: true, writable: true });
    return { family: 'extra-input', label: `extra input ${JSON.stringify(name)}`, valid: 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [0.5, 'extra-undefined', (rng, _s, d) => {
    d.feeds[rng.pick(['bogus', 'extra'])] = undefined;
    return { family: 'extra-undefined', label: 'extra input name with value undefined (ignored)', valid: 'yes' };
  }],
  [1, 'feeds-type', (rng, _s, d) => {
    const what = rng.pick(['null', 'undefined', 'number', 'string', 'array', 'Map']);
    d.feeds = { null: null, undefined, number: 42, string: 'feeds', array: [d.feeds], Map: new Map(Object.entries(d.feeds)) }[what] as unknown as Record<string, unknown>;
    return { family: 'feeds-type', label: `feeds is ${what}`, valid: 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [1, 'tensor-type', (rng, s, d) => {
    const p = rng.pick(s.inputs);
    d.feeds[p.name] = rng.pick([null, 42, 'tensor', true, () => 0, Symbol('t'), 1n]);
    return { family: 'tensor-type', label: `input ${p.name} is ${typeof d.feeds[p.name]}`, valid: 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [1, 'detached', (rng, s, d) => {
    const p = rng.pick(s.inputs.filter((x) => x.type !== 'string'));
    if (!p) return undefined;
    const t = mutable(d, p.name);
    const copy = new CTORS[p.type as NumericType](product(t.dims as number[]));
    if (!detach(copy.buffer)) return undefined;
    t.data = copy;
    const empty = product(t.dims as number[]) === 0;
    return { family: 'detached', label: `input ${p.name} data detached${empty ? ' (0 elements)' : ''}`, valid: empty ? 'maybe' : 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [1, 'string-elements', (rng, s, d) => {
    const p = s.inputs.find((x) => x.type === 'string');
    if (!p) return undefined;
    const t = mutable(d, p.name);
    const data = [...(t.data as string[])];
    if (data.length === 0) return undefined;
    const bad = rng.pick([1, null, undefined, {}, Symbol('s'), 1n, ['a'], new String('boxed')]);
    const i = rng.int(data.length);
    if (rng.chance(0.2)) delete data[i];
    else data[i] = bad as string;
    t.data = data;
    return { family: 'string-elements', label: `string element ${i} is ${i in data ? typeof bad : 'a hole'}`, valid: 'no', want: 'E_DTYPE_MISMATCH' };
  }],
  [0.5, 'lone-surrogate', (rng, s, d) => {
    const p = s.inputs.find((x) => x.type === 'string');
    if (!p) return undefined;
    const t = mutable(d, p.name);
    const data = [...(t.data as string[])];
    if (data.length === 0) return undefined;
    data[rng.int(data.length)] = rng.pick(['\ud800', 'a\udfff', '\udc00\ud800']);
    t.data = data;
    // Not valid UTF-16: converted to UTF-8 with replacement characters, so no exact round trip.
    return { family: 'lone-surrogate', label: 'a string with a lone surrogate', valid: 'maybe', unchecked: true };
  }],
  [0.5, 'bool-values', (rng, s, d) => {
    const p = s.inputs.find((x) => x.type === 'bool');
    if (!p) return undefined;
    const t = mutable(d, p.name);
    const data = Uint8Array.from(t.data as Uint8Array, () => rng.int(256));
    t.data = data;
    return { family: 'bool-values', label: 'bool data with bytes other than 0 and 1', valid: 'maybe', unchecked: true };
  }],
];

// --- options -----------------------------------------------------------------------------------

export interface OptionsDraft {
  options: unknown;
  /** Output names the results must hold. */
  fetched: readonly string[];
  /** Preallocated outputs: their data must hold the reference after the call. */
  readonly preallocated: { name: string; data: Numeric }[];
  /** Storage of preallocated outputs. */
  readonly storages: Storage[];
  /** Codes a valid call may still end with. */
  readonly allow: string[];
  /** Something to do right after an asynchronous run started. */
  after?: () => void;
  /** AbortControllers to abort later. */
  abortLater?: { controller: AbortController; when: 'sync' | 'microtask' | 'immediate' | 'timeout'; ms: number };
}

type OptionsMutation = (rng: Rng, s: FeedSubject, d: Draft, o: OptionsDraft, sync: boolean) => Mutation | undefined;

function withOption(o: OptionsDraft, key: string, value: unknown): void {
  o.options = { ...(o.options as object | undefined), [key]: value };
}

/** [weight, family, what it sets (two mutations of one call never set the same thing), mutation]. */
export const OPTIONS_MUTATIONS: readonly (readonly [number, string, string, OptionsMutation])[] = [
  [1, 'fetch-unknown', 'outputs', (rng, _s, _d, o) => {
    withOption(o, 'outputs', rng.chance(0.5) ? [rng.pick(['nope', '', 'Y', '__proto__'])] : { [rng.pick(['nope', 'constructor'])]: null });
    return { family: 'fetch-unknown', label: `outputs ${JSON.stringify((o.options as { outputs: unknown }).outputs)}`, valid: 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [0.5, 'fetch-empty', 'outputs', (rng, _s, _d, o) => {
    withOption(o, 'outputs', rng.chance(0.5) ? [] : {});
    return { family: 'fetch-empty', label: 'outputs empty', valid: 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [0.5, 'fetch-type', 'outputs', (rng, s, _d, o) => {
    withOption(o, 'outputs', rng.pick([42, s.outputs[0], true, [42], [null]]));
    return { family: 'fetch-type', label: `outputs ${JSON.stringify((o.options as { outputs: unknown }).outputs)}`, valid: 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [0.5, 'fetch-duplicate', 'outputs', (_rng, s, _d, o) => {
    withOption(o, 'outputs', [s.outputs[0], s.outputs[0]]);
    o.fetched = [s.outputs[0]];
    return { family: 'fetch-duplicate', label: `outputs [${s.outputs[0]}, ${s.outputs[0]}]`, valid: 'maybe', want: 'E_INVALID_ARGUMENT' };
  }],
  [2, 'fetch-subset', 'outputs', (rng, s, _d, o) => {
    const names = s.outputs.filter(() => rng.chance(0.6));
    if (names.length === 0) names.push(rng.pick(s.outputs));
    const asObject = rng.chance(0.4);
    withOption(o, 'outputs', asObject ? Object.fromEntries(names.map((n) => [n, rng.pick([null, undefined])])) : names);
    o.fetched = names;
    return { family: 'fetch-subset', label: `outputs ${asObject ? 'object' : 'array'} of ${names.join(', ')}`, valid: 'yes' };
  }],
  [2, 'fetch-prealloc', 'outputs', (rng, s, d, o) => {
    const name = rng.pick(s.outputs);
    const e = d.expected[name];
    if (e.type === 'string') {
      withOption(o, 'outputs', { [name]: { type: 'string', data: Array.from({ length: product(e.dims) }, () => ''), dims: [...e.dims] } });
      return { family: 'fetch-prealloc-string', label: `string output ${name} preallocated`, valid: 'no', want: 'E_INVALID_ARGUMENT' };
    }
    const ctor = CTORS[e.type as NumericType];
    const storage = randomStorage(rng, e.type);
    o.storages.push(storage);
    const data = place(rng, new ctor(product(e.dims)), ctor, storage);
    o.preallocated.push({ name, data });
    withOption(o, 'outputs', { [name]: { type: e.type, data, dims: [...e.dims] } });
    o.fetched = [name];
    return { family: 'fetch-prealloc', label: `output ${name} preallocated (${storage}, dims ${JSON.stringify(e.dims)})`, valid: 'yes' };
  }],
  [1, 'fetch-prealloc-bad', 'outputs', (rng, s, d, o) => {
    const name = rng.pick(s.outputs);
    const e = d.expected[name];
    if (e.type === 'string') return undefined;
    const ctor = CTORS[e.type as NumericType];
    const n = product(e.dims);
    const what = rng.pick(['size', 'class', 'detached', 'type']);
    let t: FeedTensor;
    let want: KilnErrorCode | undefined;
    let valid: 'no' | 'maybe' = 'no';
    if (what === 'size') {
      const dims = e.dims.length > 0 ? [e.dims[0] + rng.range(1, 3), ...e.dims.slice(1)] : [2];
      t = { type: e.type, data: new ctor(product(dims)), dims };
    } else if (what === 'class') {
      t = { type: e.type, data: new (rng.pick(EVERY_CTOR.filter((c) => !(new c(0) instanceof ctor))))(n), dims: [...e.dims] };
      want = 'E_DTYPE_MISMATCH';
    } else if (what === 'detached') {
      const data = new ctor(n);
      detach(data.buffer);
      t = { type: e.type, data, dims: [...e.dims] };
      want = 'E_INVALID_ARGUMENT';
      if (n === 0) valid = 'maybe';
    } else {
      t = { type: rng.pick(ALL_TYPES.filter((x) => x !== e.type)), data: new ctor(n), dims: [...e.dims] };
      want = 'E_DTYPE_MISMATCH';
    }
    withOption(o, 'outputs', { [name]: t });
    const how = { size: 'of the wrong size', class: 'of the wrong class', detached: 'detached', type: 'with the wrong type' }[what];
    return { family: 'fetch-prealloc-bad', label: `output ${name} preallocated ${how}`, valid, want };
  }],
  [0.5, 'fetch-prealloc-alias', 'outputs', (rng, s, d, o) => {
    // The output written into an input's own buffer: any answer, but no crash.
    const name = rng.pick(s.outputs);
    const e = d.expected[name];
    const input = s.inputs.find((p) => p.type === e.type && p.type !== 'string');
    if (!input) return undefined;
    const t = tensorOf(d, input.name);
    if (!t) return undefined;
    withOption(o, 'outputs', { [name]: { type: e.type, data: t.data, dims: t.dims } });
    o.fetched = [name];
    return { family: 'fetch-prealloc-alias', label: `output ${name} preallocated in input ${input.name}'s buffer`, valid: 'maybe', unchecked: true };
  }],
  [1, 'signal-aborted', 'signal', (_rng, _s, _d, o, sync) => {
    withOption(o, 'signal', AbortSignal.abort());
    return { family: 'signal-aborted', label: 'signal already aborted', valid: sync ? 'yes' : 'no', want: 'E_ABORTED' };
  }],
  [1.5, 'signal-later', 'signal', (rng, _s, _d, o, sync) => {
    const controller = new AbortController();
    withOption(o, 'signal', controller.signal);
    const when = rng.pick(['sync', 'microtask', 'immediate', 'timeout'] as const);
    o.abortLater = { controller, when, ms: rng.int(4) };
    if (!sync) o.allow.push('E_ABORTED');
    return { family: 'signal-later', label: `aborted after the start (${when})`, valid: 'yes' };
  }],
  [0.5, 'signal-fake', 'signal', (rng, _s, _d, o, sync) => {
    const fakes: readonly (readonly [string, unknown, 'no' | 'maybe'])[] = [
      ['{ aborted: false }', { aborted: false }, 'no'],
      ['{ aborted, addEventListener }', { aborted: false, addEventListener(): void {} }, 'no'],
      ['a string', 'signal', 'no'],
      ['a number', 42, 'no'],
      // Duck-typed well enough to work: accepting it is fine too.
      ['{ aborted, addEventListener, removeEventListener }', { aborted: false, addEventListener(): void {}, removeEventListener(): void {} }, 'maybe'],
    ];
    const [what, fake, valid] = rng.pick(fakes);
    withOption(o, 'signal', fake);
    return { family: 'signal-fake', label: `signal is not an AbortSignal: ${what}`, valid: sync ? 'yes' : valid, want: 'E_INVALID_ARGUMENT' };
  }],
  [0.5, 'output-location', 'outputLocation', (rng, _s, _d, o) => {
    const where = rng.pick(['cuda', 'gpu', 'cpu', 'CPU', 1]);
    withOption(o, 'outputLocation', where);
    return { family: 'output-location', label: `outputLocation ${JSON.stringify(where)}`, valid: where === 'cpu' ? 'yes' : 'no', want: 'E_INVALID_ARGUMENT' };
  }],
  [0.5, 'options-type', 'options', (rng, _s, _d, o) => {
    o.options = rng.pick([null, 42, 'options', [], true]);
    return { family: 'options-type', label: `options is ${JSON.stringify(o.options)}`, valid: 'maybe' };
  }],
  [1, 'transfer-in-flight', 'in-flight', (_rng, s, d, o, sync) => {
    if (sync) return undefined;
    // Transferring borrowed buffers while the run reads them: Kiln makes them untransferable (a copy is sent).
    o.after = () => {
      for (const p of s.inputs) {
        const data = tensorOf(d, p.name)?.data;
        if (ArrayBuffer.isView(data)) detach(data.buffer);
      }
      for (const { data } of o.preallocated) detach(data.buffer);
      gc?.();
    };
    return { family: 'transfer-in-flight', label: 'input and output buffers transferred while the run is in flight', valid: 'yes' };
  }],
  [0.5, 'scribble-in-flight', 'in-flight', (rng, s, d, o, sync) => {
    // Not on slow: its `iterations` overwritten would loop for ever, as the model says.
    if (sync || s.name === 'slow') return undefined;
    o.after = () => {
      for (const p of s.inputs) {
        const data = tensorOf(d, p.name)?.data;
        if (ArrayBuffer.isView(data)) new Uint8Array(data.buffer, data.byteOffset, data.byteLength).fill(rng.int(256));
      }
    };
    return { family: 'scribble-in-flight', label: 'inputs overwritten while the run is in flight', valid: 'maybe', unchecked: true };
  }],
];
