/**
 * Target feed: random feeds and options -> run / runSync, checked against JS references.
 */
import { Session, Tensor, type KilnErrorCode, type Results, type TensorType } from '../../../lib';
import { ALL_TYPES, IDENTITY_COMPUTE, addModel, identityModel, mlpModel, mlpReference, multiIOModel, slowModel, slowReference, symbolicDimsModel } from '../../../lib/samples';
import { FEED_MUTATIONS, type FeedSubject, type FeedTensor, type Mutation, OPTIONS_MUTATIONS, type OptionsDraft } from '../generators/feed-mutations';
import { CTORS, type Numeric, type NumericType, place, product, randomStorage, randomValues, type Storage } from '../generators/tensors';
import { Ctx, type Expect } from '../judge';
import { Rng } from '../random';
import type { CallInfo } from '../report';
import { approximately, checkResults, elementwise, exactly, type Expected, halfToNumber, sameNumber } from '../results';

/** A tensor for a draft: random storage for numeric data, sometimes a Tensor instance rather than a plain object. */
function feedTensor(rng: Rng, type: TensorType, values: Numeric | string[], dims: number[], storages: Storage[]): FeedTensor {
  let data: Numeric | string[] = values;
  if (!Array.isArray(values)) {
    const storage = randomStorage(rng, type);
    storages.push(storage);
    data = place(rng, values, CTORS[type as NumericType], storage);
  }
  if (rng.chance(0.2)) return new Tensor(type, data as never, dims) as unknown as FeedTensor;
  return { type, data, dims };
}

function rows(rng: Rng): number {
  return rng.weighted([[2, 0], [6, 1], [6, 2], [4, 3], [2, 5], [1, 64]] as const);
}

function randomDims(rng: Rng): number[] {
  const rank = rng.weighted([[1, 0], [3, 1], [3, 2], [2, 3], [1, 4], [0.2, 9]] as const);
  const dims: number[] = Array.from({ length: rank }, () => rng.weighted([[1, 0], [4, 1], [4, 2], [3, 3], [1, 7]] as const));
  if (rank > 0 && rng.chance(0.05)) dims[rng.int(rank)] = rng.range(100, 5000);
  return dims;
}

function floatsFor(values: Numeric | string[]): Float32Array {
  return values as Float32Array;
}

