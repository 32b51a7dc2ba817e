/**
 * bench/fuzz: a seeded fuzzer over Kiln's public API, for a fixed time per target.
 *
 *   load   bytes and paths -> Session.create: byte mutations of the sample models (bit flips,
 *          inserts, deletes, truncation, splices), random protobuf-shaped bytes, graph edits
 *          made through decodeModel/encodeModel, odd buffers (offset, shared, resizable,
 *          pooled), buffers changed while the load runs, odd paths, random session options
 *   feed   random feeds and options -> run / runSync on sessions of the sample models (every
 *          identityModel dtype among them), alone, concurrently and across a dispose,
 *          checked against JS references
 *   batch  loadModel with a random batching configuration, random concurrent infer() calls
 *          (some invalid; priorities, timeouts, aborts) and dispose at a random point
 *   http   `kiln serve`'s HTTP server (in-process, on 127.0.0.1:0, the example repository):
 *          KServe v2 requests with random mutations, random JSON, random bytes with random
 *          Inference-Header-Content-Length, sent concurrently on every route; checked: never
 *          a 5xx, every error a JSON {error}, valid requests answered as in-process runs
 *
 * The contract checked: every failure is a KilnError with a stable code; a valid call gives
 * the reference answer; an invalid one is rejected; every awaited call answers before a
 * watchdog; nothing crashes. Each target runs in a child process under a supervisor, so a
 * crash or a stall is recorded as a finding with the case that caused it; that case family
 * is then skipped and fuzzing resumes with the next iteration.
 *
 * Iteration i of a target draws everything from a PRNG seeded by (seed, target, i), so a
 * finding replays in-process with --iteration (timing of concurrent calls aside).
 *
 *   node dist/bench/fuzz.js [--seconds 30] [--seed S] [--target load|feed|batch|all] [--json out.json]
 *   node dist/bench/fuzz.js --target feed --seed S --iteration I [--skip f1,f2] --verbose
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  KilnError, Session, Tensor, configure, loadModel, runtime,
  type KilnErrorCode, type Model, type ModelConfig, type Results, type SessionOptions, type TensorType,
} from '../lib';
import { isErrorCode } from '../lib/errors';
import { createHttpServer } from '../lib/server/http';
import { ModelManager } from '../lib/server/models';
import { writeExampleRepository } from '../lib/server/serve';
import { decodeModel, encodeModel, type AttributeProto, type GraphProto, type ModelProto, type NodeProto, type TypeProto, type ValueInfoProto } from '../lib/onnx';
import {
  ALL_TYPES, IDENTITY_COMPUTE, addModel, convModel, identityModel, mlpModel, mlpReference, multiIOModel, prng,
  slowModel, slowReference, symbolicDimsModel,
} from '../lib/samples';

// --- constants -----------------------------------------------------------------------------------

const TARGETS = ['load', 'feed', 'batch', 'http'] as const;
type TargetName = (typeof TARGETS)[number];


/** An awaited call that has not answered after this long is a hang. */
const WATCHDOG_MS = 10_000;
/** A child whose trace has not moved for this long is stuck (e.g. a blocked event loop). */
const STALL_MS = 30_000;
/** After this many crashes or stalls of one target, the supervisor stops restarting it. */
const MAX_RESTARTS = 30;
/** Exit code of a fuzzer process whose own code threw. */
const FUZZER_ERROR = 3;
/** Matches messages of JavaScript's own errors (TypeError & co.) that leaked through a KilnError. */
const ENGINE_ERROR = new RegExp([
  'is not a function', 'is not iterable', 'Cannot read propert', 'Cannot set propert', 'Cannot convert', 'is not a constructor',
  'called on incompatible receiver', 'Maximum call stack', 'Invalid array length', 'Invalid typed array length',
  'Cannot create a Buffer larger than', 'Array buffer allocation failed', 'Invalid array buffer length',
].join('|'));

// --- random ----------------------------------------------------------------------------------------

/** Seeded randomness (the samples' mulberry32) with the helpers a fuzzer needs. */
class Rng {
  readonly #next: () => number;

  constructor(seed: number) {
    this.#next = prng(seed);
  }

  /** Uniform in [0, 1). */
  float(): number {
    return (this.#next() + 1) / 2;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  weighted<T>(entries: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of entries) total += w;
    let x = this.float() * total;
    for (const [w, v] of entries) {
      x -= w;
      if (x < 0) return v;
    }
    return entries[entries.length - 1][1];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  bigint64(): bigint {
    return BigInt.asIntN(64, (BigInt(this.int(2 ** 32)) << 32n) | BigInt(this.int(2 ** 32)));
  }

  /** A PRNG for part `k` of this draw: skipping one part leaves the others unchanged. */
  fork(k: number): Rng {
    return new Rng(mixSeed(this.int(2 ** 32), k));
  }
}

function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

function iterationSeed(seed: number, target: TargetName, iteration: number): number {
  return mixSeed(seed, TARGETS.indexOf(target) + 1, iteration);
}

// --- bookkeeping -----------------------------------------------------------------------------------

interface Finding {
  kind: string;
  target: TargetName;
  family: string;
  message: string;
  label: string;
  iteration: number;
  repro: string;
  count: number;
}

/** A rejection with another code than the one Kiln's own validation should give: worth a look, not a failure. */
interface Note {
  target: TargetName;
  family: string;
  message: string;
  label: string;
  iteration: number;
  count: number;
}

interface TargetReport {
  target: TargetName;
  seconds: number;
  iterations: number;
  calls: number;
  restarts: number;
  outcomes: Record<string, number>;
  findings: Finding[];
  notes: Note[];
  skipped: string[];
  onnxruntime?: string;
  done?: boolean;
}

/** What a call is, for traces and findings. */
interface CallInfo {
  readonly family: string;
  readonly label: string;
}

/** Messages with their numbers blanked: one finding per kind of failure, not per size. */
function messageShape(message: string): string {
  return message
    .replace(/"[^"]*"/g, '"…"')
    .replace(/\[object \w+\]/g, '[object …]')
    .replace(/\b(Big)?(Int|Uint|Float)(8|16|32|64)(Clamped)?Array\b/g, 'TypedArray')
    .replace(/\d+(\.\d+)?/g, '#')
    .slice(0, 240);
}

function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.constructor.name}${(e as { code?: unknown }).code !== undefined ? ` (code ${String((e as { code?: unknown }).code)})` : ''}: ${e.message}`;
  return `${typeof e}: ${String(e)}`;
}

class Tally {
  iterations = 0;
  calls = 0;
  readonly outcomes = new Map<string, number>();
  readonly findings = new Map<string, Finding>();
  readonly notes = new Map<string, Note>();
  /** The call started last: unhandled rejections are attributed to it. */
  last: CallInfo & { iteration: number } = { family: 'setup', label: 'setup', iteration: -1 };
  done = false;

  constructor(readonly target: TargetName, readonly seed: number, readonly skip: ReadonlySet<string>, readonly verbose: boolean) {}

  count(outcome: string, iteration: number, info: CallInfo): void {
    this.calls++;
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    if (this.verbose) process.stdout.write(`  [${iteration}] ${info.family}: ${info.label} -> ${outcome}\n`);
  }

  repro(iteration: number): string {
    const skip = this.skip.size > 0 ? ` --skip ${[...this.skip].join(',')}` : '';
    return `node dist/bench/fuzz.js --target ${this.target} --seed ${this.seed} --iteration ${iteration}${skip} --verbose`;
  }

  /** Records a finding; one per kind and message shape (or per `key`), counting repeats. */
  finding(iteration: number, info: CallInfo, kind: string, message: string, key = `${kind}|${messageShape(message)}`): void {
    const known = this.findings.get(key);
    if (known) {
      known.count++;
      return;
    }
    this.findings.set(key, {
      kind, target: this.target, family: info.family, message, label: info.label, iteration, repro: this.repro(iteration), count: 1,
    });
    process.stderr.write(`FINDING [${this.target}/${info.family}] ${kind}: ${message}\n  case: ${info.label}\n  repro: ${this.repro(iteration)}\n`);
  }

  note(iteration: number, info: CallInfo, message: string): void {
    const key = messageShape(message);
    const known = this.notes.get(key);
    if (known) known.count++;
    else this.notes.set(key, { target: this.target, family: info.family, message, label: info.label, iteration, count: 1 });
  }

  report(seconds: number): TargetReport {
    return {
      target: this.target, seconds, iterations: this.iterations, calls: this.calls, restarts: 0,
      outcomes: Object.fromEntries(this.outcomes), findings: [...this.findings.values()], notes: [...this.notes.values()],
      skipped: [...this.skip], done: this.done,
    };
  }
}

/** The last step of a worker, in a fixed slot of a file: what the supervisor reports after a crash. */
class Trace {
  readonly #fd: number | undefined;
  #step = 0;

  constructor(file: string | undefined) {
    this.#fd = file === undefined ? undefined : fs.openSync(file, 'w');
  }

  write(iteration: number, info: CallInfo): void {
    if (this.#fd === undefined) return;
    const line = `${++this.#step}\t${iteration}\t${info.family}\t${info.label.replace(/[\t\n]/g, ' ').slice(0, 900)}\n`;
    fs.writeSync(this.#fd, line.padEnd(1024), 0);
  }
}

function readTrace(file: string): { step: number; iteration: number; family: string; label: string } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8').trimEnd();
  } catch {
    return undefined;
  }
  const [step, iteration, family, label] = text.split('\t');
  if (!label) return undefined;
  return { step: Number(step), iteration: Number(iteration), family, label };
}

// --- judging calls ---------------------------------------------------------------------------------

class Hang extends Error {}

/** Rejects with a Hang when `p` has not settled after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Hang(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, watchdog]).finally(() => clearTimeout(timer));
}

interface Expect {
  /** 'yes': must succeed (and pass `check`); 'no': must be rejected; 'maybe': either, as long as it is a KilnError. */
  readonly valid: 'yes' | 'no' | 'maybe';
  /** Codes a valid call may still end with (an abort, a dispose, a timeout, a full queue). */
  readonly allow?: readonly string[];
  /** The code Kiln's validation should give when it rejects; another one is noted. */
  readonly want?: KilnErrorCode;
  /** Checks a success; returns what is wrong with it. */
  readonly check?: (value: unknown) => string | undefined;
}

/** One iteration: its PRNG, its number, and where its findings go. */
class Ctx {
  constructor(readonly tally: Tally, readonly trace: Trace, readonly iteration: number, readonly rng: Rng) {}

  skipped(family: string): boolean {
    return this.tally.skip.has(family);
  }

  step(info: CallInfo): void {
    this.tally.last = { ...info, iteration: this.iteration };
    this.trace.write(this.iteration, info);
  }

  finding(info: CallInfo, kind: string, message: string): void {
    this.tally.finding(this.iteration, info, kind, message);
  }

  /** Judges a settled call against `expect` and counts its outcome. */
  judge(info: CallInfo, expect: Expect, result: { ok: true; value: unknown } | { ok: false; error: unknown }): string {
    const outcome = this.#outcome(info, expect, result);
    this.tally.count(outcome, this.iteration, info);
    return outcome;
  }

  #outcome(info: CallInfo, expect: Expect, result: { ok: true; value: unknown } | { ok: false; error: unknown }): string {
    if (result.ok) {
      if (expect.valid === 'no') {
        this.finding(info, 'accepted-invalid', 'the call is invalid but succeeded');
      } else if (expect.check) {
        let wrong: string | undefined;
        try {
          wrong = expect.check(result.value);
        } catch (e) {
          wrong = `reading the result threw ${describeError(e)}`;
        }
        if (wrong !== undefined) this.finding(info, 'wrong-result', wrong);
      }
      return 'ok';
    }
    const e = result.error;
    if (e instanceof Hang) {
      this.finding(info, 'hang', e.message);
      return 'hang';
    }
    if (!(e instanceof KilnError)) {
      this.finding(info, 'non-KilnError', `failed with ${describeError(e)}`);
      return 'non-KilnError';
    }
    if (!isErrorCode(e.code)) this.finding(info, 'unstable-code', `KilnError code ${String(e.code)} is not one of the stable codes: ${e.message}`);
    if (ENGINE_ERROR.test(e.message)) {
      this.finding(info, 'engine-error', `${e.code} wraps a JavaScript engine error instead of a validation message: ${e.message}`);
    }
    if (expect.valid === 'yes' && !(expect.allow ?? []).includes(e.code)) {
      this.finding(info, 'rejected-valid', `the call is valid but failed: ${e.code}: ${e.message}`);
    } else if (expect.valid !== 'yes' && expect.want !== undefined && e.code !== expect.want && !(expect.allow ?? []).includes(e.code)) {
      this.tally.note(this.iteration, info, `expected ${expect.want}, received ${e.code}: ${e.message.slice(0, 300)}`);
    }
    return e.code;
  }

  /**
   * Starts a call now and judges it when it settles (under the watchdog). `api`: whether the
   * call is asynchronous (must return a promise, never throw) or synchronous.
   */
  begin<T>(info: CallInfo, expect: Expect, api: 'async' | 'sync', start: () => T | Promise<T>): Promise<{ value: T | undefined; outcome: string }> {
    this.step(info);
    let pending: Promise<T>;
    try {
      const v = start();
      if (api === 'async' && !(v instanceof Promise)) {
        this.finding(info, 'not-a-promise', `an asynchronous call returned ${typeof v} instead of a promise`);
      }
      pending = Promise.resolve(v);
    } catch (e) {
      if (api === 'async') this.finding(info, 'sync-throw', `an asynchronous call threw synchronously instead of rejecting: ${describeError(e)}`);
      pending = Promise.reject(e);
    }
    return within(pending, WATCHDOG_MS).then(
      (value) => ({ value, outcome: this.judge(info, expect, { ok: true, value }) }),
      (error: unknown) => ({ value: undefined, outcome: this.judge(info, expect, { ok: false, error }) }),
    );
  }
}

// --- tensors ---------------------------------------------------------------------------------------

type NumericType = Exclude<TensorType, 'string'>;
type Numeric = Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array | Uint32Array | BigUint64Array;

interface NumericCtor {
  new (length: number): Numeric;
  new (buffer: ArrayBufferLike, byteOffset: number, length?: number): Numeric;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
}

/** The TypedArray class of each element type (lib/tensor.ts TensorDataTypes). */
const CTORS = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, bfloat16: Uint16Array,
  int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array, bool: Uint8Array,
} as unknown as Readonly<Record<NumericType, NumericCtor>>;

const EVERY_CTOR = [
  Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, BigInt64Array, Uint8Array, Uint8ClampedArray,
  Uint16Array, Uint32Array, BigUint64Array,
] as unknown as readonly NumericCtor[];

type ResizableBuffer = ArrayBuffer & { resize(byteLength: number): void };
const ResizableArrayBuffer = ArrayBuffer as unknown as new (byteLength: number, options: { maxByteLength: number }) => ResizableBuffer;

const gc = (globalThis as { gc?: () => void }).gc;

/** Detaches `buffer` (ArrayBuffer.prototype.transfer where Node has it, else structuredClone); false when it cannot be. */
function detach(buffer: ArrayBufferLike): boolean {
  if (buffer instanceof SharedArrayBuffer) return false;
  try {
    const transfer = (buffer as unknown as { transfer?: () => ArrayBuffer }).transfer;
    if (typeof transfer === 'function') transfer.call(buffer);
    else structuredClone(buffer, { transfer: [buffer as ArrayBuffer] });
  } catch {
    return false;
  }
  return true;
}

const SPECIAL_FLOATS = [0, -0, 1, -1, Infinity, -Infinity, NaN, 3.4028234663852886e38, -3.4028234663852886e38, 1.401298464324817e-45, 1.1754943508222875e-38, 65504, 1e-7];
const STRING_PIECES = ['', 'a', 'kiln', '\0', 'a\0b', 'é', '日本語', '😀', 'e\u0301', ' ', '\n', '\uffff', '\u2028', 'x'.repeat(300)];

function randomString(rng: Rng): string {
  let s = '';
  for (let k = rng.int(4); k > 0; k--) s += rng.pick(STRING_PIECES);
  return s;
}

/** `n` random values of `type`; `special` mixes in signed zeros, infinities, NaN and extremes. */
function randomValues(rng: Rng, type: TensorType, n: number, special: boolean): Numeric | string[] {
  if (type === 'string') return Array.from({ length: n }, () => randomString(rng));
  const out = new CTORS[type](n);
  const sink = out as unknown as (number | bigint)[];
  for (let i = 0; i < n; i++) {
    switch (type) {
      case 'float32': case 'float64':
        sink[i] = special && rng.chance(0.15) ? rng.pick(SPECIAL_FLOATS) : (rng.float() * 2 - 1) * rng.pick([1, 1e3, 1e-3]);
        break;
      case 'bool': sink[i] = rng.int(2); break;
      case 'float16': case 'bfloat16': sink[i] = rng.int(65536); break;
      case 'int64': sink[i] = rng.bigint64(); break;
      case 'uint64': sink[i] = BigInt.asUintN(64, rng.bigint64()); break;
      default: sink[i] = rng.int(2 ** 32); // the typed array wraps it to its range
    }
  }
  return out;
}

/** Where a tensor's data lives: kinds of ArrayBuffer and view Kiln must accept (or refuse cleanly). */
type Storage = 'plain' | 'offset' | 'shared' | 'resizable' | 'tracking' | 'pooled';

function randomStorage(rng: Rng, type: TensorType): Storage {
  if (type === 'string') return 'plain';
  const kinds: (readonly [number, Storage])[] = [[6, 'plain'], [2, 'offset'], [1, 'shared'], [1, 'resizable'], [1, 'tracking']];
  if (type === 'uint8' || type === 'bool') kinds.push([1, 'pooled']);
  return rng.weighted(kinds);
}