function makeFeedSubjects(sessions: Readonly<Record<string, Session>>): FeedSubject[] {
  const subjects: FeedSubject[] = [];
  subjects.push({
    name: 'add', session: sessions.add, outputs: ['y'],
    inputs: [{ name: 'a', type: 'float32', dims: ['N', 4] }, { name: 'b', type: 'float32', dims: ['N', 4] }],
    draft(rng) {
      const n = rows(rng);
      const storages: Storage[] = [];
      const a = floatsFor(randomValues(rng, 'float32', n * 4, true));
      const b = floatsFor(randomValues(rng, 'float32', n * 4, true));
      const y = new Float32Array(n * 4);
      for (let i = 0; i < y.length; i++) y[i] = a[i] + b[i];
      return {
        feeds: { a: feedTensor(rng, 'float32', a, [n, 4], storages), b: feedTensor(rng, 'float32', b, [n, 4], storages) },
        expected: { y: approximately('float32', [n, 4], y, 1e-6) }, storages,
      };
    },
  });
  subjects.push({
    name: 'multi_io', session: sessions.multi_io, outputs: ['sum', 'doubled'],
    inputs: [{ name: 'x', type: 'float32', dims: ['N', 3] }, { name: 'idx', type: 'int64', dims: ['N'] }],
    draft(rng) {
      const n = rows(rng);
      const storages: Storage[] = [];
      const x = floatsFor(randomValues(rng, 'float32', n * 3, false));
      const idx = randomValues(rng, 'int64', n, false) as BigInt64Array;
      const sum = new Float64Array(n);
      for (let i = 0; i < n * 3; i++) sum[Math.floor(i / 3)] += x[i];
      const doubled = new BigInt64Array(n);
      for (let i = 0; i < n; i++) doubled[i] = idx[i] * 2n; // the BigInt64Array wraps, as int64 does
      return {
        feeds: { x: feedTensor(rng, 'float32', x, [n, 3], storages), idx: feedTensor(rng, 'int64', idx, [n], storages) },
        expected: { sum: approximately('float32', [n], sum, 1e-4), doubled: exactly('int64', [n], doubled) }, storages,
      };
    },
  });
  subjects.push({
    name: 'symbolic_dims', session: sessions.symbolic_dims, outputs: ['y', 'v'],
    inputs: [{ name: 'x', type: 'float32', dims: ['batch', 'seq', 8] }, { name: 'u', type: 'float32', dims: [null, 4] }],
    draft(rng) {
      const b = rows(rng) % 4;
      const s = rng.range(0, 4);
      const m = rows(rng);
      const storages: Storage[] = [];
      const x = floatsFor(randomValues(rng, 'float32', b * s * 8, false));
      const u = floatsFor(randomValues(rng, 'float32', m * 4, true));
      return {
        feeds: { x: feedTensor(rng, 'float32', x, [b, s, 8], storages), u: feedTensor(rng, 'float32', u, [m, 4], storages) },
        expected: {
          y: elementwise('float32', [b, s, 8], x.length, (got, i) => (got === (x[i] > 0 ? x[i] : 0) ? undefined : `is ${String(got)}, Relu(${x[i]})`)),
          v: elementwise('float32', [m, 4], u.length, (got, i) => (sameNumber(got as number, -u[i]) ? undefined : `is ${String(got)}, -(${u[i]})`)),
        },
        storages,
      };
    },
  });
  subjects.push({
    name: 'mlp', session: sessions.mlp, outputs: ['y'],
    inputs: [{ name: 'x', type: 'float32', dims: ['N', 512] }],
    draft(rng) {
      const n = rng.range(0, 3);
      const storages: Storage[] = [];
      const x = floatsFor(randomValues(rng, 'float32', n * 512, false));
      return { feeds: { x: feedTensor(rng, 'float32', x, [n, 512], storages) }, expected: { y: approximately('float32', [n, 10], mlpReference(x, n), 1e-3) }, storages };
    },
  });
  subjects.push({
    name: 'slow', session: sessions.slow, outputs: ['y'],
    inputs: [{ name: 'iterations', type: 'int64', dims: [] }, { name: 'x', type: 'float32', dims: [1] }],
    draft(rng) {
      const steps = rng.range(0, 12);
      const x0 = Math.fround(rng.float() * 4 - 2);
      const storages: Storage[] = [];
      const ref = slowReference(x0, steps);
      return {
        feeds: {
          iterations: feedTensor(rng, 'int64', BigInt64Array.of(BigInt(steps)), [], storages),
          x: feedTensor(rng, 'float32', Float32Array.of(x0), [1], storages),
        },
        expected: {
          y: elementwise('float32', [], 1, (got) => (Math.abs((got as number) - ref) <= 3e-3 * Math.abs(ref) + 1e-6 ? undefined : `is ${String(got)}, reference ${ref}`)),
        },
        storages,
      };
    },
  });
  for (const type of ALL_TYPES) {
    const op = IDENTITY_COMPUTE[type];
    subjects.push({
      name: `identity_${type}`, session: sessions[`identity_${type}`], outputs: op === null ? ['y'] : ['y', 'z'],
      inputs: [{ name: 'x', type, dims: null }],
      draft(rng) {
        const dims = randomDims(rng);
        const n = product(dims);
        const storages: Storage[] = [];
        const x = randomValues(rng, type, n, true);
        const expected: Record<string, Expected> = { y: exactly(type, dims, x) };
        if (op !== null) expected.z = identityComputed(type, dims, x as Numeric);
        return { feeds: { x: feedTensor(rng, type, x, dims, storages) }, expected, storages };
      },
    });
  }
  return subjects;
}

/** identityModel's z: x + x (wrapping for integers, IEEE for floats) or !x for bool. */
function identityComputed(type: TensorType, dims: readonly number[], x: Numeric): Expected {
  const n = x.length;
  if (type === 'bool') return exactly(type, dims, Uint8Array.from(x as Uint8Array, (v) => (v ? 0 : 1)));
  if (type === 'float16') {
    return elementwise(type, dims, n, (got, i) => {
      const v = 2 * halfToNumber((x as Uint16Array)[i]);
      const want = Math.abs(v) > 65504 ? Math.sign(v) * Infinity : v;
      return sameNumber(halfToNumber(got as number), want) ? undefined : `is half ${String(got)}, expected ${want}`;
    });
  }
  const ref = new CTORS[type as NumericType](n);
  const src = x as unknown as (number & bigint)[];
  const sink = ref as unknown as (number | bigint)[];
  for (let i = 0; i < n; i++) sink[i] = src[i] + src[i];
  if (type === 'float32' || type === 'float64') {
    return elementwise(type, dims, n, (got, i) => (sameNumber(got as number, ref[i] as number) ? undefined : `is ${String(got)}, expected ${String(ref[i])}`));
  }
  return exactly(type, dims, ref);
}

/** One run or runSync call of a feed iteration, ready to start. */
interface FeedCall extends CallInfo {
  readonly subject: FeedSubject;
  readonly sync: boolean;
  readonly feeds: unknown;
  readonly o: OptionsDraft;
  readonly expect: Expect;
}

/** Combines what the mutations say; with two problems, which one Kiln reports is its choice. */
function combine(parts: readonly Mutation[]): { valid: 'yes' | 'no' | 'maybe'; want?: KilnErrorCode } {
  const problems = parts.filter((m) => m.valid !== 'yes');
  if (problems.length === 0) return { valid: 'yes' };
  const valid = problems.some((m) => m.valid === 'no') ? 'no' : 'maybe';
  return { valid, want: problems.length === 1 ? problems[0].want : undefined };
}

/** Whether a call hands run() a resizable buffer (refused: it could shrink under the run), input or output. */
function lendsResizable(feeds: unknown, options: unknown): boolean {
  const resizable = (t: unknown): boolean => {
    const data = t !== null && typeof t === 'object' ? (t as { data?: unknown }).data : undefined;
    return ArrayBuffer.isView(data) && (data.buffer as { resizable?: boolean }).resizable === true;
  };
  const values = (o: unknown): unknown[] => (o !== null && typeof o === 'object' && !Array.isArray(o) && !(o instanceof Map) ? Object.values(o) : []);
  const outputs = options !== null && typeof options === 'object' ? (options as { outputs?: unknown }).outputs : undefined;
  return values(feeds).some(resizable) || values(outputs).some(resizable);
}

function makeFeedCall(rng: Rng, subjects: readonly FeedSubject[], skip: (family: string) => boolean): FeedCall | undefined {
  const subject = rng.weighted(subjects.map((s) => [s.name === 'mlp' ? 0.5 : s.name.startsWith('identity_') ? 0.5 : 2, s] as const));
  const sync = rng.chance(0.4);
  const d = subject.draft(rng);
  const parts: Mutation[] = [];
  if (rng.chance(0.5)) {
    const [, , mutate] = rng.weighted(FEED_MUTATIONS.map((m) => [m[0], m] as const));
    const m = mutate(rng, subject, d);
    if (m) parts.push(m);
  }
  const o: OptionsDraft = { options: undefined, fetched: subject.outputs, preallocated: [], storages: [], allow: [] };
  const used = new Set<string>();
  for (let k = rng.weighted([[12, 0], [6, 1], [2, 2]] as const); k > 0; k--) {
    const [, , sets, mutate] = rng.weighted(OPTIONS_MUTATIONS.map((m) => [m[0], m] as const));
    if (used.has(sets) || used.has('options') || (sets === 'options' && used.size > 0)) continue;
    const m = mutate(rng, subject, d, o, sync);
    if (!m) continue;
    used.add(sets);
    parts.push(m);
  }
  if (!sync && lendsResizable(d.feeds, o.options)) {
    parts.push({ family: 'resizable-async', label: 'a resizable buffer given to run()', valid: 'no', want: 'E_INVALID_ARGUMENT' });
  }
  const family = parts.length > 0 ? parts.map((m) => m.family).join('+') : 'valid';
  if (skip(family) || parts.some((m) => skip(m.family))) return undefined;
  const { valid, want } = combine(parts);
  const unchecked = parts.some((m) => m.unchecked);
  const label = `${subject.name} ${sync ? 'runSync' : 'run'}${parts.length ? `: ${parts.map((m) => m.label).join('; ')}` : ''} [storage ${[...d.storages, ...o.storages].join(',') || 'n/a'}]`;
  const fetched = o.fetched;
  const preallocated = o.preallocated;
  const check = (r: unknown): string | undefined => {
    const wrong = checkResults(r, fetched, d.expected);
    if (wrong !== undefined) return wrong;
    for (const { name, data } of preallocated) {
      const got = (r as Results)[name].data;
      if (got !== data) {
        const inBuffer = d.expected[name].compare(data);
        if (inBuffer !== undefined) return `preallocated output "${name}" does not hold the result: ${inBuffer}`;
      }
    }
    return undefined;
  };
  return { family, label, subject, sync, feeds: d.feeds, o, expect: { valid, want, allow: o.allow, check: unchecked ? undefined : check } };
}