/** A copy of `values` in `storage`. */
function place(rng: Rng, values: Numeric, ctor: NumericCtor, storage: Storage): Numeric {
  const n = values.length;
  const size = ctor.BYTES_PER_ELEMENT;
  let out: Numeric;
  switch (storage) {
    case 'plain': out = new ctor(n); break;
    case 'offset': {
      // For 1-byte types the offset is odd half of the time.
      const before = rng.range(1, 3);
      out = new ctor(new ArrayBuffer((before + n + rng.int(3)) * size), before * size, n);
      break;
    }
    case 'shared': out = new ctor(new SharedArrayBuffer(n * size), 0, n); break;
    case 'resizable': out = new ctor(new ResizableArrayBuffer(n * size, { maxByteLength: n * size + 64 }), 0, n); break;
    case 'tracking': out = new ctor(new ResizableArrayBuffer(n * size, { maxByteLength: n * size + 64 }), 0); break;
    case 'pooled': out = Buffer.allocUnsafe(n); break; // small Buffers are views into Node's shared pool
  }
  (out as unknown as { set(v: ArrayLike<unknown>): void }).set(values as ArrayLike<unknown>);
  return out;
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function sameNumber(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return sign * f * 2 ** -24;
  if (e === 31) return f ? NaN : sign * Infinity;
  return sign * (1 + f / 1024) * 2 ** (e - 15);
}

/** What an output must be: its type, dims, and a comparison of its data with the reference. */
interface Expected {
  readonly type: TensorType;
  readonly dims: readonly number[];
  readonly compare: (data: unknown) => string | undefined;
}

function bytesOf(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** The same values, byte for byte (numeric) or string for string. */
function exactly(type: TensorType, dims: readonly number[], values: Numeric | string[]): Expected {
  return {
    type, dims,
    compare(data) {
      if (Array.isArray(values)) {
        const got = data as string[];
        for (let i = 0; i < values.length; i++) if (got[i] !== values[i]) return `[${i}] is ${JSON.stringify(got[i])}, expected ${JSON.stringify(values[i])}`;
        return undefined;
      }
      const a = bytesOf(data as Numeric);
      const b = bytesOf(values);
      if (a.length !== b.length) return `${a.length} bytes, expected ${b.length}`;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `byte ${i} is ${a[i]}, expected ${b[i]}`;
      return undefined;
    },
  };
}

/** Numbers equal to `ref` within `tolerance` (relative above 1), NaN matching NaN and infinities exact. */
function approximately(type: TensorType, dims: readonly number[], ref: ArrayLike<number>, tolerance: number): Expected {
  return {
    type, dims,
    compare(data) {
      const got = data as ArrayLike<number>;
      for (let i = 0; i < ref.length; i++) {
        const a = got[i];
        const b = ref[i];
        if (sameNumber(a, b) || a === b) continue;
        if (Number.isFinite(a) && Number.isFinite(b) && Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(b))) continue;
        return `[${i}] is ${a}, reference ${b}`;
      }
      return undefined;
    },
  };
}

/** Element-wise comparison with a reference function of the index. */
function elementwise(type: TensorType, dims: readonly number[], n: number, same: (got: unknown, i: number) => string | undefined): Expected {
  return {
    type, dims,
    compare(data) {
      const got = data as ArrayLike<unknown>;
      for (let i = 0; i < n; i++) {
        const wrong = same(got[i], i);
        if (wrong !== undefined) return `[${i}] ${wrong}`;
      }
      return undefined;
    },
  };
}

/** Checks a run's results: the fetched outputs only, each of the expected type, dims, class and values. */
function checkResults(r: unknown, names: readonly string[], expected: Readonly<Record<string, Expected>>): string | undefined {
  if (r === null || typeof r !== 'object') return `results are ${typeof r}`;
  const keys = Object.keys(r).sort();
  if (keys.join('\u0000') !== [...new Set(names)].sort().join('\u0000')) return `outputs ${JSON.stringify(keys)}, expected ${JSON.stringify(names)}`;
  for (const name of names) {
    const e = expected[name];
    const t = (r as Record<string, { type: unknown; data: unknown; dims: unknown }>)[name];
    if (t.type !== e.type) return `output "${name}": type ${String(t.type)}, expected ${e.type}`;
    if (JSON.stringify(t.dims) !== JSON.stringify(e.dims)) return `output "${name}": dims ${JSON.stringify(t.dims)}, expected ${JSON.stringify(e.dims)}`;
    const cls: Function = e.type === 'string' ? Array : CTORS[e.type];
    if (!(t.data instanceof cls)) return `output "${name}": data is ${describeValue(t.data)}, expected a ${cls.name}`;
    const length = (t.data as { length: number }).length;
    if (length !== product(e.dims)) return `output "${name}": ${length} elements for dims ${JSON.stringify(e.dims)}`;
    const wrong = e.compare(t.data);
    if (wrong !== undefined) return `output "${name}": ${wrong}`;
  }
  return undefined;
}

function describeValue(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

// =================================================================================================
// load: bytes and paths -> Session.create
// =================================================================================================

interface CorpusModel {
  readonly name: string;
  readonly bytes: Uint8Array;
  /** Whether a model derived from it may be run with random inputs: no input sizes a loop or an allocation. */
  readonly runnable: boolean;
}

function loadCorpus(): CorpusModel[] {
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
function pickCorpus(rng: Rng, corpus: readonly CorpusModel[]): CorpusModel {
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
const BYTE_MUTATIONS: readonly (readonly [number, string, (rng: Rng, bytes: Uint8Array, other: Uint8Array) => Uint8Array])[] = [
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

// --- graph edits -------------------------------------------------------------------------------

const OP_TYPES = [
  'Add', 'Relu', 'Identity', 'Gemm', 'MatMul', 'Conv', 'Reshape', 'Concat', 'Gather', 'Slice', 'Loop', 'If', 'Scan',
  'Cast', 'Not', 'Neg', 'ReduceSum', 'Expand', 'Tile', 'Shape', 'Size', 'Transpose', 'Softmax', 'TopK', 'Where',
  'NonExistentOp', '', 'add', 'QuantizeLinear', 'DequantizeLinear', 'Split', 'Squeeze', 'Unsqueeze',
];
const HUGE_DIMS = [-1n, -(2n ** 63n), 0n, 2n ** 31n, 2n ** 32n + 1n, 2n ** 40n, 2n ** 53n + 1n, 2n ** 62n, 2n ** 63n - 1n];
const ELEM_TYPES = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 99, -1];

/** Every graph of a model: the main one and the bodies in attributes (Loop, If, Scan). */
function graphsOf(m: ModelProto): GraphProto[] {
  const out: GraphProto[] = [];
  const visit = (g: GraphProto | undefined): void => {
    if (!g) return;
    out.push(g);
    for (const n of g.node ?? []) {
      for (const a of n.attribute ?? []) {
        visit(a.g);
        for (const sub of a.graphs ?? []) visit(sub);
      }
    }
  };
  visit(m.graph);
  return out;
}

function valueNames(g: GraphProto): string[] {
  return [
    ...(g.input ?? []).map((v) => v.name ?? ''),
    ...(g.initializer ?? []).map((t) => t.name ?? ''),
    ...(g.node ?? []).flatMap((n) => n.output ?? []),
  ];
}

function tensorTypes(g: GraphProto): NonNullable<TypeProto['tensorType']>[] {
  return [...(g.input ?? []), ...(g.output ?? []), ...(g.valueInfo ?? [])]
    .map((v) => v.type?.tensorType)
    .filter((t): t is NonNullable<TypeProto['tensorType']> => t !== undefined);
}

type GraphEdit = (rng: Rng, m: ModelProto, g: GraphProto) => string | undefined;

const GRAPH_EDITS: readonly (readonly [string, GraphEdit])[] = [
  ['op-type', (rng, _m, g) => {
    const n = g.node?.length ? rng.pick(g.node) : undefined;
    if (!n) return undefined;
    n.opType = rng.pick(OP_TYPES);
    return `op ${n.name} -> ${JSON.stringify(n.opType)}`;
  }],
  ['domain', (rng, _m, g) => {
    const n = g.node?.length ? rng.pick(g.node) : undefined;
    if (!n) return undefined;
    n.domain = rng.pick(['com.microsoft', 'ai.onnx.ml', 'bogus.domain', 'ai.onnx', '\0']);
    return `op ${n.name} domain ${JSON.stringify(n.domain)}`;
  }],
  ['drop-node-input', (rng, _m, g) => {
    const n = g.node?.find((x) => (x.input?.length ?? 0) > 0);
    if (!n?.input) return undefined;
    n.input.splice(rng.int(n.input.length), 1);
    return `node ${n.name} loses an input`;
  }],
  ['rename-node-input', (rng, _m, g) => {
    const n = g.node?.find((x) => (x.input?.length ?? 0) > 0);
    if (!n?.input) return undefined;
    const i = rng.int(n.input.length);
    n.input[i] = rng.pick(['nowhere', '', ...valueNames(g)]);
    return `node ${n.name} input ${i} -> ${JSON.stringify(n.input[i])}`;
  }],
  ['add-node-input', (rng, _m, g) => {
    const n = g.node?.length ? rng.pick(g.node) : undefined;
    if (!n) return undefined;
    (n.input ??= []).push(rng.pick(['', ...valueNames(g)]));
    return `node ${n.name} gains an input`;
  }],
  ['node-outputs', (rng, _m, g) => {
    const n = g.node?.length ? rng.pick(g.node) : undefined;
    if (!n) return undefined;
    const other = rng.pick(valueNames(g));
    n.output = rng.pick([[], [other], [...(n.output ?? []), other], ['']]);
    return `node ${n.name} outputs ${JSON.stringify(n.output)}`;
  }],
  ['cycle', (rng, _m, g) => {
    const nodes = g.node ?? [];
    if (nodes.length === 0) return undefined;
    const a = rng.pick(nodes);
    const b = rng.pick(nodes);
    if (!a.input?.length || !b.output?.length || !a.output?.length) return undefined;
    a.input[0] = b.output[0];
    if (b.input?.length) b.input[0] = a.output[0];
    return `cycle ${a.name} <-> ${b.name}`;
  }],
  ['drop-node', (rng, _m, g) => {
    if (!g.node?.length) return undefined;
    const [n] = g.node.splice(rng.int(g.node.length), 1);
    return `node ${n.name} removed`;
  }],
  ['reorder-nodes', (rng, _m, g) => {
    if (!g.node || g.node.length < 2) return undefined;
    g.node.reverse();
    if (rng.chance(0.5)) g.node.push(...g.node.splice(0, 1));
    return 'nodes out of topological order';
  }],
  ['graph-inputs', (rng, _m, g) => {
    const inputs = g.input ?? [];
    if (inputs.length === 0) return undefined;
    const what = rng.pick(['drop', 'duplicate', 'rename', 'empty-name']);
    const i = rng.int(inputs.length);
    if (what === 'drop') inputs.splice(i, 1);
    else if (what === 'duplicate') inputs.push({ ...inputs[i] });
    else inputs[i].name = what === 'rename' ? rng.pick(['nowhere', ...valueNames(g)]) : '';
    return `graph input ${i}: ${what}`;
  }],
  ['graph-outputs', (rng, _m, g) => {
    const outputs = g.output ?? [];
    const what = rng.pick(['drop-all', 'undefined-name', 'duplicate', 'initializer']);
    if (what === 'drop-all') g.output = [];
    else if (what === 'undefined-name') outputs.push({ name: 'nowhere', type: { tensorType: { elemType: 1 } } });
    else if (what === 'duplicate' && outputs.length > 0) outputs.push({ ...outputs[0] });
    else if (what === 'initializer' && g.initializer?.length) outputs.push({ name: g.initializer[0].name, type: { tensorType: { elemType: 1 } } });
    g.output = g.output ?? outputs;
    return `graph outputs: ${what}`;
  }],
  ['dim-value', (rng, _m, g) => {
    const dims = tensorTypes(g).flatMap((t) => t.shape?.dim ?? []);
    if (dims.length === 0) return undefined;
    const d = rng.pick(dims);
    delete d.dimParam;
    d.dimValue = rng.pick(HUGE_DIMS);
    return `dim -> ${d.dimValue}`;
  }],
  ['dim-param', (rng, _m, g) => {
    const dims = tensorTypes(g).flatMap((t) => t.shape?.dim ?? []);
    if (dims.length === 0) return undefined;
    const d = rng.pick(dims);
    delete d.dimValue;
    d.dimParam = rng.pick(['', 'N', 'M', '\0', 'x'.repeat(1000), '-1', '😀']);
    return `dim -> param ${JSON.stringify(d.dimParam.slice(0, 8))}`;
  }],
  ['rank', (rng, _m, g) => {
    const types = tensorTypes(g);
    if (types.length === 0) return undefined;
    const t = rng.pick(types);
    const what = rng.pick(['grow', 'shrink', 'unknown', 'huge']);
    const dims = (t.shape ??= {}).dim ??= [];
    if (what === 'grow') dims.push({ dimValue: 1n });
    else if (what === 'shrink') dims.pop();
    else if (what === 'unknown') delete t.shape;
    else t.shape.dim = Array.from({ length: rng.pick([33, 64, 1000]) }, () => ({ dimValue: 1n }));
    return `rank: ${what}`;
  }],
  ['elem-type', (rng, _m, g) => {
    const types = tensorTypes(g);
    if (types.length === 0) return undefined;
    const t = rng.pick(types);
    t.elemType = rng.pick(ELEM_TYPES);
    return `elem type -> ${t.elemType}`;
  }],
  ['value-kind', (rng, _m, g) => {
    const values: ValueInfoProto[] = [...(g.input ?? []), ...(g.output ?? [])];
    if (values.length === 0) return undefined;
    const v = rng.pick(values);
    const what = rng.pick(['sequence', 'map', 'optional', 'sparse', 'none']);
    if (what === 'sequence') v.type = { sequenceType: { elemType: { tensorType: { elemType: 1 } } } };
    else if (what === 'map') v.type = { mapType: { keyType: 7, valueType: { tensorType: { elemType: 1 } } } };
    else if (what === 'optional') v.type = { optionalType: { elemType: { tensorType: { elemType: 1 } } } };
    else if (what === 'sparse') v.type = { sparseTensorType: { elemType: 1, shape: { dim: [{ dimValue: 2n }] } } };
    else delete v.type;
    return `value ${v.name} -> ${what}`;
  }],
  ['initializer', (rng, _m, g) => {
    const inits = g.initializer ?? [];
    if (inits.length === 0) return undefined;
    const t = rng.pick(inits);
    const what = rng.pick(['drop', 'dims-huge', 'dims-mismatch', 'data-type', 'no-data', 'typed-field', 'external', 'rename']);
    switch (what) {
      case 'drop': inits.splice(inits.indexOf(t), 1); break;
      case 'dims-huge': t.dims = [rng.pick(HUGE_DIMS), ...(t.dims ?? []).slice(1)]; break;
      case 'dims-mismatch': t.dims = [...(t.dims ?? []), 2n]; break;
      case 'data-type': t.dataType = rng.pick(ELEM_TYPES); break;
      case 'no-data': delete t.rawData; break;
      case 'typed-field': delete t.rawData; t.floatData = [1, 2, 3]; t.int64Data = [2n ** 62n]; break;
      case 'external':
        t.dataLocation = 1;
        t.externalData = [
          { key: 'location', value: rng.pick(['/etc/hostname', '../../../../etc/hostname', 'nowhere.bin', '', '/dev/zero', '\0']) },
          { key: 'offset', value: rng.pick(['0', '-1', '99999999999999', 'x']) },
          { key: 'length', value: rng.pick(['4', '0', '18446744073709551615', '']) },
        ];
        break;
      case 'rename': t.name = rng.pick(['', ...valueNames(g)]); break;
    }
    return `initializer ${t.name}: ${what}`;
  }],
  ['attribute', (rng, _m, g) => {
    const n = g.node?.length ? rng.pick(g.node) : undefined;
    if (!n) return undefined;
    const attrs: AttributeProto[] = (n.attribute ??= []);
    const what = rng.pick(['drop', 'type', 'huge-ints', 'bogus', 'graph']);
    if (what === 'drop' && attrs.length) attrs.splice(rng.int(attrs.length), 1);
    else if (what === 'type' && attrs.length) rng.pick(attrs).type = rng.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 99]) as AttributeProto['type'];
    else if (what === 'huge-ints' && attrs.length) {
      const a = rng.pick(attrs);
      a.ints = [2n ** 40n, -(2n ** 62n), 0n];
      a.i = -(2n ** 63n);
    } else if (what === 'graph') attrs.push({ name: rng.pick(['body', 'then_branch', 'axis']), type: 5, g: { name: 'empty' } });
    else attrs.push({ name: rng.pick(['axis', 'bogus', 'kernel_shape', '']), type: 2, i: rng.pick([0n, -1n, 2n ** 40n]) });
    return `node ${n.name} attribute: ${what}`;
  }],
  ['opset', (rng, m) => {
    const what = rng.pick(['version', 'drop', 'domain', 'duplicate']);
    const ops = (m.opsetImport ??= []);
    if (what === 'version' && ops.length) ops[0].version = rng.pick([0n, 1n, 7n, 13n, 21n, 99n, 2n ** 40n, -1n]);
    else if (what === 'drop') m.opsetImport = [];
    else if (what === 'domain' && ops.length) ops[0].domain = rng.pick(['ai.onnx.ml', 'bogus', '\0']);
    else ops.push({ domain: '', version: 1n });
    return `opset: ${what}`;
  }],
  ['ir-version', (rng, m) => {
    m.irVersion = rng.pick([0n, 1n, 2n, 3n, 7n, 10n, 11n, 12n, 99n, -1n, 2n ** 62n]);
    return `ir_version -> ${m.irVersion}`;
  }],
  ['no-graph', (rng, m) => {
    if (rng.chance(0.5)) delete m.graph;
    else m.graph = {};
    return 'graph removed';
  }],
  ['functions', (rng, m) => {
    m.functions = [{ name: 'f', domain: 'local', input: ['x'], output: ['y'], node: [{ opType: rng.pick(['Identity', 'f', 'Bogus']), input: ['x'], output: ['y'], domain: rng.pick(['', 'local']) }] }];
    const n: NodeProto | undefined = m.graph?.node?.[0];
    if (n) {
      n.opType = 'f';
      n.domain = 'local';
      m.opsetImport = [...(m.opsetImport ?? []), { domain: 'local', version: 1n }];
    }
    return 'node calls a (recursive?) local function';
  }],
];

interface LoadCase {
  readonly family: string;
  readonly label: string;
  /** What Session.create is given. */
  readonly source: unknown;
  readonly options?: unknown;
  readonly expect: Expect;
  /** Whether a session it makes may be run with random inputs. */
  readonly runnable: boolean;
  /** Done right after Session.create returned (the load runs meanwhile on a loader thread). */
  readonly during?: () => void;
}

/** Options mixed into some loads: valid, invalid, and ones that change how the bytes are parsed. */
const LOAD_OPTIONS: readonly unknown[] = [
  { graphOptimizationLevel: 'disabled' }, { graphOptimizationLevel: 'all' }, { graphOptimizationLevel: 'bogus' },
  { intraOpThreads: 1 }, { intraOpThreads: -1 }, { intraOpThreads: 1.5 }, { executorThreads: 2 }, { executorThreads: 0 },
  { providers: ['cpu'] }, { providers: [] }, { providers: ['bogus'] }, { providers: 'cpu' },
  { executionMode: 'parallel' }, { logLevel: 'fatal' }, { unknownOption: 1 }, null, 42, 'cpu',
  { configEntries: { 'session.load_model_format': 'ORT' } }, { configEntries: { 'session.load_model_format': 'ONNX' } },
  { configEntries: { 'session.use_ort_model_bytes_directly': '1' } }, { configEntries: { '': '' } },
];

/** The bytes of a model as one of the inputs Session.create accepts: plain, offset, shared, resizable, ArrayBuffer, pooled Buffer. */
function modelSource(rng: Rng, bytes: Uint8Array): { source: Uint8Array | ArrayBuffer; storage: string } {
  const storage = rng.weighted([[6, 'plain'], [1, 'offset'], [1, 'shared'], [1, 'resizable'], [1, 'arraybuffer'], [1, 'pooled']] as const);
  if (storage === 'arraybuffer') return { source: bytes.slice().buffer, storage };
  if (storage === 'pooled') return { source: Buffer.from(bytes), storage };
  return { source: place(rng, bytes, Uint8Array as unknown as NumericCtor, storage) as Uint8Array, storage };
}

function makeLoadCase(rng: Rng, corpus: readonly CorpusModel[], files: LoadFiles): LoadCase {
  const family = rng.weighted([
    [1, 'load-valid'], [12, 'load-bytes'], [5, 'load-graph-edit'], [1, 'load-path'], [0.5, 'load-arg'],
    [0.4, 'load-hazard-transfer'], [0.2, 'load-hazard-resize'], [0.2, 'load-hazard-scribble'],
  ] as const);
  const base = pickCorpus(rng, corpus);
  const options = rng.chance(0.1) ? rng.pick(LOAD_OPTIONS) : undefined;
  const optionsLabel = options === undefined ? '' : ` with options ${JSON.stringify(options)}`;
  // Options may be invalid: then a rejection is fine even for valid bytes.
  const validity = (valid: 'yes' | 'no' | 'maybe'): 'yes' | 'no' | 'maybe' => (options !== undefined && valid === 'yes' ? 'maybe' : valid);
  switch (family) {
    case 'load-valid': {
      const { source, storage } = modelSource(rng, base.bytes);
      return { family, label: `${base.name} as ${storage}${optionsLabel}`, source, options, expect: { valid: validity('yes') }, runnable: base.runnable };
    }
    case 'load-bytes': {
      const [, name, mutate] = rng.weighted(BYTE_MUTATIONS.map((m) => [m[0], m] as const));
      const other = pickCorpus(rng, corpus);
      const bytes = mutate(rng, base.bytes, other.bytes);
      const { source, storage } = modelSource(rng, bytes);
      return { family: name, label: `${name} of ${base.name} (${bytes.length} bytes, ${storage})${optionsLabel}`, source, options, expect: { valid: 'maybe' }, runnable: base.runnable };
    }
    case 'load-graph-edit': {
      const model = decodeModel(base.bytes);
      const graphs = graphsOf(model);
      const done: string[] = [];
      for (let k = rng.range(1, 3); k > 0; k--) {
        const [name, edit] = rng.pick(GRAPH_EDITS);
        const g = rng.pick(graphs.length > 0 ? graphs : [{}]);
        const what = edit(rng, model, g);
        if (what !== undefined) done.push(`${name}: ${what}`);
      }
      let bytes: Uint8Array;
      try {
        bytes = encodeModel(model);
      } catch (e) {
        // An edit protobufjs cannot write (e.g. an int64 out of range) is not a Kiln case.
        bytes = base.bytes;
        done.push(`(not encodable: ${(e as Error).message.slice(0, 60)}; original bytes)`);
      }
      // The family names the edits, so that a crash skips that combination only.
      const kinds = [...new Set(done.map((x) => x.split(':')[0]))].sort().join('+');
      // ONNX Runtime 1.30 itself aborts (std::terminate, onnxruntime-node too) running a Conv
      // on a rank-1 input (docs/fuzz.md, U1): models an edit turned into a Conv are not run,
      // so that the budget is not spent finding that again.
      const upstreamHazard = base.name !== 'conv' && graphsOf(model).some((g) => g.node?.some((n) => n.opType === 'Conv'));
      return {
        family: `${family}(${kinds})`, label: `${base.name}: ${done.join('; ') || 'no edit applied'}${optionsLabel}`, source: bytes, options,
        expect: { valid: 'maybe' }, runnable: base.runnable && !upstreamHazard,
      };
    }
    case 'load-path': {
      const [what, p, valid, want] = rng.pick(files.paths);
      return { family, label: `path ${what}: ${JSON.stringify(p.slice(0, 120))}`, source: p, expect: { valid, want }, runnable: false };
    }
    case 'load-arg': {
      const args: readonly (readonly [string, unknown])[] = [
        ['undefined', undefined], ['null', null], ['number', 42], ['object', {}], ['array', [1, 2]], ['Int32Array', new Int32Array(4)],
        ['DataView', new DataView(new ArrayBuffer(8))], ['Uint8ClampedArray', new Uint8ClampedArray(base.bytes)],
        ['SharedArrayBuffer', new SharedArrayBuffer(8)], ['empty Uint8Array', new Uint8Array(0)], ['function', () => base.bytes],
        ['boxed string', Object('/nowhere')], ['Symbol', Symbol('model')], ['bigint', 1n],
      ];
      const [what, source] = rng.pick(args);
      return { family, label: `argument ${what}`, source, expect: { valid: 'no' }, runnable: false };
    }
    case 'load-hazard-transfer': {
      // The caller transfers the buffer while the load reads it, then writes into what it received.
      // As for run(), whose borrowed buffers are made untransferable, the load must see the bytes
      // as they were at the call.
      const bytes = base.bytes.slice();
      return {
        family, label: `${base.name}: buffer transferred during the load, the transferred copy zeroed`, source: bytes, runnable: false,
        expect: { valid: 'yes' },
        during: () => {
          try {
            const moved = structuredClone(bytes.buffer, { transfer: [bytes.buffer] });
            new Uint8Array(moved).fill(0);
          } catch {
            // Refusing the transfer is fine.
          }
          gc?.();
        },
      };
    }
    case 'load-hazard-resize': {
      const ab = new ResizableArrayBuffer(base.bytes.length, { maxByteLength: base.bytes.length });
      const bytes = new Uint8Array(ab);
      bytes.set(base.bytes);
      return {
        family, label: `${base.name}: resizable buffer shrunk to 0 during the load`, source: bytes, runnable: false,
        expect: { valid: 'maybe' },
        during: () => ab.resize(0),
      };
    }
    case 'load-hazard-scribble': {
      const { source, storage } = modelSource(rng, base.bytes);
      const view = source instanceof ArrayBuffer ? new Uint8Array(source) : source;
      return {
        family, label: `${base.name} (${storage}): the caller's own bytes zeroed during the load`, source, runnable: false,
        expect: { valid: 'maybe' },
        during: () => view.fill(0),
      };
    }
  }
}

/** Paths for load-path: [what, path, validity, code Kiln should give]. */
interface LoadFiles {
  readonly dir: string;
  readonly paths: readonly (readonly [string, string, 'yes' | 'no' | 'maybe', KilnErrorCode | undefined])[];
}

/** Writes the files of load-path under `parent` (the supervisor's run folder: removed even after a crash). */
function makeLoadFiles(corpus: readonly CorpusModel[], parent: string): LoadFiles {
  const dir = fs.mkdtempSync(path.join(parent, 'kiln-fuzz-'));
  const valid = path.join(dir, 'add.onnx');
  fs.writeFileSync(valid, corpus[0].bytes);
  const empty = path.join(dir, 'empty.onnx');
  fs.writeFileSync(empty, new Uint8Array(0));
  const junk = path.join(dir, 'junk.onnx');
  fs.writeFileSync(junk, new Rng(7).bytes(4096));
  const truncated = path.join(dir, 'truncated.onnx');
  fs.writeFileSync(truncated, corpus[0].bytes.subarray(0, corpus[0].bytes.length >> 1));
  const loop = path.join(dir, 'loop');
  try {
    fs.symlinkSync(path.join(dir, 'loop2'), loop);
    fs.symlinkSync(loop, path.join(dir, 'loop2'));
  } catch {
    // No symlinks here: that path is then just missing.
  }
  return {
    dir,
    paths: [
      ['valid', valid, 'yes', undefined],
      ['valid, relative with ..', path.relative(process.cwd(), path.join(dir, '..', path.basename(dir), 'add.onnx')), 'yes', undefined],
      ['missing', path.join(dir, 'missing.onnx'), 'no', 'E_NOT_FOUND'],
      ['directory', dir, 'no', 'E_MODEL_LOAD'],
      ['empty file', empty, 'no', 'E_MODEL_LOAD'],
      ['random bytes', junk, 'no', 'E_MODEL_LOAD'],
      ['truncated', truncated, 'no', 'E_MODEL_LOAD'],
      ['trailing slash', `${valid}/`, 'no', undefined],
      ['symlink loop', loop, 'no', undefined],
      ['character device', '/dev/zero', 'no', 'E_MODEL_LOAD'],
      ['proc file', '/proc/self/status', 'no', 'E_MODEL_LOAD'],
      ['empty string', '', 'no', undefined],
      ['very long', `${dir}/${'x'.repeat(5000)}`, 'no', undefined],
      // Node's own fs refuses paths with NUL bytes (ERR_INVALID_ARG_VALUE): a C API would stop at the NUL.
      ['NUL byte after a valid path', `${valid}\0.txt`, 'no', 'E_INVALID_ARGUMENT'],
      ['NUL byte only', '\0', 'no', undefined],
      ['file URL', `file://${valid}`, 'no', undefined],
    ],
  };
}

/** Feeds for any session from its metadata: symbolic dims small, element counts capped. */
function feedsFromMetadata(rng: Rng, session: Session): Record<string, { type: TensorType; data: Numeric | string[]; dims: number[] }> | undefined {
  const feeds: Record<string, { type: TensorType; data: Numeric | string[]; dims: number[] }> = {};
  for (const input of session.inputs) {
    const type = input.type;
    if (!(ALL_TYPES as readonly string[]).includes(type)) return undefined;
    const dims = input.shape.map((d) => (typeof d === 'number' ? d : rng.range(0, 3)));
    const n = product(dims);
    if (!Number.isSafeInteger(n) || n > 1 << 16) return undefined;
    feeds[input.name] = { type: type as TensorType, data: randomValues(rng, type as TensorType, n, true), dims };
  }
  return feeds;
}

class LoadFuzzer {
  readonly #corpus = loadCorpus();
  readonly #files: LoadFiles;

  constructor(parent: string) {
    this.#files = makeLoadFiles(this.#corpus, parent);
  }

  async iteration(ctx: Ctx): Promise<void> {
    const c = makeLoadCase(ctx.rng, this.#corpus, this.#files);
    if (ctx.skipped(c.family)) {
      ctx.tally.count('skipped', ctx.iteration, c);
      return;
    }
    const { value: session } = await ctx.begin(c, c.expect, 'async', () => {
      const p = Session.create(c.source as Uint8Array, c.options as SessionOptions);
      c.during?.();
      return p;
    });
    if (!(session instanceof Session)) {
      if (session !== undefined) ctx.finding(c, 'wrong-result', `Session.create resolved with ${describeValue(session)}`);
      return;
    }
    await this.#exercise(ctx, c, session);
  }

  /** A loaded session: its metadata must be readable, it may be run, and it must dispose. */
  async #exercise(ctx: Ctx, c: LoadCase, session: Session): Promise<void> {
    const info = { family: c.family, label: `${c.label}: metadata` };
    try {
      const meta = JSON.stringify({ inputs: session.inputs, outputs: session.outputs, providers: session.providers, notes: session.providerNotes, device: session.device });
      if (session.providers.length === 0) ctx.finding(info, 'wrong-result', `a loaded session names no provider: ${meta.slice(0, 300)}`);
    } catch (e) {
      ctx.finding(info, 'metadata', `reading a loaded session's metadata threw ${describeError(e)}`);
    }
    const runFamily = `${c.family}/run`;
    if (c.runnable && ctx.rng.chance(0.4) && !ctx.skipped(runFamily)) {
      const feeds = feedsFromMetadata(ctx.rng, session);
      if (feeds) {
        const sync = ctx.rng.chance(0.5);
        await ctx.begin({ family: runFamily, label: `${c.label}: ${sync ? 'runSync' : 'run'} with random inputs` }, { valid: 'maybe' },
          sync ? 'sync' : 'async', () => (sync ? session.runSync(feeds) : session.run(feeds)));
      }
    }
    await ctx.begin({ family: c.family, label: `${c.label}: dispose` }, { valid: 'yes' }, 'async', () => session.dispose());
    await ctx.begin({ family: c.family, label: `${c.label}: runSync after dispose` }, { valid: 'no', want: 'E_DISPOSED' }, 'sync', () => session.runSync({}));
  }

  async teardown(): Promise<void> {
    fs.rmSync(this.#files.dir, { recursive: true, force: true });
  }
}

// =================================================================================================
// feed: random feeds and options -> run / runSync
// =================================================================================================

interface FeedTensor {
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

interface FeedSubject {
  readonly name: string;
  readonly session: Session;
  readonly inputs: readonly PortSpec[];
  readonly outputs: readonly string[];
  draft(rng: Rng): Draft;
}

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

// --- feed mutations ----------------------------------------------------------------------------

/** What a mutation did to a call and what that makes of it. */
interface Mutation {
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

const FEED_MUTATIONS: readonly (readonly [number, string, FeedMutation])[] = [
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

interface OptionsDraft {
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
const OPTIONS_MUTATIONS: readonly (readonly [number, string, string, OptionsMutation])[] = [
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

class FeedFuzzer {
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

// =================================================================================================
// batch: loadModel + concurrent infer()
// =================================================================================================

interface BatchSubject {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly inputs: readonly { name: string; type: TensorType; rest: number[] | 'seq' }[];
  /** Model config fields this subject needs (padding). */
  readonly input?: ModelConfig['input'];
  /** A valid request of `n` rows: feeds and its outputs. */
  request(rng: Rng, n: number): { feeds: Record<string, FeedTensor>; expected: Record<string, Expected> };
}

function makeBatchSubjects(): BatchSubject[] {
  return [
    {
      name: 'add', bytes: addModel(),
      inputs: [{ name: 'a', type: 'float32', rest: [4] }, { name: 'b', type: 'float32', rest: [4] }],
      request(rng, n) {
        const a = randomValues(rng, 'float32', n * 4, true) as Float32Array;
        const b = randomValues(rng, 'float32', n * 4, true) as Float32Array;
        const y = Float32Array.from(a, (v, i) => v + b[i]);
        return {
          feeds: { a: { type: 'float32', data: a, dims: [n, 4] }, b: { type: 'float32', data: b, dims: [n, 4] } },
          expected: { y: approximately('float32', [n, 4], y, 1e-6) },
        };
      },
    },
    {
      name: 'multi_io', bytes: multiIOModel(),
      inputs: [{ name: 'x', type: 'float32', rest: [3] }, { name: 'idx', type: 'int64', rest: [] }],
      request(rng, n) {
        const x = randomValues(rng, 'float32', n * 3, false) as Float32Array;
        const idx = randomValues(rng, 'int64', n, false) as BigInt64Array;
        const sum = new Float64Array(n);
        for (let i = 0; i < n * 3; i++) sum[Math.floor(i / 3)] += x[i];
        const doubled = BigInt64Array.from(idx, (v) => v * 2n);
        return {
          feeds: { x: { type: 'float32', data: x, dims: [n, 3] }, idx: { type: 'int64', data: idx, dims: [n] } },
          expected: { sum: approximately('float32', [n], sum, 1e-4), doubled: exactly('int64', [n], doubled) },
        };
      },
    },
    {
      name: 'mlp', bytes: mlpModel(),
      inputs: [{ name: 'x', type: 'float32', rest: [512] }],
      request(rng, n) {
        const x = randomValues(rng, 'float32', n * 512, false) as Float32Array;
        return { feeds: { x: { type: 'float32', data: x, dims: [n, 512] } }, expected: { y: approximately('float32', [n, 10], mlpReference(x, n), 1e-3) } };
      },
    },
    {
      // Ragged requests padded into one batch; each caller gets its own lengths back.
      name: 'symbolic_dims (padded)', bytes: symbolicDimsModel(),
      inputs: [{ name: 'x', type: 'float32', rest: 'seq' }, { name: 'u', type: 'float32', rest: [4] }],
      input: [{ name: 'x', allowPadding: true, padValue: -1, lengthBuckets: [2, 4, 8] }],
      request(rng, n) {
        const seq = rng.range(1, 6);
        const x = randomValues(rng, 'float32', n * seq * 8, false) as Float32Array;
        const u = randomValues(rng, 'float32', n * 4, false) as Float32Array;
        return {
          feeds: { x: { type: 'float32', data: x, dims: [n, seq, 8] }, u: { type: 'float32', data: u, dims: [n, 4] } },
          expected: {
            y: elementwise('float32', [n, seq, 8], x.length, (got, i) => (got === (x[i] > 0 ? x[i] : 0) ? undefined : `is ${String(got)}, Relu(${x[i]})`)),
            v: elementwise('float32', [n, 4], u.length, (got, i) => (got === -u[i] ? undefined : `is ${String(got)}, -(${u[i]})`)),
          },
        };
      },
    },
  ];
}

interface Episode {
  readonly config: ModelConfig;
  readonly maxBatch: number;
  readonly levels: number;
  /** Codes any valid request of this configuration may end with. */
  readonly allow: string[];
  readonly label: string;
}

function randomEpisode(rng: Rng, s: BatchSubject): Episode {
  const maxBatch = rng.range(1, s.name === 'mlp' ? 8 : 16);
  const allow: string[] = [];
  let levels = 0;
  let dynamicBatching: ModelConfig['dynamicBatching'];
  if (rng.chance(0.15)) {
    dynamicBatching = false;
  } else {
    levels = rng.pick([0, 0, 2, 3]);
    const policy = rng.chance(0.5) ? {
      timeoutAction: rng.pick(['REJECT', 'DELAY'] as const),
      defaultTimeoutMicroseconds: rng.pick([0, 500, 5000]),
      allowTimeoutOverride: rng.chance(0.5),
      maxQueueSize: rng.pick([0, 0, 2, 8]),
    } : undefined;
    if (policy && policy.defaultTimeoutMicroseconds > 0) allow.push('E_TIMEOUT');
    if (policy && policy.maxQueueSize > 0) allow.push('E_QUEUE_FULL');
    const maxLatencyMs = rng.chance(0.15) ? rng.pick([1, 5, 50]) : undefined;
    if (maxLatencyMs !== undefined) allow.push('E_OVERLOADED');
    dynamicBatching = {
      preferredBatchSize: Array.from({ length: rng.int(3) }, () => rng.range(1, maxBatch)),
      maxQueueDelayMicroseconds: rng.pick([0, 100, 1000, 5000]),
      preserveOrdering: rng.chance(0.3),
      priorityLevels: levels,
      ...(levels > 0 ? { defaultPriorityLevel: rng.range(1, levels) } : {}),
      ...(policy ? { defaultQueuePolicy: policy } : {}),
      ...(maxLatencyMs !== undefined ? { maxLatencyMs } : {}),
    };
  }
  const config: ModelConfig = { maxBatchSize: maxBatch, dynamicBatching, instanceGroup: [{ count: rng.range(1, 3) }], ...(s.input ? { input: s.input } : {}) };
  return { config, maxBatch, levels, allow, label: `${s.name} ${JSON.stringify(config)}` };
}

/** Configurations loadModel must refuse. */
const BAD_CONFIGS: readonly unknown[] = [
  { maxBatchSize: -1 }, { maxBatchSize: 1.5 }, { maxBatchSize: 'x' }, { dynamicBatching: { priorityLevels: -1 } },
  { dynamicBatching: { preferredBatchSize: [0] } }, { dynamicBatching: { maxLatencyMs: 0 } }, { bogus: 1 },
  { instanceGroup: [] }, { instanceGroup: [{ count: 0 }] }, { input: [{ name: 'nowhere', allowPadding: true }] }, null, 42,
  { dynamicBatching: { priorityLevels: 2, defaultPriorityLevel: 3 } }, { dynamicBatching: { defaultQueuePolicy: { maxQueueSize: -1 } } },
];

interface BatchRequest {
  readonly index: number;
  readonly info: CallInfo;
  readonly expect: Expect;
  readonly feeds: unknown;
  settled: number;
  outcome?: string;
  value?: Results;
}

class BatchFuzzer {
  readonly #subjects = makeBatchSubjects();

  async iteration(ctx: Ctx): Promise<void> {
    const rng = ctx.rng;
    const s = rng.weighted(this.#subjects.map((x) => [x.name === 'mlp' ? 0.5 : 1, x] as const));
    if (rng.chance(0.05)) {
      const config = rng.pick(BAD_CONFIGS);
      const info = { family: 'batch-config', label: `${s.name} config ${JSON.stringify(config)}` };
      if (ctx.skipped(info.family)) return;
      const { value } = await ctx.begin(info, { valid: 'no', want: 'E_INVALID_ARGUMENT' }, 'async', () => loadModel(s.bytes, config as ModelConfig));
      if (value) await (value as Model).dispose();
      return;
    }
    const episode = randomEpisode(rng, s);
    const family = 'batch';
    if (ctx.skipped(family)) return;
    const { value: model } = await ctx.begin({ family, label: `load ${episode.label}` }, { valid: 'yes' }, 'async', () => loadModel(s.bytes, episode.config));
    if (!model) return;
    await this.#episode(ctx, rng, s, episode, model);
  }

  async #episode(ctx: Ctx, rng: Rng, s: BatchSubject, e: Episode, model: Model): Promise<void> {
    const count = rng.range(1, 40);
    const disposeAt = rng.chance(0.5) ? rng.int(count + 1) : -1;
    const requests: BatchRequest[] = [];
    const pending: Promise<void>[] = [];
    const settleOrder: number[] = [];
    let disposing: Promise<void> | undefined;
    for (let i = 0; i < count; i++) {
      if (i === disposeAt) {
        ctx.step({ family: 'batch', label: `dispose after ${i} requests` });
        disposing = model.dispose();
      }
      const gap = rng.weighted([[6, 'none'], [1, 'microtask'], [1, 'immediate'], [1, 'timeout']] as const);
      if (gap === 'microtask') await Promise.resolve();
      else if (gap === 'immediate') await new Promise<void>((done) => setImmediate(done));
      else if (gap === 'timeout') await new Promise<void>((done) => setTimeout(done, rng.int(3)));
      const r = this.#request(rng.fork(i), s, e, i, disposing !== undefined);
      requests.push(r);
      ctx.step(r.info);
      let p: Promise<Results>;
      try {
        p = model.infer(r.feeds as never, r.options as never);
      } catch (err) {
        ctx.finding(r.info, 'sync-throw', `infer() threw synchronously instead of rejecting: ${describeError(err)}`);
        p = Promise.reject(err);
      }
      r.abort?.();
      pending.push(p.then(
        (value) => {
          r.settled++;
          r.value = value;
          settleOrder.push(r.index);
          r.outcome = ctx.judge(r.info, r.expect, { ok: true, value });
        },
        (error: unknown) => {
          r.settled++;
          r.outcome = ctx.judge(r.info, r.expect, { ok: false, error });
        },
      ));
    }
    const info = { family: 'batch', label: `episode ${e.label}, ${count} requests, dispose ${disposeAt < 0 ? 'at the end' : `after ${disposeAt}`}` };
    ctx.step(info);
    try {
      await within(Promise.all(pending), WATCHDOG_MS);
    } catch {
      const open = requests.filter((r) => r.settled === 0);
      ctx.finding(info, 'hang', `${open.length} of ${count} requests unanswered after ${WATCHDOG_MS} ms (first: ${open[0]?.info.label})`);
    }
    const { outcome } = await ctx.begin({ family: 'batch', label: `${info.label}: dispose` }, { valid: 'yes' }, 'async', () => disposing ?? model.dispose());
    if (outcome === 'hang') return;
    for (const r of requests) {
      if (r.settled > 1) ctx.finding(r.info, 'settled-twice', `request settled ${r.settled} times`);
      // Outputs are views of native memory: still correct once the model is gone.
      if (r.value !== undefined && r.expect.check) {
        const wrong = r.expect.check(r.value);
        if (wrong !== undefined) ctx.finding(r.info, 'wrong-result-after-dispose', `after dispose: ${wrong}`);
      }
    }
    if (e.config.dynamicBatching && (e.config.dynamicBatching as { preserveOrdering?: boolean }).preserveOrdering) {
      for (let k = 1; k < settleOrder.length; k++) {
        if (settleOrder[k] < settleOrder[k - 1]) {
          ctx.finding(info, 'order', `preserveOrdering: request ${settleOrder[k]} answered after request ${settleOrder[k - 1]}`);
          break;
        }
      }
    }
    const stats = model.stats();
    const failures = Object.values(stats.failure).reduce((a, b) => a + (b ?? 0), 0);
    if (stats.requests !== count || stats.success + failures !== stats.requests || stats.pending !== 0) {
      ctx.finding(info, 'stats', `stats after dispose: requests ${stats.requests} (made ${count}), success ${stats.success} + failures ${failures}, pending ${stats.pending}`);
    }
  }

  /** A random request: valid (of a random size) or broken in one way, with random options. */
  #request(rng: Rng, s: BatchSubject, e: Episode, index: number, afterDispose: boolean): BatchRequest & { options: unknown; abort?: () => void } {
    const n = rng.range(1, e.maxBatch);
    const valid = s.request(rng, n);
    const feeds: Record<string, unknown> = { ...valid.feeds };
    const allow = [...e.allow];
    const parts: string[] = [`${n} rows`];
    let validity: 'yes' | 'no' | 'maybe' = 'yes';
    let want: KilnErrorCode | undefined;
    if (rng.chance(0.25)) {
      const input = rng.pick(s.inputs);
      const t = valid.feeds[input.name];
      const what = rng.pick(['rows-0', 'rows-over', 'rows-differ', 'dtype', 'class', 'length', 'rest-dim', 'missing', 'extra', 'dims-nan']);
      const rest = (t.dims as number[]).slice(1);
      const ctor = CTORS[input.type as NumericType];
      const reshaped = (rowsNow: number, restNow: number[] = rest): FeedTensor => ({ type: input.type, data: new ctor(rowsNow * product(restNow)), dims: [rowsNow, ...restNow] });
      validity = 'no';
      switch (what) {
        case 'rows-0': feeds[input.name] = reshaped(0); if (s.inputs.length === 1) want = 'E_INVALID_ARGUMENT'; break;
        case 'rows-over': feeds[input.name] = reshaped(e.maxBatch + rng.range(1, 3)); if (s.inputs.length === 1) want = 'E_INVALID_ARGUMENT'; break;
        case 'rows-differ':
          if (s.inputs.length < 2) validity = 'yes';
          else { feeds[input.name] = reshaped(n === 1 ? 2 : n - 1); want = 'E_SHAPE_MISMATCH'; }
          break;
        case 'dtype': feeds[input.name] = { ...t, type: rng.pick(ALL_TYPES.filter((x) => x !== input.type)) }; want = 'E_DTYPE_MISMATCH'; break;
        case 'class': feeds[input.name] = { ...t, data: new Float64Array((t.data as Numeric).length) }; want = 'E_DTYPE_MISMATCH'; break;
        case 'length': feeds[input.name] = { ...t, data: new ctor((t.data as Numeric).length + 1) }; want = 'E_INVALID_ARGUMENT'; break;
        case 'rest-dim':
          if (input.rest === 'seq' || rest.length === 0) validity = 'yes';
          else { feeds[input.name] = reshaped(n, [rest[0] + 1, ...rest.slice(1)]); want = 'E_SHAPE_MISMATCH'; }
          break;
        case 'missing': delete feeds[input.name]; want = 'E_INVALID_ARGUMENT'; break;
        case 'extra': feeds.bogus = t; want = 'E_INVALID_ARGUMENT'; break;
        case 'dims-nan': feeds[input.name] = { ...t, dims: rest.length > 0 ? [n, ...rest.map(() => NaN)] : [NaN] }; want = 'E_INVALID_ARGUMENT'; break;
      }
      if (validity === 'no') parts.push(`input ${input.name}: ${what}`);
    }
    const options: Record<string, unknown> = {};
    let optionsValue: unknown = options;
    let abort: (() => void) | undefined;
    // With more than one problem, which one Kiln reports first is its business.
    const optionsValidity = (v: 'no'): void => {
      want = validity === 'yes' ? 'E_INVALID_ARGUMENT' : undefined;
      validity = v;
    };
    if (rng.chance(0.3)) {
      const priority = rng.pick([0, 1, 2, 3, -1, 1.5, 4, 99, 'high', NaN]);
      options.priority = priority;
      parts.push(`priority ${String(priority)}`);
      const ok = e.levels === 0 || priority === 0 || (Number.isInteger(priority) && (priority as number) >= 1 && (priority as number) <= e.levels);
      if (!ok) optionsValidity('no');
    }
    if (rng.chance(0.25)) {
      const timeoutMs = rng.pick([0.05, 0.5, 2, 20, 0, -1, NaN, '5', Infinity]);
      options.timeoutMs = timeoutMs;
      parts.push(`timeoutMs ${String(timeoutMs)}`);
      if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) optionsValidity('no');
      else allow.push('E_TIMEOUT');
    }
    if (rng.chance(0.25)) {
      const what = rng.pick(['aborted', 'sync', 'timeout', 'fake']);
      parts.push(`signal ${what}`);
      if (what === 'aborted') {
        options.signal = AbortSignal.abort();
        want = validity === 'yes' ? 'E_ABORTED' : undefined;
        validity = 'no';
      } else if (what === 'fake') {
        options.signal = { aborted: false, addEventListener(): void {}, removeEventListener(): void {} };
        optionsValidity('no');
      } else {
        const controller = new AbortController();
        options.signal = controller.signal;
        allow.push('E_ABORTED');
        const ms = rng.int(5);
        abort = what === 'sync' ? () => controller.abort() : () => void setTimeout(() => controller.abort(), ms);
      }
    }
    if (rng.chance(0.03)) {
      optionsValue = rng.pick([null, 42, 'options']);
      parts.push(`options ${JSON.stringify(optionsValue)}`);
      optionsValidity('no');
    }
    if (afterDispose) {
      validity = 'no';
      want = 'E_DISPOSED';
      parts.push('after dispose');
    } else {
      allow.push('E_DISPOSED');
    }
    const expected = valid.expected;
    const check = (r: unknown): string | undefined => checkResults(r, Object.keys(expected), expected);
    return {
      index, feeds, options: optionsValue, abort, settled: 0,
      info: { family: 'batch', label: `request ${index}: ${parts.join(', ')}` },
      expect: { valid: validity, want, allow, check },
    };
  }

  async teardown(): Promise<void> {}
}

// =================================================================================================
// worker, supervisor, report
// =================================================================================================

// --- http: kiln serve's HTTP server -------------------------------------------------------------

/** The example repository served in-process; requests over loopback. */
class HttpFuzzer {
  static async create(scratch: string): Promise<HttpFuzzer> {
    const dir = path.join(scratch, 'repository');
    writeExampleRepository(dir);
    const manager = await ModelManager.open(dir);
    const app = createHttpServer(manager, { bodyLimit: 2 ** 20, maxElements: 2 ** 16 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const reference = await Session.create(addModel());
    return new HttpFuzzer(manager, app, `http://127.0.0.1:${(app.server.address() as import('net').AddressInfo).port}`, reference);
  }

  private constructor(
    private readonly manager: ModelManager,
    private readonly app: Awaited<ReturnType<typeof createHttpServer>>,
    private readonly base: string,
    private readonly reference: Session,
  ) {}

  /** A request: a valid add or mlp infer, mutated or replaced by random JSON or bytes. */
  #request(rng: Rng): { route: string; body: Buffer | string; header?: string; label: string; valid?: { a: number[]; b: number[] } } {
    const route = rng.weighted([[6, '/v2/models/add/infer'], [2, '/v2/models/mlp/infer'], [1, '/v2/models/add/versions/1/infer'], [1, `/v2/models/${rng.pick(['..%2Fadd', 'add%00', 'nope', ''])}/infer`], [1, '/v2/repository/index'], [1, '/v2/models/add/versions/x/infer']] as const);
    const a = Array.from({ length: 4 }, () => rng.int(100) - 50);
    const b = Array.from({ length: 4 }, () => rng.int(100) - 50);
    const body: { inputs: Record<string, unknown>[]; parameters?: unknown; outputs?: unknown } = { inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: a }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: b }] };
    const kind = rng.weighted([[3, 'valid'], [4, 'mutated'], [1, 'json'], [1, 'bytes'], [1, 'binary']] as const);
    const junk = (): unknown => rng.pick<unknown>([null, -1, 0, 1e300, 2 ** 53, 'FP16', 'BYTES', 'x', [], [[]], [1e9, 1e9], {}, true, [null], ['a'], [-1, 4]]);
    if (kind === 'valid') return { route, body: JSON.stringify(body), label: `${route} valid a=${a} b=${b}`, valid: route.includes('/add/') ? { a, b } : undefined };
    if (kind === 'mutated') {
      const field = rng.pick(['inputs', 'parameters', 'outputs', 'name', 'shape', 'datatype', 'data', 'binary_data_size'] as const);
      const value = junk();
      if (field === 'inputs' || field === 'parameters' || field === 'outputs') (body as Record<string, unknown>)[field] = value;
      else if (field === 'binary_data_size') body.inputs[rng.int(2)].parameters = { binary_data_size: value };
      else body.inputs[rng.int(2)][field] = value;
      return { route, body: JSON.stringify(body), label: `${route} ${field}=${JSON.stringify(value)}` };
    }
    if (kind === 'json') {
      const value = rng.pick<unknown>([null, [], {}, 'inputs', { inputs: {} }, { inputs: [1, 2] }, { inputs: [{}] }, 12]);
      return { route, body: JSON.stringify(value), label: `${route} json ${JSON.stringify(value)}` };
    }
    const bytes = Buffer.from(Array.from({ length: rng.int(200) }, () => rng.int(256)));
    if (kind === 'bytes') return { route, body: bytes, label: `${route} ${bytes.length} random bytes` };
    // Binary: a header naming binary_data_size with lying lengths.
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: rng.pick([16, 15, 0, 1000]) } }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: b }] }));
    const length = rng.pick([header.length, header.length + rng.int(40), rng.int(header.length), -1]);
    return { route, body: Buffer.concat([header, bytes.subarray(0, rng.int(40))]), header: String(length), label: `${route} binary, header length ${length}` };
  }

  async iteration(ctx: Ctx): Promise<void> {
    const family = 'http';
    if (ctx.skipped(family)) return;
    const rng = ctx.rng;
    const requests = Array.from({ length: rng.range(1, 8) }, (_, i) => this.#request(rng.fork(i)));
    await Promise.all(requests.map(async (r) => {
      const info = { family, label: r.label };
      ctx.step(info);
      let status: number;
      let text: string;
      try {
        const res = await within(fetch(this.base + r.route, { method: 'POST', headers: { 'content-type': 'application/json', ...(r.header === undefined ? {} : { 'inference-header-content-length': r.header }) }, body: r.body }), WATCHDOG_MS);
        status = res.status;
        text = await res.text();
      } catch (e) {
        ctx.finding(info, 'hang', `no answer: ${describeError(e)}`);
        return;
      }
      ctx.tally.count(`http ${status}`, ctx.iteration, info);
      if (status >= 500) ctx.finding(info, 'server-error', `HTTP ${status}: ${text.slice(0, 300)}`);
      else if (status >= 400) {
        let error: unknown;
        try {
          error = (JSON.parse(text) as { error?: unknown }).error;
        } catch {
          error = undefined;
        }
        if (typeof error !== 'string') ctx.finding(info, 'bad-error-body', `HTTP ${status} without a JSON {error}: ${text.slice(0, 300)}`);
      } else if (r.valid) {
        const want = Array.from((await this.reference.run({ a: { type: 'float32', data: Float32Array.from(r.valid.a), dims: [1, 4] }, b: { type: 'float32', data: Float32Array.from(r.valid.b), dims: [1, 4] } })).y.data as Float32Array);
        const got = (JSON.parse(text) as { outputs?: { data?: number[] }[] }).outputs?.[0]?.data;
        if (JSON.stringify(got) !== JSON.stringify(want)) ctx.finding(info, 'wrong-answer', `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
      } else if (status !== 200) {
        ctx.finding(info, 'odd-status', `HTTP ${status}`);
      }
    }));
  }

  async teardown(): Promise<void> {
    await this.app.close();
    await this.manager.close();
    await this.reference.dispose();
  }
}

interface Fuzzer {
  iteration(ctx: Ctx): Promise<void>;
  teardown(): Promise<void>;
}

async function makeFuzzer(target: TargetName, scratch: string): Promise<Fuzzer> {
  switch (target) {
    case 'load': return new LoadFuzzer(scratch);
    case 'feed': return FeedFuzzer.create();
    case 'batch': return new BatchFuzzer();
    case 'http': return HttpFuzzer.create(scratch);
  }
}

interface Cli {
  seconds: number;
  seed: number;
  targets: TargetName[];
  json?: string;
  iteration?: number;
  skip: string[];
  verbose: boolean;
  worker?: { until: number; from: number; trace: string; result: string };
}

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\nusage: node dist/bench/fuzz.js [--seconds N] [--seed S] [--target load|feed|batch|all] [--json FILE] [--iteration I] [--skip f1,f2] [--verbose]\n`);
  process.exit(2);
}

function parseCli(argv: readonly string[]): Cli {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) usage(`unexpected argument ${a}`);
    const name = a.slice(2);
    if (name === 'verbose' || name === 'worker') flags.add(name);
    else if (i + 1 < argv.length) values.set(name, argv[++i]);
    else usage(`${a} needs a value`);
  }
  const known = ['seconds', 'seed', 'target', 'json', 'iteration', 'skip', 'until', 'from', 'trace', 'result'];
  for (const k of values.keys()) if (!known.includes(k)) usage(`unknown option --${k}`);
  const num = (k: string, fallback: number): number => {
    const v = values.get(k);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) usage(`--${k} must be a non-negative number, received ${v}`);
    return n;
  };
  const target = values.get('target') ?? 'all';
  if (target !== 'all' && !(TARGETS as readonly string[]).includes(target)) usage(`--target must be load, feed, batch or all, received ${target}`);
  const cli: Cli = {
    seconds: num('seconds', 30),
    seed: Math.floor(num('seed', Math.floor(Math.random() * 2 ** 31))) >>> 0,
    targets: target === 'all' ? [...TARGETS] : [target as TargetName],
    json: values.get('json'),
    iteration: values.has('iteration') ? Math.floor(num('iteration', 0)) : undefined,
    skip: (values.get('skip') ?? '').split(',').filter((x) => x !== ''),
    verbose: flags.has('verbose'),
  };
  if (flags.has('worker')) {
    const trace = values.get('trace');
    const result = values.get('result');
    if (!trace || !result || cli.targets.length !== 1) usage('--worker needs --target, --trace and --result');
    cli.worker = { until: num('until', 0), from: num('from', 0), trace, result };
  }
  return cli;
}

/** Runs one target in this process: iterations [from, until) or the single --iteration. */
async function runTarget(cli: Cli, target: TargetName, until: number, from: number, traceFile: string | undefined, resultFile: string | undefined): Promise<TargetReport> {
  configure({ logLevel: 'fatal' });
  const tally = new Tally(target, cli.seed, new Set(cli.skip), cli.verbose);
  const trace = new Trace(traceFile);
  const started = Date.now();
  process.on('unhandledRejection', (e) => {
    const code = (e as { code?: unknown } | null)?.code;
    tally.finding(tally.last.iteration, tally.last, 'unhandled-rejection',
      `a promise Kiln created was rejected with nobody listening (Node's default would end the process); the call started last is named, the promise may belong to an earlier one: ${describeError(e)}`,
      `unhandled-rejection|${String(code)}|${e instanceof Error && !(e instanceof KilnError) ? 'native' : 'js'}`);
  });
  process.on('uncaughtException', (e) => {
    tally.finding(tally.last.iteration, tally.last, 'uncaught-exception', describeError(e));
  });
  const snapshot = (): void => {
    if (resultFile === undefined) return;
    const report = { ...tally.report((Date.now() - started) / 1000), onnxruntime: runtime().version };
    fs.writeFileSync(resultFile, JSON.stringify(report));
  };
  trace.write(from, { family: 'setup', label: `setting up ${target}` });
  const fuzzer = await makeFuzzer(target, traceFile === undefined ? os.tmpdir() : path.dirname(traceFile));
  let written = Date.now();
  const single = cli.iteration;
  for (let i = single ?? from; single !== undefined ? i === single : Date.now() < until; i++) {
    const ctx = new Ctx(tally, trace, i, new Rng(iterationSeed(cli.seed, target, i)));
    trace.write(i, { family: 'iteration', label: 'drawing a case' });
    await fuzzer.iteration(ctx);
    tally.iterations++;
    // Let timers (watchdogs, aborts) and I/O run between iterations.
    await new Promise<void>((done) => setImmediate(done));
    if (Date.now() - written > 250) {
      snapshot();
      written = Date.now();
    }
  }
  trace.write(-1, { family: 'teardown', label: `tearing down ${target}` });
  await within(fuzzer.teardown(), WATCHDOG_MS).catch((e: unknown) => tally.finding(-1, { family: 'teardown', label: 'dispose of the fuzzer sessions' }, 'hang', describeError(e)));
  tally.done = true;
  snapshot();
  return { ...tally.report((Date.now() - started) / 1000), onnxruntime: runtime().version };
}

function emptyReport(target: TargetName): TargetReport {
  return { target, seconds: 0, iterations: 0, calls: 0, restarts: 0, outcomes: {}, findings: [], notes: [], skipped: [] };
}

function merge(into: TargetReport, part: TargetReport): void {
  into.seconds += part.seconds;
  into.iterations += part.iterations;
  into.calls += part.calls;
  into.onnxruntime ??= part.onnxruntime;
  for (const [k, v] of Object.entries(part.outcomes)) into.outcomes[k] = (into.outcomes[k] ?? 0) + v;
  for (const f of part.findings) {
    const codeOf = (m: string): string | undefined => /\(code (\w+)\)/.exec(m)?.[1];
    const same = into.findings.find((x) => x.kind === f.kind &&
      (x.kind === 'unhandled-rejection' ? codeOf(x.message) === codeOf(f.message) : messageShape(x.message) === messageShape(f.message)));
    if (same) same.count += f.count;
    else into.findings.push(f);
  }
  for (const n of part.notes) {
    const same = into.notes.find((x) => messageShape(x.message) === messageShape(n.message));
    if (same) same.count += n.count;
    else into.notes.push(n);
  }
}

/** Runs a target in child processes until its time is up, restarting after a crash or a stall. */
async function superviseTarget(cli: Cli, target: TargetName): Promise<TargetReport> {
  const report = emptyReport(target);
  const until = Date.now() + cli.seconds * 1000;
  const skip = new Set(cli.skip);
  const crashes = new Map<string, number>();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-fuzz-run-'));
  let from = 0;
  try {
    for (;;) {
      const trace = path.join(dir, 'trace');
      const result = path.join(dir, 'result.json');
      fs.rmSync(result, { force: true });
      const args = [
        '--expose-gc', __filename, '--worker', '--target', target, '--seed', String(cli.seed), '--until', String(until),
        '--from', String(from), '--trace', trace, '--result', result, ...(skip.size ? ['--skip', [...skip].join(',')] : []),
      ];
      const exit = await runChild(args, trace);
      let part: TargetReport | undefined;
      try {
        part = JSON.parse(fs.readFileSync(result, 'utf8')) as TargetReport;
      } catch {
        part = undefined;
      }
      if (part) merge(report, part);
      if (exit.code === 0 && part?.done) break;
      const last = readTrace(trace);
      const how = exit.stalled ? `no progress for ${STALL_MS / 1000} s (killed)` : exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
      // Exit code 3: the fuzzer's own code threw (see main()), not Kiln.
      const kind = exit.stalled ? 'stall' : exit.code === FUZZER_ERROR ? 'fuzzer-error' : 'crash';
      const family = last?.family ?? 'setup';
      const iteration = last?.iteration ?? from;
      const repro = `node dist/bench/fuzz.js --target ${target} --seed ${cli.seed} --iteration ${iteration}${skip.size ? ` --skip ${[...skip].join(',')}` : ''} --verbose`;
      const finding: Finding = {
        kind, target, family, iteration, repro, count: 1,
        label: last?.label ?? '(before the first iteration)',
        message: `the fuzzing process ended: ${how}${exit.stderr ? `; stderr: ${exit.stderr.trim().split('\n').slice(-4).join(' | ').slice(0, 600)}` : ''}`,
      };
      process.stderr.write(`FINDING [${target}/${family}] ${finding.kind}: ${finding.message}\n  case: ${finding.label}\n  repro: ${repro}\n`);
      const same = report.findings.find((x) => x.kind === finding.kind && x.family === family);
      if (same) same.count++;
      else report.findings.push(finding);
      report.restarts++;
      crashes.set(family, (crashes.get(family) ?? 0) + 1);
      const fatal = kind === 'fuzzer-error' || !last || ['setup', 'teardown', 'iteration'].includes(last.family);
      if (fatal || report.restarts >= MAX_RESTARTS || Date.now() >= until) break;
      // A family that crashed twice is skipped for the rest of the run, so the time goes to the others.
      if ((crashes.get(family) ?? 0) >= 2) skip.add(family);
      from = iteration + 1;
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  report.skipped = [...skip];
  return report;
}

function runChild(args: string[], trace: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stalled: boolean; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      // What the process said besides the fuzzer's own reports: the last words of a crash.
      const own = /^(FINDING |  case: |  repro: )/;
      const text = chunk.toString().split('\n').filter((line) => !own.test(line)).join('\n');
      stderr = (stderr + text).slice(-4000);
    });
    let lastStep = -1;
    let lastMove = Date.now();
    let stalled = false;
    const watch = setInterval(() => {
      const step = readTrace(trace)?.step ?? -1;
      if (step !== lastStep) {
        lastStep = step;
        lastMove = Date.now();
      } else if (Date.now() - lastMove > STALL_MS) {
        stalled = true;
        child.kill('SIGKILL');
      }
    }, 1000);
    child.on('close', (code, signal) => {
      clearInterval(watch);
      resolve({ code, signal, stalled, stderr });
    });
  });
}

function markdown(cli: Cli, reports: readonly TargetReport[]): string {
  const codes = new Set<string>();
  for (const r of reports) for (const k of Object.keys(r.outcomes)) if (k !== 'ok') codes.add(k);
  const columns = ['ok', ...[...codes].sort()];
  const lines: string[] = [];
  lines.push(`Seed ${cli.seed}, ${cli.seconds} s per target; node ${process.version}, ONNX Runtime ${reports.find((r) => r.onnxruntime)?.onnxruntime ?? '?'}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'CPU'}`);
  lines.push('');
  lines.push(`| target | seconds | iterations | calls | ${columns.join(' | ')} | findings | restarts |`);
  lines.push(`|---|---|---|---|${columns.map(() => '---').join('|')}|---|---|`);
  for (const r of reports) {
    const cells = columns.map((c) => String(r.outcomes[c] ?? 0));
    lines.push(`| ${r.target} | ${r.seconds.toFixed(0)} | ${r.iterations} | ${r.calls} | ${cells.join(' | ')} | ${r.findings.length} | ${r.restarts} |`);
  }
  const findings = reports.flatMap((r) => r.findings);
  lines.push('');
  if (findings.length === 0) {
    lines.push('Findings: none.');
  } else {
    lines.push('Findings:');
    lines.push('');
    findings.forEach((f, i) => {
      lines.push(`${i + 1}. **${f.kind}** (${f.target}/${f.family}, ×${f.count}): ${f.message}`);
      lines.push(`   case: ${f.label}`);
      lines.push(`   repro: \`${f.repro}\``);
    });
  }
  const notes = reports.flatMap((r) => r.notes);
  if (notes.length > 0) {
    lines.push('');
    lines.push('Notes (rejected as they should be, but with another code than Kiln\'s own validation would give):');
    lines.push('');
    for (const n of notes.slice(0, 30)) lines.push(`- ${n.target}/${n.family} (×${n.count}): ${n.message.split('\n')[0].slice(0, 240)}`);
    if (notes.length > 30) lines.push(`- … ${notes.length - 30} more in the JSON report`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const cli = parseCli(process.argv.slice(2));
  if (cli.worker) {
    await runTarget(cli, cli.targets[0], cli.worker.until, cli.worker.from, cli.worker.trace, cli.worker.result);
    process.exit(0);
  }
  const reports: TargetReport[] = [];
  if (cli.iteration !== undefined) {
    // Replay: one iteration of one target, in this process.
    if (cli.targets.length !== 1) usage('--iteration needs a single --target');
    reports.push(await runTarget(cli, cli.targets[0], 0, cli.iteration, undefined, undefined));
  } else {
    process.stdout.write(`kiln fuzz: seed ${cli.seed}, ${cli.seconds} s per target (${cli.targets.join(', ')})\n`);
    for (const target of cli.targets) {
      const report = await superviseTarget(cli, target);
      process.stdout.write(`  ${target}: ${report.iterations} iterations, ${report.calls} calls, ${report.findings.length} findings\n`);
      reports.push(report);
    }
  }
  const table = markdown(cli, reports);
  process.stdout.write(`\n${table}\n`);
  if (cli.json) {
    const json = {
      command: `node dist/bench/fuzz.js ${process.argv.slice(2).join(' ')}`, seed: cli.seed, secondsPerTarget: cli.seconds,
      node: process.version, cpus: os.cpus().length, date: new Date().toISOString(), reports, markdown: table,
    };
    fs.writeFileSync(cli.json, `${JSON.stringify(json, null, 2)}\n`);
  }
  process.exit(reports.some((r) => r.findings.length > 0) ? 1 : 0);
}

main().catch((e: unknown) => {
  process.stderr.write(`fuzz: ${describeError(e)}\n${(e as Error).stack ?? ''}\n`);
  process.exit(FUZZER_ERROR);
});