function startFeedCall(ctx: Ctx, c: FeedCall): Promise<unknown> {
  const { session } = c.subject;
  const started = ctx.begin(c, c.expect, c.sync ? 'sync' : 'async', () => {
    if (c.sync) return session.runSync(c.feeds as never, c.o.options as never);
    const p = session.run(c.feeds as never, c.o.options as never);
    try {
      c.o.after?.();
    } catch {
      // The fuzzer's own meddling may throw (e.g. on a detached buffer); the run goes on.
    }
    const later = c.o.abortLater;
    if (later) {
      const abort = (): void => later.controller.abort();
      if (later.when === 'sync') abort();
      else if (later.when === 'microtask') queueMicrotask(abort);
      else if (later.when === 'immediate') setImmediate(abort);
      else setTimeout(abort, later.ms);
    }
    return p;
  });
  return started;
}

export class FeedFuzzer {
  readonly #subjects: FeedSubject[];

  private constructor(subjects: FeedSubject[]) {
    this.#subjects = subjects;
  }

  static async create(): Promise<FeedFuzzer> {
    const models: Record<string, Uint8Array> = {
      add: addModel(), multi_io: multiIOModel(), symbolic_dims: symbolicDimsModel(), mlp: mlpModel(), slow: slowModel(),
    };
    for (const t of ALL_TYPES) models[`identity_${t}`] = identityModel(t);
    const sessions: Record<string, Session> = {};
    for (const [name, bytes] of Object.entries(models)) sessions[name] = await Session.create(bytes);
    return new FeedFuzzer(makeFeedSubjects(sessions));
  }

  async iteration(ctx: Ctx): Promise<void> {
    const rng = ctx.rng;
    if (rng.chance(0.04)) {
      await this.#disposeRace(ctx, rng.fork(0));
      return;
    }
    const size = rng.chance(0.7) ? 1 : rng.range(2, 8);
    const pending: Promise<unknown>[] = [];
    for (let k = 0; k < size; k++) {
      // Each call draws from its own PRNG: skipping one leaves the others as they were.
      const call = makeFeedCall(rng.fork(k + 1), this.#subjects, (f) => ctx.skipped(f));
      if (!call) {
        ctx.tally.count('skipped', ctx.iteration, { family: 'skipped', label: '' });
        continue;
      }
      pending.push(startFeedCall(ctx, call));
    }
    await Promise.all(pending);
  }

  /** Runs on a fresh session, dispose() among them: each settles (E_DISPOSED allowed); later calls get E_DISPOSED. */
  async #disposeRace(ctx: Ctx, rng: Rng): Promise<void> {
    const family = 'dispose-race';
    if (ctx.skipped(family)) return;
    const { value: session } = await ctx.begin({ family, label: 'load add' }, { valid: 'yes' }, 'async', () => Session.create(addModel()));
    if (!(session instanceof Session)) return;
    const count = rng.range(1, 6);
    const at = rng.int(count + 1);
    const pending: Promise<unknown>[] = [];
    let disposing: Promise<unknown> | undefined;
    for (let k = 0; k <= count; k++) {
      if (k === at) disposing = ctx.begin({ family, label: `dispose after ${k} runs` }, { valid: 'yes' }, 'async', () => session.dispose());
      if (k === count) break;
      const n = rng.range(1, 4);
      const a = randomValues(rng, 'float32', n * 4, false) as Float32Array;
      const b = randomValues(rng, 'float32', n * 4, false) as Float32Array;
      const y = Float32Array.from(a, (v, i) => v + b[i]);
      const sync = k > at && rng.chance(0.5);
      const expect: Expect = k >= at
        ? { valid: 'no', want: 'E_DISPOSED' }
        : { valid: 'yes', allow: ['E_DISPOSED'], check: (r) => checkResults(r, ['y'], { y: approximately('float32', [n, 4], y, 1e-6) }) };
      const feeds = { a: { type: 'float32' as const, data: a, dims: [n, 4] }, b: { type: 'float32' as const, data: b, dims: [n, 4] } };
      pending.push(ctx.begin({ family, label: `${sync ? 'runSync' : 'run'} ${k} (${k >= at ? 'after' : 'before'} dispose)` }, expect,
        sync ? 'sync' : 'async', () => (sync ? session.runSync(feeds) : session.run(feeds))));
      if (rng.chance(0.3)) await new Promise<void>((done) => setImmediate(done));
    }
    await Promise.all(pending);
    await disposing;
    await ctx.begin({ family, label: 'second dispose' }, { valid: 'yes' }, 'async', () => session.dispose());
    if (!session.disposed) ctx.finding({ family, label: 'disposed flag' }, 'wrong-result', 'session.disposed is false after dispose()');
  }

  async teardown(): Promise<void> {
    await Promise.all(this.#subjects.map((s) => s.session.dispose()));
  }
}
